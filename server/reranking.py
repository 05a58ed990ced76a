"""Reranking a search's hits with the gallery's reranker: each query's first hits are scored against it in pairs
(batched with concurrent searches by `PairScorer`) and put in the order of their scores by OML's `rerank_rows`."""

import asyncio
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch

from indexing import Hit
from oml.retrieval.postprocessors.pairwise import rerank_rows
from server.galleries import Binding, GalleryService
from server.hit_rows import from_retrieval_results, to_retrieval_results
from server.model_registry import ModelNotFound, ModelRegistry, ModelUnavailable
from server.rerankers import Reranker, RerankerMismatch, check_reranker_fits
from server.scoring import PairScorer


@dataclass(frozen=True)
class VersionRef:
    """A model version by name and number."""

    name: str
    version: int


@dataclass(frozen=True)
class Reranked:
    """Hits after reranking, and the reranker version that scored them."""

    hits: List[List[Hit]]
    reranker: VersionRef


class HitReranker:
    """Reranks hits of a gallery with the active version of the reranker the gallery names."""

    def __init__(self, registry: ModelRegistry, galleries: GalleryService, scorer: PairScorer):
        self.registry = registry
        self.galleries = galleries
        self.scorer = scorer

    def reranker_of(self, gallery_name: str, binding: Binding) -> Tuple[VersionRef, Reranker]:
        """The gallery's reranker at its active version, loaded; `ModelUnavailable` when it cannot serve the gallery
        as it is now (gone, failing its checks, or no longer fitting the gallery's model version)."""
        name = binding.reranker
        try:
            version = self.registry.active_version(name)
            reranker = self.registry.bound_reranker(name, version)
            check_reranker_fits(reranker, name, gallery_name, binding.model, binding.version, binding.modality)
        except (ModelNotFound, RerankerMismatch) as error:
            raise ModelUnavailable(f"the reranker {name!r} of gallery {gallery_name!r} cannot serve: {error}") from None
        return VersionRef(name, version), reranker

    async def rerank(self, gallery_name: str, binding: Binding, queries: Sequence[Any], embeddings: Sequence[Any],
                     hits: List[List[Hit]], top_n: Optional[int]) -> Reranked:
        """Re-score the first `top_n` hits of each query (the reranker's own `top_n` when None) and reorder them;
        the hits after them keep their order. Queries are texts or images as searched, and their embeddings."""
        ref, reranker = await asyncio.to_thread(self.reranker_of, gallery_name, binding)
        top_n = reranker.top_n if top_n is None else top_n
        heads = [row[:top_n] for row in hits]
        item_inputs = await asyncio.to_thread(self._item_inputs, gallery_name, binding.version, reranker.input_kind,
                                              [hit for head in heads for hit in head])
        heads = [[hit for hit in head if hit.item_id in item_inputs] for head in heads]  # deleted meanwhile
        rows = [head + row[top_n:] for head, row in zip(heads, hits)]
        query_inputs = embeddings if reranker.input_kind == "embeddings" else queries
        pairs = [(query_inputs[i], item_inputs[hit.item_id]) for i, head in enumerate(heads) for hit in head]
        scores = await self.scorer.score(ref.name, ref.version, pairs) if pairs else []
        per_query = list(torch.split(torch.as_tensor(scores, dtype=torch.float32), [len(head) for head in heads]))
        results = to_retrieval_results(rows)
        reranked = rerank_rows(list(results.distances), list(results.retrieved_ids), per_query)
        return Reranked(from_retrieval_results(reranked, rows), ref)

    def _item_inputs(self, gallery_name: str, version: int, input_kind: str, hits: List[Hit]) -> Dict[int, Any]:
        """What the reranker takes for each hit's item: its stored embedding, its text or its image file."""
        if input_kind == "embeddings":
            return self.galleries.item_embeddings(gallery_name, [hit.item_id for hit in hits], version)
        field = "text" if input_kind == "texts" else "path"
        return {hit.item_id: getattr(hit, field) for hit in hits if getattr(hit, field) is not None}


__all__ = ["HitReranker", "Reranked", "VersionRef"]
