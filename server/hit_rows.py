"""Hits to `oml.retrieval.RetrievalResults` and back, so OML's postprocessors, reranking and metrics work on them."""

import dataclasses
from typing import List, Optional, Sequence

import torch

from indexing import Hit
from oml.retrieval import RetrievalResults


def to_retrieval_results(hits: Sequence[Sequence[Hit]],
                         gt_ids: Optional[Sequence[Sequence[int]]] = None) -> RetrievalResults:
    """One row per query: the hits' distances and item ids, and the ids of the items correct for it if known."""
    return RetrievalResults(
        distances=[torch.tensor([hit.distance for hit in row], dtype=torch.float32) for row in hits],
        retrieved_ids=[torch.tensor([hit.item_id for hit in row], dtype=torch.long) for row in hits],
        gt_ids=None if gt_ids is None else [torch.tensor(list(ids), dtype=torch.long) for ids in gt_ids])


def from_retrieval_results(results: RetrievalResults, hits: Sequence[Sequence[Hit]]) -> List[List[Hit]]:
    """The hits in the order and at the distances of `results`, whose ids are those of `hits`."""
    by_id = {hit.item_id: hit for row in hits for hit in row}
    return [[dataclasses.replace(by_id[int(item_id)], distance=float(distance))
             for distance, item_id in zip(distances.tolist(), ids.tolist())]
            for distances, ids in zip(results.distances, results.retrieved_ids)]


__all__ = ["to_retrieval_results", "from_retrieval_results"]
