"""Postprocessors: refine retrieval results after the kNN search."""

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from oml.retrieval.retrieval_results import RetrievalResults


class IRetrievalPostprocessor(ABC):
    """Takes `RetrievalResults` and returns refined ones (filtered, re-ordered, re-scored)."""

    @abstractmethod
    def process(self, rr: "RetrievalResults") -> "RetrievalResults":
        ...


__all__ = ["IRetrievalPostprocessor"]
