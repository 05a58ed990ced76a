"""Batch samplers: objects that yield, batch by batch, lists of dataset indices.

Invariant: iterating an `IBatchSampler` yields exactly ``len(sampler)`` lists of indices, and (unless a sampler
documents otherwise) every list holds ``sampler.batch_size`` indices. Pass one to a DataLoader as
``DataLoader(dataset, batch_sampler=sampler)``.
"""

from abc import ABC, abstractmethod
from typing import Iterator, List

from torch.utils.data import Sampler


class IBatchSampler(Sampler[List[int]], ABC):
    """Yields the dataset indices of one batch at a time; ``len()`` is the number of batches in an epoch.

    Unlike torch's ``BatchSampler`` it wraps no per-item sampler: implementations choose whole batches (for
    example so that every batch holds several items of each of its labels).

    Example:
        >>> class Pairs(IBatchSampler):
        ...     def __len__(self): return 2
        ...     def __iter__(self): return iter([[0, 1], [2, 3]])
        ...     @property
        ...     def batch_size(self): return 2
        >>> list(Pairs())
        [[0, 1], [2, 3]]
    """

    @abstractmethod
    def __len__(self) -> int:
        """Number of batches in an epoch."""

    @abstractmethod
    def __iter__(self) -> Iterator[List[int]]:
        """The batches of one epoch, each a list of dataset indices."""

    @property
    @abstractmethod
    def batch_size(self) -> int:
        """Number of indices in every batch."""


__all__ = ["IBatchSampler"]
