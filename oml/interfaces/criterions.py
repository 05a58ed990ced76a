"""Criterions: losses computed from a batch of embeddings and their labels.

Invariant: ``last_logs`` only ever holds plain ``float`` values describing the most recent forward call,
so a training loop can log it as is.
"""

from abc import ABC, abstractmethod
from typing import Dict, List, Union

from torch import Tensor, nn

TLogs = Dict[str, float]


class ICriterion(nn.Module, ABC):
    """A loss of a batch of embeddings given their labels; ``last_logs`` describes its latest call."""

    criterion_name: str = "criterion"

    def __init__(self) -> None:
        super().__init__()
        self.last_logs: TLogs = {}

    @abstractmethod
    def forward(self, features: Tensor, labels: Union[Tensor, List[int]]) -> Tensor:
        """Loss of ``features`` (shape ``[batch_size, feat_dim]``) given ``labels`` (size ``batch_size``)."""


class ITripletLossWithMiner(ICriterion, ABC):
    """A triplet loss that mines its own triplets (anchor, positive, negative) inside the given batch."""

    criterion_name = "triplet"


__all__ = ["TLogs", "ICriterion", "ITripletLossWithMiner"]
