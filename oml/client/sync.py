"""`OmlClient`: the blocking client (httpx.Client)."""

import os
import time
from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Union

import httpx

from oml.client.calls import Call, Routes, T
from oml.client.errors import JobFailedError, OmlConnectionError
from oml.client.retry import RetryPolicy
from oml.client.types import Item, Job


def client_headers(api_key: Optional[str], headers: Optional[Dict[str, str]]) -> Dict[str, str]:
    """The API key goes in `X-API-Key`, the header the server reads (a bearer token works too)."""
    merged = dict(headers or {})
    if api_key:
        merged["X-API-Key"] = api_key
    return merged


class OmlClient(Routes):
    """Typed calls to an oml-server. `OmlClient("http://127.0.0.1:8000", api_key=...)`; use as a context manager or
    `close()` it. Errors are `oml.client.OmlError` subclasses; 503 replies and broken connections are retried
    `retries` times with exponential backoff (`Retry-After` honoured)."""

    def __init__(self, base_url: str, api_key: Optional[str] = None, timeout: float = 60.0, retries: int = 3,
                 backoff: float = 0.5, max_backoff: float = 30.0, headers: Optional[Dict[str, str]] = None,
                 transport: Optional[httpx.BaseTransport] = None):
        self.policy = RetryPolicy(retries, backoff, max_backoff)
        self._http = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout,
                                  headers=client_headers(api_key, headers), transport=transport)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "OmlClient":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def _send(self, call: Call[T]) -> T:
        attempt = 0
        while True:
            try:
                response = self._http.request(call.method, call.path, **call.request_kwargs())
            except httpx.TransportError as error:
                if not self.policy.should_retry_error(error, attempt, call.idempotent):
                    raise OmlConnectionError(f"{call.method} {call.path}: {type(error).__name__}: {error}") from error
                time.sleep(self.policy.delay(attempt))
                attempt += 1
                continue
            if self.policy.should_retry_reply(response, attempt, call.retry_unavailable):
                time.sleep(self.policy.delay(attempt, response))
                attempt += 1
                continue
            return call.finish(response)

    def iter_items(self, gallery: str, page_size: int = 500, label: Optional[Union[int, str]] = None,
                   include_embedding: bool = False) -> Iterator[Item]:
        """Every item of the gallery, page after page (`list_items` with the cursor passed on)."""
        cursor = None
        while True:
            page = self.list_items(gallery, limit=page_size, cursor=cursor, label=label,
                                   include_embedding=include_embedding)
            yield from page.items
            cursor = page.next_cursor
            if not cursor:
                return

    def wait_job(self, job_id: str, progress: bool = False, timeout: Optional[float] = None,
                 poll_interval: float = 0.5, raise_on_failure: bool = True) -> Job:
        """Poll `GET /jobs/{id}` until the job ends (done, failed, interrupted, cancelled), with a tqdm bar when
        `progress`; `JobFailedError` for an end other than done (unless `raise_on_failure=False`),
        `TimeoutError` after `timeout` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        bar = _progress_bar(job_id) if progress else None
        try:
            while True:
                job = self.job(job_id)
                _show(bar, job)
                if job.finished:
                    break
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"job {job_id} still {job.state} after {timeout} s ({job.done}/{job.total})")
                time.sleep(poll_interval)
        finally:
            if bar is not None:
                bar.close()
        if raise_on_failure and job.state != "done":
            raise JobFailedError(job)
        return job

    def download_snapshot(self, gallery: str, snapshot_id: str, path: Union[str, Path]) -> Path:
        """`GET /galleries/{name}/snapshots/{id}`: stream the archive to `path` (written whole or not at all)."""
        target = Path(path)
        partial = target.with_name(f".{target.name}.part")
        call: Call[Path] = Call("GET", self.snapshot_path(gallery, snapshot_id), lambda r: target, idempotent=True)
        attempt = 0
        while True:
            try:
                with self._http.stream("GET", call.path) as response:
                    if response.status_code >= 400:
                        response.read()
                        return call.finish(response)
                    with open(partial, "wb") as handle:
                        for chunk in response.iter_bytes():
                            handle.write(chunk)
                os.replace(partial, target)
                return target
            except httpx.TransportError as error:
                partial.unlink(missing_ok=True)
                if not self.policy.should_retry_error(error, attempt, True):
                    raise OmlConnectionError(f"GET {call.path}: {type(error).__name__}: {error}") from error
                time.sleep(self.policy.delay(attempt))
                attempt += 1


def _progress_bar(job_id: str) -> Any:
    from tqdm import tqdm

    return tqdm(total=0, desc=f"job {job_id[:8]}", unit="item")


def _show(bar: Any, job: Job) -> None:
    """Move the bar to the job's progress (total set once the job reports one)."""
    if bar is None:
        return
    if bar.total != job.total:
        bar.total = job.total
    bar.set_postfix_str(job.phase or job.state, refresh=False)
    bar.update(max(0, job.done - bar.n))


__all__ = ["OmlClient", "client_headers"]
