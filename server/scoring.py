"""Pair scoring through one micro-batcher per reranker version: the (query, item) pairs of concurrent searches
share one `score` call."""

from concurrent.futures import Executor
from typing import Any, List, Sequence, Tuple

import numpy as np

from server.batcher import MicroBatcher, MicroBatcherPool
from server.metrics import ServerMetrics
from server.model_registry import ModelRegistry
from server.settings import Settings

Pair = Tuple[Any, Any]


class PairScorer:
    """Scores (query, item) pairs with a reranker version; concurrent searches share one `Reranker.score` call of
    up to `max_rerank_batch_size` pairs (a single search with more pairs runs alone)."""

    def __init__(self, registry: ModelRegistry, settings: Settings, metrics: ServerMetrics, executor: Executor):
        self.registry = registry
        self.settings = settings
        self.metrics = metrics
        self.executor = executor
        self._batchers = MicroBatcherPool(self._new_batcher)

    def _score_now(self, name: str, version: int, pairs: List[Pair]) -> np.ndarray:
        reranker = self.registry.bound_reranker(name, version)
        queries = [query for query, _ in pairs]
        items = [item for _, item in pairs]
        if reranker.input_kind == "embeddings":
            queries, items = np.stack(queries), np.stack(items)
        scores = np.asarray(reranker.score(queries, items), dtype=np.float32).reshape(-1)
        if scores.shape[0] != len(pairs):
            raise ValueError(f"reranker {name} v{version} returned {scores.shape[0]} scores for {len(pairs)} pairs")
        return scores

    def _new_batcher(self, key: Tuple[str, int]) -> MicroBatcher:
        name, version = key
        return MicroBatcher(f"rerank:{name}:v{version}", lambda pairs: self._score_now(name, version, pairs),
                            self.executor, max_batch_size=self.settings.max_rerank_batch_size,
                            max_wait_ms=self.settings.max_wait_ms, metrics=self.metrics)

    async def score(self, name: str, version: int, pairs: Sequence[Pair]) -> np.ndarray:
        """float32 scores of `pairs` with reranker name/version (lower is closer), batched with concurrent searches."""
        return await self._batchers.get((name, version)).submit(pairs)

    async def close(self) -> None:
        await self._batchers.close()


__all__ = ["PairScorer", "Pair"]
