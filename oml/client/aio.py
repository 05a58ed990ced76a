"""`AsyncOmlClient`: the asyncio client (httpx.AsyncClient); the same methods as `OmlClient`, awaited."""

import asyncio
import os
import time
from pathlib import Path
from typing import Any, AsyncIterator, Dict, Optional, Union

import httpx

from oml.client.calls import Call, Routes, T
from oml.client.errors import JobFailedError, OmlConnectionError
from oml.client.retry import RetryPolicy
from oml.client.sync import _progress_bar, _show, client_headers
from oml.client.types import Item, Job


class AsyncOmlClient(Routes):
    """`async with AsyncOmlClient(url, api_key=...) as client: await client.search(...)`. Every method of `Routes`
    returns an awaitable of the type it names; retries and errors as in `OmlClient`."""

    def __init__(self, base_url: str, api_key: Optional[str] = None, timeout: float = 60.0, retries: int = 3,
                 backoff: float = 0.5, max_backoff: float = 30.0, headers: Optional[Dict[str, str]] = None,
                 transport: Optional[httpx.AsyncBaseTransport] = None):
        self.policy = RetryPolicy(retries, backoff, max_backoff)
        self._http = httpx.AsyncClient(base_url=base_url.rstrip("/"), timeout=timeout,
                                       headers=client_headers(api_key, headers), transport=transport)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> "AsyncOmlClient":
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.aclose()

    async def _send(self, call: Call[T]) -> T:  # type: ignore[override]
        attempt = 0
        while True:
            try:
                response = await self._http.request(call.method, call.path, **call.request_kwargs())
            except httpx.TransportError as error:
                if not self.policy.should_retry_error(error, attempt, call.idempotent):
                    raise OmlConnectionError(f"{call.method} {call.path}: {type(error).__name__}: {error}") from error
                await asyncio.sleep(self.policy.delay(attempt))
                attempt += 1
                continue
            if self.policy.should_retry_reply(response, attempt, call.retry_unavailable):
                await asyncio.sleep(self.policy.delay(attempt, response))
                attempt += 1
                continue
            return call.finish(response)

    async def iter_items(self, gallery: str, page_size: int = 500, label: Optional[Union[int, str]] = None,
                         include_embedding: bool = False) -> AsyncIterator[Item]:
        """Every item of the gallery, page after page: `async for item in client.iter_items(name)`."""
        cursor = None
        while True:
            page = await self.list_items(gallery, limit=page_size, cursor=cursor, label=label,
                                         include_embedding=include_embedding)
            for item in page.items:
                yield item
            cursor = page.next_cursor
            if not cursor:
                return

    async def wait_job(self, job_id: str, progress: bool = False, timeout: Optional[float] = None,
                       poll_interval: float = 0.5, raise_on_failure: bool = True) -> Job:
        """As `OmlClient.wait_job`, without blocking the event loop."""
        deadline = None if timeout is None else time.monotonic() + timeout
        bar = _progress_bar(job_id) if progress else None
        try:
            while True:
                job = await self.job(job_id)
                _show(bar, job)
                if job.finished:
                    break
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"job {job_id} still {job.state} after {timeout} s ({job.done}/{job.total})")
                await asyncio.sleep(poll_interval)
        finally:
            if bar is not None:
                bar.close()
        if raise_on_failure and job.state != "done":
            raise JobFailedError(job)
        return job

    async def download_snapshot(self, gallery: str, snapshot_id: str, path: Union[str, Path]) -> Path:
        """As `OmlClient.download_snapshot`."""
        target = Path(path)
        partial = target.with_name(f".{target.name}.part")
        call: Call[Path] = Call("GET", self.snapshot_path(gallery, snapshot_id), lambda r: target, idempotent=True)
        attempt = 0
        while True:
            try:
                async with self._http.stream("GET", call.path) as response:
                    if response.status_code >= 400:
                        await response.aread()
                        return call.finish(response)
                    with open(partial, "wb") as handle:
                        async for chunk in response.aiter_bytes():
                            handle.write(chunk)
                os.replace(partial, target)
                return target
            except httpx.TransportError as error:
                partial.unlink(missing_ok=True)
                if not self.policy.should_retry_error(error, attempt, True):
                    raise OmlConnectionError(f"GET {call.path}: {type(error).__name__}: {error}") from error
                await asyncio.sleep(self.policy.delay(attempt))
                attempt += 1


__all__ = ["AsyncOmlClient"]
