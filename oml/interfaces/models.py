"""Extractors: models that turn inputs into embeddings."""

from abc import ABC, abstractmethod
from typing import Any

import torch
from torch import nn


class IExtractor(nn.Module, ABC):
    """A model that maps a batch of inputs to a batch of embeddings of size `feat_dim`."""

    @property
    @abstractmethod
    def feat_dim(self) -> int:
        ...

    @abstractmethod
    def extract(self, x: torch.Tensor) -> torch.Tensor:
        ...

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.extract(x)


class IFreezable(ABC):
    """A model whose parameters (or a part of them, such as a backbone) can be frozen and unfrozen for training."""

    @abstractmethod
    def freeze(self) -> None:
        ...

    @abstractmethod
    def unfreeze(self) -> None:
        ...


class IPairwiseModel(nn.Module, ABC):
    """A model that scores pairs: `forward` gives one logit per pair, high when the two look like different classes
    (trained with binary cross-entropy against "is a negative pair"); `predict` turns it into a distance-like score
    in which lower means closer, as rerankers sort."""

    @abstractmethod
    def forward(self, x1: Any, x2: Any) -> torch.Tensor:
        ...

    def predict(self, x1: Any, x2: Any) -> torch.Tensor:
        """Distance-like score per pair (the sigmoid of `forward` unless a model says otherwise)."""
        return torch.sigmoid(self.forward(x1, x2))


__all__ = ["IExtractor", "IFreezable", "IPairwiseModel"]
