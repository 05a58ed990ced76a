"""Problems with a request that the HTTP layer finds itself (auth, body format, input limits), and the JSON body of
every error reply. Their HTTP status and code are in `server.error_table`, with those of every other error."""

import re
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence


class ApiError(Exception):
    """A problem with the request; `code` may name it more finely than the table's code for its type."""

    def __init__(self, detail: str, *, code: Optional[str] = None):
        super().__init__(detail)
        self.detail = detail
        self.code = code


class InvalidInputError(ApiError):
    """A field that parses but breaks a rule: empty text, too many queries, a duplicate key, a bad image."""


class ModalityMismatchError(ApiError):
    """Texts sent to an image gallery, or images to a text gallery."""


class MalformedJsonError(ApiError):
    """A body or a multipart part that is not JSON."""


class UnsupportedMediaTypeError(ApiError):
    """A content type other than JSON or multipart."""


class UnauthorizedError(ApiError):
    """The API key is needed but was not sent."""


class ForbiddenError(ApiError):
    """The API key sent is wrong."""


def error_body(detail: str, code: str, **extra: Any) -> Dict[str, Any]:
    """The JSON body of every error reply."""
    return {"detail": detail, "error": code, **extra}


def without_server_paths(detail: str, folders: Sequence[Any]) -> str:
    """`detail` with every path inside the server's `folders` (data and models dirs, as given and resolved) cut to
    its last part, e.g. `/srv/data/galleries/f/items.sqlite: ...` -> `items.sqlite: ...`: file paths stay on the
    server."""
    roots = {str(root) for folder in folders if folder for root in (Path(folder), Path(folder).resolve())}
    roots.discard(".")
    for root in sorted(roots, key=len, reverse=True):
        pattern = re.compile(r"(?<![\w./-])" + re.escape(root.rstrip("/")) + r"(?![\w.-])(/[^\s:'\",;)]*)?")
        detail = pattern.sub(lambda match: (match.group(1) or "").rstrip("/").rsplit("/", 1)[-1]
                             or "the server's folder", detail)
    return detail


def describe_validation_errors(errors: Sequence[Mapping[str, Any]], prefix: str = "") -> str:
    """Pydantic's first five errors as `location: message` sentences, e.g. `items.0.key: String should have ...`."""
    parts = []
    for error in errors[:5]:
        location = ".".join(str(part) for part in error.get("loc", ()) if part != "body") or "body"
        parts.append(f"{prefix}{location}: {error.get('msg', 'invalid value')}")
    return "; ".join(parts)


__all__ = ["ApiError", "InvalidInputError", "ModalityMismatchError", "MalformedJsonError", "UnsupportedMediaTypeError",
           "UnauthorizedError", "ForbiddenError", "error_body", "describe_validation_errors", "without_server_paths"]
