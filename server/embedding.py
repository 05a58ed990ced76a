"""Query embedding through one micro-batcher per model version."""

from concurrent.futures import ThreadPoolExecutor
from typing import Any, List, Sequence, Tuple

import numpy as np

from server.batcher import MicroBatcher, MicroBatcherPool
from server.metrics import ServerMetrics
from server.model_registry import ModelRegistry
from server.settings import Settings


def limit_openmp_threads(threads: int) -> None:
    """OpenMP threads of FAISS (and the BLAS it calls) in the calling thread. OpenMP keeps this per thread, so run it
    in each thread of a pool: with 2 threads per search, the second thread's hand-offs and spin-waits cost more CPU
    than they save on 2 busy cores (docs/PERFORMANCE.md). `oml serve` sets torch's threads alike
    (`server.serve_cli.limit_torch_threads`)."""
    from oml.utils.faiss_setup import faiss

    faiss.omp_set_num_threads(threads)


class QueryEmbedder:
    """Embeds queries with a given model version; concurrent queries share ONNX Runtime calls. Its two threads run
    the ONNX Runtime calls and the micro-batched index searches."""

    def __init__(self, registry: ModelRegistry, settings: Settings, metrics: ServerMetrics):
        self.registry = registry
        self.settings = settings
        self.metrics = metrics
        self.executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="inference",
                                           initializer=limit_openmp_threads, initargs=(settings.search_threads,))
        self._batchers = MicroBatcherPool(self._new_batcher)

    def _embed_now(self, name: str, version: int, inputs: List[Any]) -> np.ndarray:
        return self.registry.bound_extractor(name, version).embed(inputs)

    def _new_batcher(self, key: Tuple[str, int]) -> MicroBatcher:
        name, version = key
        return MicroBatcher(f"{name}:v{version}", lambda inputs: self._embed_now(name, version, inputs), self.executor,
                            max_batch_size=self.settings.max_batch_size, max_wait_ms=self.settings.max_wait_ms,
                            metrics=self.metrics)

    def batcher(self, name: str, version: int) -> MicroBatcher:
        return self._batchers.get((name, version))

    async def embed(self, name: str, version: int, inputs: Sequence[Any]) -> np.ndarray:
        """Embed texts or decoded images with name/version, batched with other concurrent queries."""
        return await self.batcher(name, version).submit(inputs)

    async def close(self) -> None:
        await self._batchers.close()
        self.executor.shutdown(wait=False, cancel_futures=True)


__all__ = ["QueryEmbedder", "limit_openmp_threads"]
