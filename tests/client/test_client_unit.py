"""The client without a server: importing it stays light, errors carry status / code / detail in both reply shapes,
503 and broken connections are retried with backoff and Retry-After, jobs are awaited to their end."""

import asyncio
import subprocess
import sys
from typing import List

import httpx
import pytest

import oml.client.aio as aio_module
import oml.client.sync as sync_module
from oml.client import (AsyncOmlClient, AuthenticationError, InvalidRequestError, JobFailedError, NotFoundError,
                        OmlClient, OmlConnectionError, UnavailableError)
from oml.client.retry import RetryPolicy

HEAVY = ("torch", "numpy", "fastapi", "onnxruntime", "server", "indexing", "training", "faiss", "pandas")


def test_importing_the_client_loads_no_server_or_model_dependencies():
    code = ("import sys, oml.client; heavy = %r; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))" % (HEAVY,))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


@pytest.fixture()
def sleeps(monkeypatch) -> List[float]:
    recorded: List[float] = []
    monkeypatch.setattr(sync_module.time, "sleep", recorded.append)
    return recorded


def _client(handler, **options) -> OmlClient:
    return OmlClient("http://oml.test", api_key="k", transport=httpx.MockTransport(handler), **options)


def test_errors_carry_status_code_and_detail_in_both_shapes():
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["x-api-key"] == "k"
        if request.url.path.startswith("/v1/"):
            return httpx.Response(401, json={"error": {"message": "needs the key", "type": "authentication_error",
                                                       "param": None, "code": "unauthorized"}})
        if request.url.path == "/galleries/a b":
            return httpx.Response(422, json={"detail": "bad name", "error": "invalid_name"})
        return httpx.Response(404, json={"detail": "unknown gallery 'x'", "error": "not_found"})

    with _client(handler) as client:
        with pytest.raises(NotFoundError) as caught:
            client.gallery("x")
        assert (caught.value.status, caught.value.code, caught.value.detail) == (404, "not_found",
                                                                                 "unknown gallery 'x'")
        with pytest.raises(AuthenticationError) as caught:
            client.openai_models()
        assert (caught.value.status, caught.value.code, caught.value.detail) == (401, "unauthorized", "needs the key")
        with pytest.raises(InvalidRequestError):
            client.gallery("a b")


def test_503_is_retried_with_backoff_and_retry_after_then_raised(sleeps):
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.method)
        headers = {"Retry-After": "2"} if len(calls) == 2 else {}
        if len(calls) < 4:
            return httpx.Response(503, json={"detail": "loading", "error": "model_unavailable"}, headers=headers)
        return httpx.Response(200, json={"name": "g", "model": "m", "model_version": 1, "modality": "text",
                                         "embedding_size": 3, "index": "exact", "count": 0, "new_field": 1})

    with _client(handler, retries=3, backoff=0.25) as client:
        assert client.create_gallery("g", "m").count == 0
    assert (calls, sleeps) == (["POST"] * 4, [0.25, 2.0, 1.0])
    calls.clear()
    with _client(handler, retries=1, backoff=0.25) as client, pytest.raises(UnavailableError) as caught:
        client.galleries()
    assert (caught.value.status, caught.value.code) == (503, "model_unavailable")


def test_broken_connections_are_retried_for_idempotent_calls_only(sleeps):
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.method)
        if len(calls) == 1 or request.method == "POST":
            raise httpx.ReadError("connection reset", request=request)
        return httpx.Response(200, json={"id": "j", "gallery": "g", "kind": "index", "state": "done", "total": 1,
                                         "done": 1, "progress": 1.0})

    with _client(handler) as client:
        assert client.job("j").state == "done"
        with pytest.raises(OmlConnectionError) as caught:
            client.create_snapshot("g")
    assert caught.value.status is None
    assert calls == ["GET", "GET", "POST"]


def test_wait_job_follows_progress_to_the_end_and_raises_for_a_failed_job(sleeps, capsys):
    states = iter([("queued", 0), ("running", 3), ("running", 7), ("done", 10)])

    def handler(request: httpx.Request) -> httpx.Response:
        state, done = next(states, ("failed", 4))
        return httpx.Response(200, json={"id": "j1", "gallery": "g", "kind": "index", "state": state, "total": 10,
                                         "done": done, "progress": done / 10, "error": "boom" if state == "failed"
                                         else None, "phase": "training"})

    with _client(handler) as client:
        job = client.wait_job("j1", progress=True, poll_interval=0.1)
        assert (job.state, job.done, job.finished, job.phase) == ("done", 10, True, "training")
        assert "10/10" in capsys.readouterr().err
        with pytest.raises(JobFailedError) as caught:
            client.wait_job("j1")
        assert (caught.value.code, caught.value.job.error) == ("failed", "boom")


def test_the_async_client_retries_and_pages(monkeypatch):
    pages = {None: (["a", "b"], "c1"), "c1": (["c"], None)}
    waits: List[float] = []

    async def no_sleep(seconds: float) -> None:
        waits.append(seconds)

    monkeypatch.setattr(aio_module.asyncio, "sleep", no_sleep)
    first = {"done": False}

    def handler(request: httpx.Request) -> httpx.Response:
        if not first["done"]:
            first["done"] = True
            return httpx.Response(503, json={"detail": "busy", "error": "gallery_busy"})
        keys, cursor = pages[request.url.params.get("cursor")]
        return httpx.Response(200, json={"gallery": "g", "items": [{"key": key, "payload": {}} for key in keys],
                                         "next_cursor": cursor})

    async def run() -> List[str]:
        async with AsyncOmlClient("http://oml.test", transport=httpx.MockTransport(handler), backoff=0.1) as client:
            return [item.key async for item in client.iter_items("g", page_size=2)]

    assert asyncio.run(run()) == ["a", "b", "c"]
    assert waits == [0.1]


def test_the_retry_delay_reads_retry_after_as_seconds_or_a_date():
    policy = RetryPolicy(retries=3, backoff=1.0, max_backoff=5.0)
    assert [policy.delay(n) for n in range(4)] == [1.0, 2.0, 4.0, 5.0]
    assert policy.delay(0, httpx.Response(503, headers={"Retry-After": "3"})) == 3.0
    assert policy.delay(0, httpx.Response(503, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})) == 0.0
