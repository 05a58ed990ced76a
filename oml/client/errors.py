"""Errors of the oml-server client: every non-2xx reply becomes an `OmlError` subclass carrying the HTTP status, the
server's `error` code and its `detail` sentence (from `{"detail", "error"}`, or OpenAI's shape under `/v1/`)."""

from typing import Any, Dict, Optional, Type


class OmlError(Exception):
    """A failed call: `status` (None when no reply came), `code` (the server's `error`), `detail`, `body`."""

    def __init__(self, detail: str, status: Optional[int] = None, code: Optional[str] = None,
                 body: Any = None):
        super().__init__(f"{status} {code}: {detail}" if status is not None else detail)
        self.detail = detail
        self.status = status
        self.code = code
        self.body = body


class BadRequestError(OmlError):
    """400: malformed JSON, an invalid archive or snapshot."""


class AuthenticationError(OmlError):
    """401: the API key is needed and was not sent."""


class PermissionDeniedError(OmlError):
    """403: the API key is wrong."""


class NotFoundError(OmlError):
    """404: unknown gallery, item, job, model or snapshot."""


class ConflictError(OmlError):
    """409: the gallery exists, a model mismatch, a gallery conflict."""


class PayloadTooLargeError(OmlError):
    """413: the body is over the server's limit."""


class UnsupportedMediaTypeError(OmlError):
    """415: a content type or archive kind the route does not take."""


class InvalidRequestError(OmlError):
    """422: a field that breaks a rule (bad k, wrong vector size, modality mismatch, ...)."""


class ServerError(OmlError):
    """5xx other than 503 and 507."""


class UnavailableError(ServerError):
    """503: a model or gallery cannot serve right now (retried with backoff before this is raised)."""


class InsufficientStorageError(ServerError):
    """507: the server's data disk is full; nothing was written."""


class OmlConnectionError(OmlError):
    """No reply: the server could not be reached or the connection broke (`status` is None)."""


class JobFailedError(OmlError):
    """A job awaited with `wait_job` ended `failed`, `interrupted` or `cancelled`; `code` is that state, `job` it."""

    def __init__(self, job: Any):
        super().__init__(f"job {job.id} ended {job.state}: {job.error or 'no reason given'}", code=job.state)
        self.job = job


_BY_STATUS: Dict[int, Type[OmlError]] = {
    400: BadRequestError, 401: AuthenticationError, 403: PermissionDeniedError, 404: NotFoundError,
    409: ConflictError, 413: PayloadTooLargeError, 415: UnsupportedMediaTypeError, 422: InvalidRequestError,
    503: UnavailableError, 507: InsufficientStorageError,
}


def error_for(status: int, body: Any, text: str = "") -> OmlError:
    """The `OmlError` of a reply with this status and (parsed JSON, or None) body."""
    detail, code = text.strip() or f"HTTP {status}", None
    if isinstance(body, dict):
        nested = body.get("error")
        if isinstance(nested, dict):  # OpenAI's shape under /v1/
            detail, code = str(nested.get("message", detail)), nested.get("code")
        else:
            detail, code = str(body.get("detail", detail)), nested if isinstance(nested, str) else None
    error_type = _BY_STATUS.get(status, ServerError if status >= 500 else OmlError)
    return error_type(detail, status=status, code=code, body=body)


__all__ = ["OmlError", "BadRequestError", "AuthenticationError", "PermissionDeniedError", "NotFoundError",
           "ConflictError", "PayloadTooLargeError", "UnsupportedMediaTypeError", "InvalidRequestError", "ServerError",
           "UnavailableError", "InsufficientStorageError", "OmlConnectionError", "JobFailedError", "error_for"]
