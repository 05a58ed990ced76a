"""When to retry and how long to wait: 503 replies (any call: the server did nothing) and broken connections
(idempotent calls; a refused connection for any call, as nothing was sent), with exponential backoff and the
server's `Retry-After` when it sends one."""

import email.utils
import time
from dataclasses import dataclass
from typing import Optional

import httpx


@dataclass(frozen=True)
class RetryPolicy:
    """`retries` further attempts after the first; waits `backoff * 2**attempt` seconds, at most `max_backoff`."""

    retries: int = 3
    backoff: float = 0.5
    max_backoff: float = 30.0

    def delay(self, attempt: int, response: Optional[httpx.Response] = None) -> float:
        """Seconds to wait before retry number `attempt` (0-based): `Retry-After` if the reply names one."""
        after = retry_after(response) if response is not None else None
        if after is not None:
            return min(after, self.max_backoff)
        return min(self.backoff * (2 ** attempt), self.max_backoff)

    def should_retry_reply(self, response: httpx.Response, attempt: int, enabled: bool) -> bool:
        return enabled and response.status_code == 503 and attempt < self.retries

    def should_retry_error(self, error: httpx.TransportError, attempt: int, idempotent: bool) -> bool:
        return attempt < self.retries and (idempotent or isinstance(error, httpx.ConnectError))


def retry_after(response: httpx.Response) -> Optional[float]:
    """The `Retry-After` header in seconds (a number of seconds or an HTTP date), or None."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


__all__ = ["RetryPolicy", "retry_after"]
