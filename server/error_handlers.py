"""The app's exception handlers: every error becomes a JSON `{"detail", "error"}` reply.

Errors listed in `server.error_table` share one handler; FastAPI's own validation and routing errors and anything
unexpected (500) have one each.
"""

import json
import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from server.error_table import ERROR_TABLE, reply_for
from server.errors import describe_validation_errors, error_body

logger = logging.getLogger(__name__)

# HTTPExceptions (an unknown route, a wrong method, a multipart body starlette cannot parse) carry only a status.
_CODES_BY_STATUS = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
                    405: "method_not_allowed", 409: "conflict", 413: "payload_too_large", 415: "unsupported_media_type",
                    422: "invalid_input", 501: "not_implemented", 503: "unavailable"}


async def _table_error_handler(request: Request, error: Exception) -> JSONResponse:
    reply = reply_for(error)
    assert reply is not None, f"{type(error).__name__} is registered but not in the error table"
    logger.info("%s %s -> %d: %s", request.method, request.url.path, reply.status, error)
    return JSONResponse(error_body(str(error) or type(error).__name__, reply.code), status_code=reply.status)


async def _http_error_handler(request: Request, error: StarletteHTTPException) -> JSONResponse:
    detail = error.detail if isinstance(error.detail, str) else json.dumps(error.detail)
    code = _CODES_BY_STATUS.get(error.status_code, "error")
    return JSONResponse(error_body(detail, code), status_code=error.status_code,
                        headers=getattr(error, "headers", None))


async def _validation_error_handler(request: Request, error: RequestValidationError) -> JSONResponse:
    errors = list(error.errors())
    malformed = [e for e in errors if e.get("type") == "json_invalid"]
    if malformed:
        reason = str(malformed[0].get("ctx", {}).get("error", ""))
        detail = f"malformed JSON body: {reason}".rstrip(": ")
        return JSONResponse(error_body(detail, "malformed_json"), status_code=400)
    detail = describe_validation_errors(errors) or "invalid request"
    safe_errors = [{"loc": [str(part) for part in e.get("loc", ())], "msg": str(e.get("msg", "")),
                    "type": str(e.get("type", ""))} for e in errors[:20]]
    return JSONResponse(error_body(detail, "invalid_request", errors=safe_errors), status_code=422)


async def _unexpected_error_handler(request: Request, error: Exception) -> JSONResponse:
    logger.exception("unexpected error on %s %s", request.method, request.url.path)
    return JSONResponse(error_body(f"internal error: {type(error).__name__}", "internal_error"), status_code=500)


def install_error_handlers(app: FastAPI) -> None:
    """Register the JSON error handlers on `app`."""
    for error_type in ERROR_TABLE:
        app.add_exception_handler(error_type, _table_error_handler)
    app.add_exception_handler(StarletteHTTPException, _http_error_handler)
    app.add_exception_handler(RequestValidationError, _validation_error_handler)
    app.add_exception_handler(Exception, _unexpected_error_handler)


__all__ = ["install_error_handlers"]
