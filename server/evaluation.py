"""Evaluating a live gallery: labelled queries are searched as clients search (reranked if asked), and OML's
retrieval metrics are computed against the gallery's own labels."""

import asyncio
import warnings
from dataclasses import dataclass
from typing import Any, Optional, Sequence

from indexing import Hit
from oml.metrics import retrieval_report
from oml.metrics.report import TOP_K, TReport
from server.galleries import GalleryService
from server.hit_rows import to_retrieval_results
from server.search_service import Searcher, SearchResult
from server.settings import Settings


class TooManyQueries(ValueError):
    """An evaluation sent more queries than `max_evaluate_queries`."""


@dataclass(frozen=True)
class Evaluation:
    """The search that was evaluated and its metrics (`oml.metrics.retrieval_report`)."""

    search: SearchResult
    n_queries: int
    k: int
    metrics: TReport


class Evaluator:
    """Searches a gallery with labelled queries and scores the hits: the ground truth of a query is every item of
    the gallery with its label (less the item of its excluded key)."""

    def __init__(self, searcher: Searcher, galleries: GalleryService, settings: Settings):
        self.searcher = searcher
        self.galleries = galleries
        self.settings = settings

    async def evaluate(self, gallery_name: str, queries: Sequence[Any], labels: Sequence[Any], k: int,
                       rerank: bool = False, rerank_top_n: Optional[int] = None,
                       exclude_keys: Optional[Sequence[Optional[str]]] = None) -> Evaluation:
        """Metrics at 1, 3, 5, 10 (clipped to k) of the k hits of each query (texts or decoded images)."""
        if len(queries) > self.settings.max_evaluate_queries:
            raise TooManyQueries(f"{len(queries)} queries, over the limit of {self.settings.max_evaluate_queries}")
        if len(labels) != len(queries):
            raise ValueError(f"{len(labels)} labels for {len(queries)} queries")
        result = await self.searcher.search(gallery_name, queries, k, rerank, rerank_top_n, exclude_keys)
        truth = await asyncio.to_thread(self.galleries.ground_truth, gallery_name, list(labels), exclude_keys)
        metrics = await asyncio.to_thread(metrics_report, result.hits, truth, k)
        return Evaluation(search=result, n_queries=len(queries), k=k, metrics=metrics)


def metrics_report(hits: Sequence[Sequence[Hit]], truth: Sequence[Sequence[int]], k: int) -> TReport:
    """`retrieval_report` of the hits at 1, 3, 5, 10 clipped to k. A query whose label no item has is a miss (when
    the gallery is not empty: OML scores a query with nothing to find and nothing found as a hit).

    FNMR@FMR needs correct and wrong hits both; when the hits hold only one sort, `retrieval_report` leaves it out.
    """
    top_k = tuple(sorted({min(top, k) for top in TOP_K}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "queries have no ground truth in the gallery"
        return retrieval_report(to_retrieval_results(hits, truth), categories=None, top_k=top_k)


__all__ = ["Evaluator", "Evaluation", "TooManyQueries", "metrics_report"]
