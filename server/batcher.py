"""Micro-batching: concurrent requests are gathered into one call of a batch function (an ONNX Runtime call for
query embedding or pair scoring, one matrix product for an index search)."""

import asyncio
import logging
import time
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Hashable, List, Optional, Sequence

from server.metrics import ServerMetrics

logger = logging.getLogger(__name__)

BatchFn = Callable[[List[Any]], Sequence[Any]]


@dataclass
class _Pending:
    inputs: List[Any]
    future: asyncio.Future
    enqueued_at: float = field(default_factory=time.perf_counter)


class MicroBatcher:
    """Gathers queued requests until `max_batch_size` inputs or `max_wait_ms` have passed, then runs `batch_fn` on
    all their inputs at once; `batch_fn` returns one output row per input.

    `batch_fn` runs in `executor`, off the event loop; each caller gets back only its own rows. While one batch
    runs, new requests queue up and form the next batch. The `max_wait_ms` wait applies only when the last batch held
    several requests, so a lone client pays no added latency. With `max_batch_size=1` every request runs alone
    (batching off).
    """

    def __init__(self, label: str, batch_fn: BatchFn, executor: Executor, max_batch_size: int = 32,
                 max_wait_ms: float = 3.0, metrics: Optional[ServerMetrics] = None):
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        self.label = label
        self.batch_fn = batch_fn
        self.executor = executor
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_ms / 1000.0
        self.metrics = metrics
        self._queue: Optional[asyncio.Queue] = None
        self._worker: Optional[asyncio.Task] = None
        self._carry: Optional[_Pending] = None
        self._closed = False
        self._last_batch_requests = 1

    async def submit(self, inputs: Sequence[Any]) -> Sequence[Any]:
        """The output rows of `inputs`, computed in one `batch_fn` call shared with concurrent requests."""
        if self._closed:
            raise RuntimeError(f"batcher {self.label} is closed")
        if not inputs:
            raise ValueError("nothing to embed or search: no inputs")
        self._ensure_worker()
        future = asyncio.get_running_loop().create_future()
        await self._queue.put(_Pending(list(inputs), future))
        return await future

    def _ensure_worker(self) -> None:
        if self._worker is None or self._worker.done():
            self._queue = self._queue or asyncio.Queue()
            self._worker = asyncio.get_running_loop().create_task(self._run(), name=f"batcher-{self.label}")

    async def close(self) -> None:
        """Stop the worker; requests still queued fail with a clear error."""
        self._closed = True
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except (asyncio.CancelledError, Exception):
                pass
        pending = [self._carry] if self._carry else []
        while self._queue is not None and not self._queue.empty():
            pending.append(self._queue.get_nowait())
        for item in pending:
            if not item.future.done():
                item.future.set_exception(RuntimeError(f"batcher {self.label} was closed"))

    async def _next(self, timeout: Optional[float]) -> Optional[_Pending]:
        if self._carry is not None:
            item, self._carry = self._carry, None
            return item
        if timeout is None:
            return await self._queue.get()
        if timeout <= 0:
            try:
                return self._queue.get_nowait()
            except asyncio.QueueEmpty:
                return None
        try:
            return await asyncio.wait_for(self._queue.get(), timeout)
        except asyncio.TimeoutError:
            return None

    async def _gather(self) -> List[_Pending]:
        first = await self._next(None)
        batch, count = [first], len(first.inputs)
        # Waiting only pays when traffic is concurrent: a lone client (last batch held one request, nothing queued)
        # is served at once instead of paying max_wait_ms on every query.
        sparse = self._last_batch_requests <= 1 and self._queue.empty()
        deadline = time.perf_counter() + (0.0 if sparse else self.max_wait_s)
        while count < self.max_batch_size:
            item = await self._next(deadline - time.perf_counter())
            if item is None:
                break
            if count + len(item.inputs) > self.max_batch_size:
                self._carry = item
                break
            batch.append(item)
            count += len(item.inputs)
        self._last_batch_requests = len(batch)
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._gather()
            batch = [item for item in batch if not item.future.done()]
            if not batch:
                continue
            started = time.perf_counter()
            inputs = [x for item in batch for x in item.inputs]
            if self.metrics is not None:
                self.metrics.batch_size.labels(self.label).observe(len(inputs))
                for item in batch:
                    self.metrics.queue_wait.labels(self.label).observe(started - item.enqueued_at)
            try:
                outputs = await loop.run_in_executor(self.executor, self.batch_fn, inputs)
            except Exception as error:
                await self._fail_or_retry_alone(batch, error)
                continue
            if self.metrics is not None:
                self.metrics.inference_time.labels(self.label).observe(time.perf_counter() - started)
            offset = 0
            for item in batch:
                rows = outputs[offset:offset + len(item.inputs)]
                offset += len(item.inputs)
                if not item.future.done():
                    item.future.set_result(rows)

    async def _fail_or_retry_alone(self, batch: List[_Pending], error: Exception) -> None:
        """One bad request must not fail its neighbours: retry each request of a failed batch on its own."""
        if len(batch) == 1:
            if not batch[0].future.done():
                batch[0].future.set_exception(error)
            return
        logger.info("batch of %d requests for %s failed (%s); retrying them one by one", len(batch), self.label, error)
        loop = asyncio.get_running_loop()
        for item in batch:
            try:
                rows = await loop.run_in_executor(self.executor, self.batch_fn, item.inputs)
            except Exception as single_error:
                if not item.future.done():
                    item.future.set_exception(single_error)
            else:
                if not item.future.done():
                    item.future.set_result(rows)


class MicroBatcherPool:
    """One `MicroBatcher` per key (a model version, a gallery and version), made by `make(key)` on first use."""

    def __init__(self, make: Callable[[Any], MicroBatcher]):
        self.make = make
        self._batchers: Dict[Hashable, MicroBatcher] = {}

    def get(self, key: Hashable) -> MicroBatcher:
        if key not in self._batchers:
            self._batchers[key] = self.make(key)
        return self._batchers[key]

    def forget(self, drop: Callable[[Any], bool]) -> None:
        """Let go of the batchers whose key `drop` accepts (their workers end when the loop does)."""
        for key in [key for key in self._batchers if drop(key)]:
            self._batchers.pop(key)

    async def close(self) -> None:
        await asyncio.gather(*(batcher.close() for batcher in self._batchers.values()))


__all__ = ["MicroBatcher", "MicroBatcherPool", "BatchFn"]
