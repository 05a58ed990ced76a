"""The query path: check k, embed with the gallery's model version (micro-batched), search, optionally rerank."""

import asyncio
import dataclasses
import importlib
import json
import logging
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from indexing import Hit
from indexing.filters import SearchFilter, as_filter
from oml.interfaces.retrieval import IRetrievalPostprocessor
from server.batcher import MicroBatcher, MicroBatcherPool
from server.embedding import QueryEmbedder
from server.galleries import Binding, GalleryBusy, GalleryService, VersionChanged
from server.hit_rows import from_retrieval_results, to_retrieval_results
from server.reranking import HitReranker, VersionRef
from server.settings import Settings

logger = logging.getLogger(__name__)

SWAP_RETRIES = 3

SearchInput = Tuple[np.ndarray, int, Optional[SearchFilter]]  # one query of a batched index search: vector, k, filter
QueryVectors = Callable[[Binding], Awaitable[Any]]  # query embeddings for a binding, instead of embedding queries


class KOutOfRange(ValueError):
    """A search asked for fewer than 1 or more than `max_k` neighbours."""


class RerankTopNOutOfRange(ValueError):
    """A search asked to rerank fewer than 1 hit per query."""


class RerankUnavailable(RuntimeError):
    """A search asked for rerank but its gallery names no reranker and the server has no reranking postprocessor."""


@dataclass(frozen=True)
class SearchResult:
    """The hits of each query, nearest first, the model version that embedded queries and gallery, and whether (and
    with which reranker version) the hits were reranked."""

    gallery: str
    model: str
    model_version: int
    hits: List[List[Hit]]
    reranked: bool = False
    reranker: Optional[VersionRef] = None


class Searcher:
    """Answers searches so that the query and the gallery are always embedded by the same model version.

    Every stage is micro-batched: queries for one model version share an ONNX Runtime call, queries for one
    gallery share an index search (one matrix product instead of one per request), and the pairs to rerank with one
    reranker version share a scoring call.
    """

    def __init__(self, galleries: GalleryService, embedder: QueryEmbedder, settings: Settings,
                 reranker: HitReranker, postprocessor: Optional[IRetrievalPostprocessor] = None):
        self.galleries = galleries
        self.embedder = embedder
        self.settings = settings
        self.reranker = reranker
        self.postprocessor = postprocessor
        self._search_batchers = MicroBatcherPool(self._new_search_batcher)

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

    def _search_now(self, gallery_name: str, version: int, inputs: List[SearchInput]) -> List[List[Hit]]:
        """One index search per distinct filter among the batched `(query, k, filter)` inputs."""
        groups: Dict[Optional[str], List[int]] = {}
        for i, (_, _, search_filter) in enumerate(inputs):
            groups.setdefault(None if search_filter is None else search_filter.key, []).append(i)
        results: List[List[Hit]] = [[] for _ in inputs]
        for rows in groups.values():
            queries = np.stack([inputs[i][0] for i in rows])
            hits = self.galleries.search(gallery_name, queries, max(inputs[i][1] for i in rows), version,
                                         filter=inputs[rows[0]][2])
            for i, row in zip(rows, hits):
                results[i] = row[:inputs[i][1]]
        return results

    def _new_search_batcher(self, key: Tuple[str, int]) -> MicroBatcher:
        gallery_name, version = key
        return MicroBatcher(f"search:{gallery_name}:v{version}",
                            lambda inputs: self._search_now(gallery_name, version, inputs), self.embedder.executor,
                            max_batch_size=self.settings.max_batch_size, max_wait_ms=0.0)

    async def search(self, gallery_name: str, queries: Sequence[Any], k: int, rerank: bool = False,
                     rerank_top_n: Optional[int] = None,
                     exclude_keys: Optional[Sequence[Optional[str]]] = None,
                     labels: Optional[Sequence[Any]] = None, filter: Any = None,
                     query_vectors: Optional[QueryVectors] = None) -> SearchResult:
        """Embed `queries` and find the k nearest items of each; with `rerank`, re-score each query's first
        `rerank_top_n` hits with the gallery's reranker (or hand all hits to the server's postprocessor when the
        gallery names none). `exclude_keys[i]`, when given, is an item left out of query i's hits; `labels`, when
        given, keeps only items with one of these labels, `filter` (`indexing.filters`) those that pass it; filtered
        searches share the search micro-batcher too. `query_vectors(binding)`, when given, supplies the query
        embeddings instead of embedding `queries` (then only a reranker reads `queries`)."""
        search_filter = as_filter(filter, labels)
        self.check_k_within_limit(k)
        if rerank_top_n is not None and rerank_top_n < 1:
            raise RerankTopNOutOfRange(f"rerank_top_n must be at least 1, got {rerank_top_n}")
        queries = list(queries)
        for _ in range(SWAP_RETRIES):
            binding = await self.binding(gallery_name)
            if rerank and binding.reranker is None and self.postprocessor is None:
                raise RerankUnavailable(f"rerank is not available: gallery {gallery_name!r} names no reranker (set "
                                        "one with PATCH /galleries/{name}) and the server has no postprocessor; "
                                        "send rerank=false")
            try:
                return await self._search_once(gallery_name, binding, queries, k, rerank, rerank_top_n, exclude_keys,
                                               search_filter, query_vectors)
            except VersionChanged:
                continue
        raise GalleryBusy(f"gallery {gallery_name!r} kept switching model versions; retry the search")

    async def _search_once(self, gallery_name: str, binding: Binding, queries: List[Any], k: int, rerank: bool,
                           rerank_top_n: Optional[int],
                           exclude_keys: Optional[Sequence[Optional[str]]],
                           search_filter: Optional[SearchFilter] = None,
                           query_vectors: Optional[QueryVectors] = None) -> SearchResult:
        if query_vectors is not None:
            embeddings = await query_vectors(binding)
        else:
            embeddings = await self.embedder.embed(binding.model, binding.version, queries)
        fetch = k + 1 if exclude_keys is not None else k
        hits = await self._search_batchers.get((gallery_name, binding.version)).submit(
            [(row, fetch, search_filter) for row in embeddings])
        if exclude_keys is not None:
            hits = [[hit for hit in row if hit.key != key][:k] for row, key in zip(hits, exclude_keys)]
        result = SearchResult(gallery=gallery_name, model=binding.model, model_version=binding.version,
                              hits=list(hits), reranked=rerank)
        if rerank and binding.reranker is not None:
            reranked = await self.reranker.rerank(gallery_name, binding, queries, embeddings, result.hits,
                                                  rerank_top_n)
            return dataclasses.replace(result, hits=reranked.hits, reranker=reranked.reranker)
        if rerank:
            return dataclasses.replace(result, hits=await asyncio.to_thread(self.postprocess, result.hits))
        return result

    def forget_gallery(self, gallery_name: str) -> None:
        """Drop the search batchers of a deleted gallery."""
        self._search_batchers.forget(lambda key: key[0] == gallery_name)

    async def close(self) -> None:
        await self._search_batchers.close()

    def postprocess(self, hits: List[List[Hit]]) -> List[List[Hit]]:
        """Hand the hits to the `IRetrievalPostprocessor` as `RetrievalResults` and map its answer back to hits."""
        return from_retrieval_results(self.postprocessor.process(to_retrieval_results(hits)), hits)


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


__all__ = ["Searcher", "SearchResult", "KOutOfRange", "RerankTopNOutOfRange", "RerankUnavailable", "VersionChanged",
           "load_postprocessor"]
