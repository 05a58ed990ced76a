"""The query path: check k, embed with the gallery's model version (micro-batched), search, optionally rerank."""

import importlib
import json
import logging
from functools import partial
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from server.batcher import MicroBatcher
from server.embedding import QueryEmbedder
from server.errors import InvalidInputError, NotImplementedApiError, UnavailableError
from server.settings import Settings

logger = logging.getLogger(__name__)

SWAP_RETRIES = 3


class VersionChanged(RuntimeError):
    """The gallery switched model version between embedding the queries and searching."""


class Searcher:
    """Answers searches so that the query and the gallery are always embedded by the same model version.

    Both stages are micro-batched: queries for one model version share an ONNX Runtime call, and queries for one
    gallery share an index search (one matrix product instead of one per request).
    """

    def __init__(self, galleries: Any, embedder: QueryEmbedder, settings: Settings, postprocessor: Optional[Any] = None):
        self.galleries = galleries
        self.embedder = embedder
        self.settings = settings
        self.postprocessor = postprocessor
        self._search_batchers: Dict[Tuple[str, int], MicroBatcher] = {}

    async def binding(self, gallery_name: str) -> Any:
        """The gallery's model binding; opening a gallery reads files, so only that runs in a thread."""
        cached = self.galleries.cached_binding(gallery_name)
        return cached if cached is not None else await run_in_threadpool(self.galleries.binding, gallery_name)

    async def modality(self, gallery_name: str) -> str:
        return (await self.binding(gallery_name)).modality

    def check_k(self, k: int) -> None:
        if k < 1 or k > self.settings.max_k:
            raise InvalidInputError(f"k must be between 1 and {self.settings.max_k}, got {k}", code="invalid_k")

    def _search_now(self, gallery_name: str, version: int, inputs: List[Tuple[np.ndarray, int]]) -> List[List[Any]]:
        queries = np.stack([row for row, _ in inputs])
        hits = self.galleries.search(gallery_name, queries, max(k for _, k in inputs), version)
        if hits is None:
            raise VersionChanged(f"gallery {gallery_name!r} is no longer on version {version}")
        return [row[:k] for row, (_, k) in zip(hits, inputs)]

    def _search_batcher(self, gallery_name: str, version: int) -> MicroBatcher:
        key = (gallery_name, version)
        if key not in self._search_batchers:
            self._search_batchers[key] = MicroBatcher(
                f"search:{gallery_name}:v{version}", partial(self._search_now, gallery_name, version),
                self.embedder.executor, max_batch_size=self.settings.max_batch_size, max_wait_ms=0.0)
        return self._search_batchers[key]

    async def search(self, gallery_name: str, queries: Sequence[Any], k: int, rerank: bool) -> JSONResponse:
        """Embed `queries` and return the k nearest items per query."""
        self.check_k(k)
        if rerank and self.postprocessor is None:
            raise NotImplementedApiError("rerank is not available: no reranking postprocessor is configured on this "
                                         "server yet; send rerank=false")
        for _ in range(SWAP_RETRIES):
            binding = await self.binding(gallery_name)
            embeddings = await self.embedder.embed(binding.model, binding.version, list(queries))
            try:
                hits = await self._search_batcher(gallery_name, binding.version).embed([(row, k) for row in embeddings])
                break
            except VersionChanged:
                continue
        else:
            raise UnavailableError(f"gallery {gallery_name!r} kept switching model versions; retry the search")
        if rerank:
            hits = await run_in_threadpool(self.postprocess, gallery_name, embeddings, hits)
        return JSONResponse({"gallery": gallery_name, "model": binding.model, "model_version": binding.version,
                             "results": [[{"key": h.key, "label": h.label, "distance": float(h.distance),
                                           "payload": h.payload} for h in row] for row in hits]})

    def forget_gallery(self, gallery_name: str) -> None:
        """Drop the search batchers of a deleted gallery."""
        for key in [key for key in self._search_batchers if key[0] == gallery_name]:
            self._search_batchers.pop(key)

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


def load_postprocessor(spec: Optional[str], args_json: Optional[str]) -> Optional[Any]:
    """Build the `IRetrievalPostprocessor` named `module:factory` (e.g. `oml.retrieval:ConstantThresholding`),
    called with the keyword arguments in `args_json`; None when `spec` is None."""
    if spec is None:
        return None
    from oml.interfaces.retrieval import IRetrievalPostprocessor

    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"postprocessor must look like 'package.module:factory', got {spec!r}")
    try:
        kwargs = json.loads(args_json) if args_json else {}
    except json.JSONDecodeError as error:
        raise ValueError(f"postprocessor arguments are not valid JSON: {error}") from None
    if not isinstance(kwargs, dict):
        raise ValueError(f"postprocessor arguments must be a JSON object, got {args_json!r}")
    factory = getattr(importlib.import_module(module_name), attribute)
    postprocessor = factory(**kwargs)
    if not isinstance(postprocessor, IRetrievalPostprocessor):
        raise ValueError(f"{spec} built a {type(postprocessor).__name__}, not an IRetrievalPostprocessor")
    logger.info("search rerank uses %r", postprocessor)
    return postprocessor


__all__ = ["Searcher", "VersionChanged", "load_postprocessor"]
