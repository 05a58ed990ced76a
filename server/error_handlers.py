"""The app's exception handlers: every error becomes a JSON `{"detail", "error"}` reply, or under `/v1/` (the
OpenAI-compatible API) OpenAI's `{"error": {"message", "type", "param", "code"}}` with the same message and code.

Errors listed in `server.error_table` share one handler; FastAPI's own validation and routing errors and anything
unexpected (500) have one each.
"""

import json
import logging
import sqlite3
from pathlib import Path
from typing import Any, List, Mapping, Optional

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from indexing.errors import InsufficientStorageError, storage_full_cause
from server.error_table import ERROR_TABLE, reply_for
from server.errors import describe_validation_errors, error_body, without_server_paths
from server.openai_schemas import openai_error_body

logger = logging.getLogger(__name__)

# HTTPExceptions (an unknown route, a wrong method, a multipart body starlette cannot parse) carry only a status.
_CODES_BY_STATUS = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
                    405: "method_not_allowed", 409: "conflict", 413: "payload_too_large", 415: "unsupported_media_type",
                    422: "invalid_input", 501: "not_implemented", 503: "unavailable"}

OPENAI_PREFIX = "/v1/"


def _error_reply(request: Request, status: int, detail: str, code: str, headers: Optional[Mapping[str, str]] = None,
                 param: Optional[str] = None, **extra: Any) -> JSONResponse:
    """The error reply in the shape the request's API expects (OpenAI's under /v1/, else ours)."""
    if request.url.path.startswith(OPENAI_PREFIX):
        body = openai_error_body(detail, code, status, param)
    else:
        body = error_body(detail, code, **extra)
    return JSONResponse(body, status_code=status, headers=headers)


def _server_folders(request: Request) -> List[Path]:
    services = getattr(request.app.state, "services", None)
    settings = getattr(services, "settings", None)
    return [settings.data_dir, settings.models_dir] if settings is not None else []


async def _table_error_handler(request: Request, error: Exception) -> JSONResponse:
    reply = reply_for(error)
    assert reply is not None, f"{type(error).__name__} is registered but not in the error table"
    logger.info("%s %s -> %d: %s", request.method, request.url.path, reply.status, error)
    detail = without_server_paths(str(error) or type(error).__name__, _server_folders(request))
    return _error_reply(request, reply.status, detail, reply.code)


async def _http_error_handler(request: Request, error: StarletteHTTPException) -> JSONResponse:
    detail = error.detail if isinstance(error.detail, str) else json.dumps(error.detail)
    code = _CODES_BY_STATUS.get(error.status_code, "error")
    return _error_reply(request, error.status_code, detail, code, headers=getattr(error, "headers", None))


async def _validation_error_handler(request: Request, error: RequestValidationError) -> JSONResponse:
    errors = list(error.errors())
    malformed = [e for e in errors if e.get("type") == "json_invalid"]
    if malformed:
        reason = str(malformed[0].get("ctx", {}).get("error", ""))
        detail = f"malformed JSON body: {reason}".rstrip(": ")
        return _error_reply(request, 400, detail, "malformed_json")
    detail = describe_validation_errors(errors) or "invalid request"
    safe_errors = [{"loc": [str(part) for part in e.get("loc", ())], "msg": str(e.get("msg", "")),
                    "type": str(e.get("type", ""))} for e in errors[:20]]
    param = ".".join(part for part in safe_errors[0]["loc"] if part != "body") if safe_errors else None
    return _error_reply(request, 422, detail, "invalid_request", param=param or None, errors=safe_errors)


async def _unexpected_error_handler(request: Request, error: Exception) -> JSONResponse:
    full = storage_full_cause(error)
    if full is not None:  # ENOSPC / SQLITE_FULL from anywhere (an upload spooled, a job recorded, a file kept)
        logger.warning("%s %s: the data disk is full: %s", request.method, request.url.path, full)
        return await _table_error_handler(request, InsufficientStorageError(
            "no space left on the server's data disk; nothing was written, free some space and retry"))
    logger.exception("unexpected error on %s %s", request.method, request.url.path)
    return _error_reply(request, 500, f"internal error: {type(error).__name__}", "internal_error")


def install_error_handlers(app: FastAPI) -> None:
    """Register the JSON error handlers on `app`."""
    for error_type in ERROR_TABLE:
        app.add_exception_handler(error_type, _table_error_handler)
    app.add_exception_handler(StarletteHTTPException, _http_error_handler)
    app.add_exception_handler(RequestValidationError, _validation_error_handler)
    # a full disk surfaces as OSError (ENOSPC) or a SQLite error: handled here, so the reply is a clean 507 and the
    # connection stays usable (the catch-all below re-raises after its 500, which closes the connection)
    app.add_exception_handler(OSError, _unexpected_error_handler)
    app.add_exception_handler(sqlite3.Error, _unexpected_error_handler)
    app.add_exception_handler(Exception, _unexpected_error_handler)


__all__ = ["install_error_handlers"]
