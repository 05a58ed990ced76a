"""Extractors: models that turn inputs into embeddings."""

from abc import ABC, abstractmethod

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


__all__ = ["IExtractor", "IFreezable"]
