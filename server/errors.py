"""API errors and the handlers that turn every client mistake into a JSON 4xx `{"detail", "error"}`."""

import json
import logging
from typing import Any, Dict, Optional

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

logger = logging.getLogger(__name__)


class ApiError(Exception):
    """An error the client can act on: HTTP status, a short machine code and a sentence naming the problem."""

    status_code = 400
    code = "bad_request"

    def __init__(self, detail: str, *, code: Optional[str] = None, status_code: Optional[int] = None):
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code
        if status_code is not None:
            self.status_code = status_code


class NotFoundError(ApiError):
    status_code = 404
    code = "not_found"


class ConflictError(ApiError):
    status_code = 409
    code = "conflict"


class InvalidInputError(ApiError):
    status_code = 422
    code = "invalid_input"


class ModalityMismatchError(ApiError):
    status_code = 422
    code = "modality_mismatch"


class PayloadTooLargeError(ApiError):
    status_code = 413
    code = "payload_too_large"


class UnauthorizedError(ApiError):
    status_code = 401
    code = "unauthorized"


class ForbiddenError(ApiError):
    status_code = 403
    code = "forbidden"


class NotImplementedApiError(ApiError):
    status_code = 501
    code = "not_implemented"


class UnavailableError(ApiError):
    status_code = 503
    code = "unavailable"


def error_body(detail: str, code: str, **extra: Any) -> Dict[str, Any]:
    """The JSON body of every error reply."""
    return {"detail": detail, "error": code, **extra}


_HTTP_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
               409: "conflict", 413: "payload_too_large", 415: "unsupported_media_type", 422: "invalid_input",
               501: "not_implemented", 503: "unavailable"}


def _describe_validation_error(error: Dict[str, Any]) -> str:
    location = ".".join(str(part) for part in error.get("loc", ()) if part != "body") or "body"
    return f"{location}: {error.get('msg', 'invalid value')}"


async def _api_error_handler(request: Request, exc: ApiError) -> JSONResponse:
    return JSONResponse(error_body(exc.detail, exc.code), status_code=exc.status_code)


async def _http_error_handler(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    detail = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
    code = _HTTP_CODES.get(exc.status_code, "error")
    return JSONResponse(error_body(detail, code), status_code=exc.status_code, headers=getattr(exc, "headers", None))


async def _validation_error_handler(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = list(exc.errors())
    if any(error.get("type") == "json_invalid" for error in errors):
        reason = next(str(e.get("ctx", {}).get("error", "")) for e in errors if e.get("type") == "json_invalid")
        return JSONResponse(error_body(f"malformed JSON body: {reason}".rstrip(": "), "malformed_json"), status_code=400)
    detail = "; ".join(_describe_validation_error(error) for error in errors[:5]) or "invalid request"
    safe_errors = [{"loc": [str(part) for part in e.get("loc", ())], "msg": str(e.get("msg", "")),
                    "type": str(e.get("type", ""))} for e in errors[:20]]
    return JSONResponse(error_body(detail, "invalid_request", errors=safe_errors), status_code=422)


async def _unexpected_error_handler(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unexpected error on %s %s", request.method, request.url.path)
    return JSONResponse(error_body(f"internal error: {type(exc).__name__}", "internal_error"), status_code=500)


def install_error_handlers(app: FastAPI) -> None:
    """Register the JSON error handlers on `app`."""
    app.add_exception_handler(ApiError, _api_error_handler)
    app.add_exception_handler(StarletteHTTPException, _http_error_handler)
    app.add_exception_handler(RequestValidationError, _validation_error_handler)
    app.add_exception_handler(Exception, _unexpected_error_handler)



def install_library_error_handlers(app: FastAPI) -> None:
    """Errors of the layers below that a client can cause or must be told about, as JSON 4xx/503."""
    from indexing import GalleryNotFoundError, InvalidGalleryNameError
    from oml.inference import InvalidInputError as UndecodableInput
    from server.model_registry import ModelNotFound, ModelUnavailable

    def handler(status: int, code: str):
        async def respond(request: Request, exc: Exception) -> JSONResponse:
            logger.info("%s %s -> %d: %s", request.method, request.url.path, status, exc)
            return JSONResponse(error_body(str(exc), code), status_code=status)
        return respond

    app.add_exception_handler(UndecodableInput, handler(422, "invalid_input"))
    app.add_exception_handler(InvalidGalleryNameError, handler(422, "invalid_name"))
    app.add_exception_handler(GalleryNotFoundError, handler(404, "not_found"))
    app.add_exception_handler(ModelNotFound, handler(503, "model_unavailable"))
    app.add_exception_handler(ModelUnavailable, handler(503, "model_unavailable"))


__all__ = [
    "ApiError", "NotFoundError", "ConflictError", "InvalidInputError", "ModalityMismatchError",
    "PayloadTooLargeError", "UnauthorizedError", "ForbiddenError", "NotImplementedApiError", "UnavailableError",
    "error_body", "install_error_handlers", "install_library_error_handlers",
]
