"""The query path: check k, embed with the gallery's model version (micro-batched), search, optionally rerank."""

from typing import Any, List, Optional, Sequence

from fastapi.concurrency import run_in_threadpool

from server.embedding import QueryEmbedder
from server.errors import InvalidInputError, NotImplementedApiError, UnavailableError
from server.schemas import HitOut, SearchResponse
from server.settings import Settings

SWAP_RETRIES = 3


class Searcher:
    """Answers searches so that the query and the gallery are always embedded by the same model version."""

    def __init__(self, galleries: Any, embedder: QueryEmbedder, settings: Settings, postprocessor: Optional[Any] = None):
        self.galleries = galleries
        self.embedder = embedder
        self.settings = settings
        self.postprocessor = postprocessor

    async def modality(self, gallery_name: str) -> str:
        return (await run_in_threadpool(self.galleries.binding, gallery_name)).modality

    def check_k(self, k: int) -> None:
        if k < 1 or k > self.settings.max_k:
            raise InvalidInputError(f"k must be between 1 and {self.settings.max_k}, got {k}", code="invalid_k")

    async def search(self, gallery_name: str, queries: Sequence[Any], k: int, rerank: bool) -> SearchResponse:
        """Embed `queries` and return the k nearest items per query."""
        self.check_k(k)
        if rerank and self.postprocessor is None:
            raise NotImplementedApiError("rerank is not available: no reranking postprocessor is configured on this "
                                         "server yet; send rerank=false")
        for _ in range(SWAP_RETRIES):
            binding = await run_in_threadpool(self.galleries.binding, gallery_name)
            embeddings = await self.embedder.embed(binding.model, binding.version, list(queries))
            hits = await run_in_threadpool(self.galleries.search, gallery_name, embeddings, k, binding.version)
            if hits is not None:
                break
        else:
            raise UnavailableError(f"gallery {gallery_name!r} kept switching model versions; retry the search")
        if rerank:
            hits = await run_in_threadpool(self.postprocess, gallery_name, embeddings, hits)
        return SearchResponse(gallery=gallery_name, model=binding.model, model_version=binding.version,
                              results=[[HitOut(key=h.key, label=h.label, distance=float(h.distance),
                                               payload=h.payload) for h in row] for row in hits])

    def postprocess(self, gallery_name: str, embeddings: Any, hits: List[List[Any]]) -> List[List[Any]]:
        """Hand the hits to the `IRetrievalPostprocessor` as `RetrievalResults` and map its answer back to hits."""
        import torch

        from oml.retrieval import RetrievalResults

        by_id = {h.item_id: h for row in hits for h in row}
        rr = RetrievalResults(distances=[torch.tensor([h.distance for h in row], dtype=torch.float32) for row in hits],
                              retrieved_ids=[torch.tensor([h.item_id for h in row], dtype=torch.long) for row in hits],
                              gt_ids=None)
        refined = self.postprocessor.process(rr)
        result = []
        for distances, ids in zip(refined.distances, refined.retrieved_ids):
            row = []
            for distance, item_id in zip(distances.tolist(), ids.tolist()):
                hit = by_id[int(item_id)]
                row.append(type(hit)(**{**hit.__dict__, "distance": float(distance)}))
            result.append(row)
        return result


__all__ = ["Searcher"]
