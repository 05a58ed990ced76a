"""The query path: check k, embed with the gallery's model version (micro-batched), search, optionally rerank."""

import asyncio
import dataclasses
import importlib
import json
import logging
from dataclasses import dataclass
from functools import partial
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from indexing import Hit
from oml.interfaces.retrieval import IRetrievalPostprocessor
from oml.retrieval import RetrievalResults
from server.batcher import MicroBatcher
from server.embedding import QueryEmbedder
from server.galleries import Binding, GalleryBusy, GalleryService
from server.settings import Settings

logger = logging.getLogger(__name__)

SWAP_RETRIES = 3


class KOutOfRange(ValueError):
    """A search asked for fewer than 1 or more than `max_k` neighbours."""


class RerankUnavailable(RuntimeError):
    """A search asked for rerank but the server has no reranking postprocessor."""


class VersionChanged(RuntimeError):
    """The gallery switched model version between embedding the queries and searching."""


@dataclass(frozen=True)
class SearchResult:
    """The hits of each query, nearest first, and the model version that embedded queries and gallery."""

    gallery: str
    model: str
    model_version: int
    hits: List[List[Hit]]


class Searcher:
    """Answers searches so that the query and the gallery are always embedded by the same model version.

    Both stages are micro-batched: queries for one model version share an ONNX Runtime call, and queries for one
    gallery share an index search (one matrix product instead of one per request).
    """

    def __init__(self, galleries: GalleryService, embedder: QueryEmbedder, settings: Settings,
                 postprocessor: Optional[IRetrievalPostprocessor] = None):
        self.galleries = galleries
        self.embedder = embedder
        self.settings = settings
        self.postprocessor = postprocessor
        self._search_batchers: Dict[Tuple[str, int], MicroBatcher] = {}

    async def binding(self, gallery_name: str) -> Binding:
        """The gallery's model binding; opening a gallery reads files, so only that runs in a thread."""
        cached = self.galleries.cached_binding(gallery_name)
        return cached if cached is not None else await asyncio.to_thread(self.galleries.binding, gallery_name)

    async def modality(self, gallery_name: str) -> str:
        return (await self.binding(gallery_name)).modality

    def check_k_within_limit(self, k: int) -> None:
        """The API's limit on k, 1..`max_k` (the index itself takes any positive k)."""
        if k < 1 or k > self.settings.max_k:
            raise KOutOfRange(f"k must be between 1 and {self.settings.max_k}, got {k}")

    def _search_now(self, gallery_name: str, version: int, inputs: List[Tuple[np.ndarray, int]]) -> List[List[Hit]]:
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

    async def search(self, gallery_name: str, queries: Sequence[Any], k: int, rerank: bool) -> SearchResult:
        """Embed `queries` and find the k nearest items of each."""
        self.check_k_within_limit(k)
        if rerank and self.postprocessor is None:
            raise RerankUnavailable("rerank is not available: no reranking postprocessor is configured on this "
                                    "server yet; send rerank=false")
        for _ in range(SWAP_RETRIES):
            binding = await self.binding(gallery_name)
            embeddings = await self.embedder.embed(binding.model, binding.version, list(queries))
            try:
                hits = await self._search_batcher(gallery_name, binding.version).submit(
                    [(row, k) for row in embeddings])
                break
            except VersionChanged:
                continue
        else:
            raise GalleryBusy(f"gallery {gallery_name!r} kept switching model versions; retry the search")
        if rerank:
            hits = await asyncio.to_thread(self.postprocess, hits)
        return SearchResult(gallery=gallery_name, model=binding.model, model_version=binding.version, hits=list(hits))

    def forget_gallery(self, gallery_name: str) -> None:
        """Drop the search batchers of a deleted gallery."""
        for key in [key for key in self._search_batchers if key[0] == gallery_name]:
            self._search_batchers.pop(key)

    def postprocess(self, hits: List[List[Hit]]) -> List[List[Hit]]:
        """Hand the hits to the `IRetrievalPostprocessor` as `RetrievalResults` and map its answer back to hits."""
        by_id = {hit.item_id: hit for row in hits for hit in row}
        retrieved = RetrievalResults(
            distances=[torch.tensor([hit.distance for hit in row], dtype=torch.float32) for row in hits],
            retrieved_ids=[torch.tensor([hit.item_id for hit in row], dtype=torch.long) for row in hits],
            gt_ids=None)
        refined = self.postprocessor.process(retrieved)
        return [[dataclasses.replace(by_id[int(item_id)], distance=float(distance))
                 for distance, item_id in zip(distances.tolist(), ids.tolist())]
                for distances, ids in zip(refined.distances, refined.retrieved_ids)]


def load_postprocessor(spec: Optional[str], args_json: Optional[str]) -> Optional[IRetrievalPostprocessor]:
    """Build the `IRetrievalPostprocessor` named `module:factory` (e.g. `oml.retrieval:ConstantThresholding`),
    called with the keyword arguments in `args_json`; None when `spec` is None."""
    if spec is None:
        return None
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


__all__ = ["Searcher", "SearchResult", "KOutOfRange", "RerankUnavailable", "VersionChanged", "load_postprocessor"]
