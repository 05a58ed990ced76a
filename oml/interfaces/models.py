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


__all__ = ["IExtractor"]
