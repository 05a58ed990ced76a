"""Micro-batching: concurrent requests share one model call; each caller gets its own rows; a bad one fails alone."""

import asyncio
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from server.batcher import MicroBatcher
from server.metrics import ServerMetrics


class RecordingModel:
    """Embeds numbers as rows [x, 2x]; records each call's batch size; refuses negative inputs like a bad image."""

    def __init__(self, delay_s: float = 0.01):
        self.calls = []
        self.delay_s = delay_s
        self.threads = set()

    def __call__(self, inputs):
        self.threads.add(threading.current_thread().name)
        if any(x < 0 for x in inputs):
            raise ValueError(f"cannot embed negative input among {inputs}")
        self.calls.append(len(inputs))
        time.sleep(self.delay_s)
        return np.array([[x, 2 * x] for x in inputs], dtype=np.float32)


def run_concurrently(batcher, requests):
    async def main():
        results = await asyncio.gather(*(batcher.submit(r) for r in requests), return_exceptions=True)
        await batcher.close()
        return results
    return asyncio.run(main())


def test_concurrent_requests_are_gathered_and_each_gets_its_own_rows():
    model, metrics = RecordingModel(), ServerMetrics()
    with ThreadPoolExecutor(1, thread_name_prefix="onnx") as pool:
        batcher = MicroBatcher("m:v1", model, pool, max_batch_size=8, max_wait_ms=20, metrics=metrics)
        requests = [[i] for i in range(20)] + [[100, 101]]
        results = run_concurrently(batcher, requests)
    for request, rows in zip(requests, results):
        np.testing.assert_array_equal(rows, [[x, 2 * x] for x in request])
    assert sum(model.calls) == 22 and max(model.calls) <= 8
    assert len(model.calls) <= 5  # 22 inputs in batches of up to 8, not 21 separate calls
    assert model.threads == {"onnx_0"}  # off the event loop
    assert metrics.batch_size.labels("m:v1")._sum.get() == 22


def test_batch_size_one_turns_batching_off():
    model = RecordingModel(delay_s=0)
    with ThreadPoolExecutor(1) as pool:
        batcher = MicroBatcher("m:v1", model, pool, max_batch_size=1, max_wait_ms=20)
        run_concurrently(batcher, [[i] for i in range(6)])
    assert model.calls == [1] * 6


def test_a_bad_request_fails_alone_and_its_neighbours_are_answered():
    model = RecordingModel()
    with ThreadPoolExecutor(1) as pool:
        batcher = MicroBatcher("m:v1", model, pool, max_batch_size=16, max_wait_ms=20)
        results = run_concurrently(batcher, [[1], [-5], [3]])
    np.testing.assert_array_equal(results[0], [[1, 2]])
    assert isinstance(results[1], ValueError) and "negative" in str(results[1])
    np.testing.assert_array_equal(results[2], [[3, 6]])


def test_invalid_arguments():
    with pytest.raises(ValueError, match="max_batch_size"):
        MicroBatcher("m", RecordingModel(), None, max_batch_size=0)

    async def empty():
        batcher = MicroBatcher("m", RecordingModel(), None)
        with pytest.raises(ValueError, match="nothing to embed"):
            await batcher.submit([])
    asyncio.run(empty())


def test_live_server_batches_concurrent_http_queries(shared_server):
    with shared_server.client(headers=shared_server.headers) as client:
        client.post("/galleries", json={"name": "batching", "model": "minilm_l6", "index": "Flat"})
        client.post("/galleries/batching/items", json={"items": [{"key": "a", "text": "a text editor"}]})
        assert client.post("/galleries/batching/search", json={"text": "warm up"}).status_code == 200

    def counts():
        text = httpx.get(f"{shared_server.url}/metrics").text
        ones = float(re.search(r'oml_batch_size_bucket\{le="1.0",model="minilm_l6:v1"\} (\S+)', text).group(1))
        total = float(re.search(r'oml_batch_size_count\{model="minilm_l6:v1"\} (\S+)', text).group(1))
        return ones, total

    ones_before, total_before = counts()

    async def burst():
        async with httpx.AsyncClient(base_url=shared_server.url, timeout=60) as client:
            replies = await asyncio.gather(*(client.post("/galleries/batching/search", json={"text": f"query {i}"})
                                             for i in range(32)))
        return [r.status_code for r in replies]

    assert asyncio.run(burst()) == [200] * 32
    ones_after, total_after = counts()
    calls = total_after - total_before
    assert calls < 32, f"32 concurrent queries took {calls} model calls"
    assert ones_after - ones_before < calls, "no call held more than one query"
    with shared_server.client(headers=shared_server.headers) as client:
        client.delete("/galleries/batching")
