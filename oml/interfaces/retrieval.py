"""Postprocessors: refine retrieval results after the kNN search."""

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:
    from oml.retrieval.retrieval_results import RetrievalResults


class IRetrievalPostprocessor(ABC):
    """Takes `RetrievalResults` and returns refined ones (filtered, re-ordered, re-scored).

    `dataset` is the query/gallery dataset the ids of `rr` point into (an `IQueryGalleryDataset`); postprocessors that
    look at the items themselves (rerankers) need it, those that only look at distances ignore it.
    """

    @abstractmethod
    def process(self, rr: "RetrievalResults", dataset: Optional[Any] = None) -> "RetrievalResults":
        ...


__all__ = ["IRetrievalPostprocessor"]
