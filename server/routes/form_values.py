"""Plain values of multipart forms (numbers, booleans, JSON lists), checked with the request error a JSON body's
field would get."""

from typing import Any, Optional, Type

from pydantic import BaseModel

from server.body import parse_json_model
from server.booleans import parse_bool
from server.errors import InvalidInputError


def form_int(value: Any, field: str, default: Optional[int]) -> Optional[int]:
    """An integer form field; blank or absent: `default`."""
    if value is None or value == "":
        return default
    try:
        return int(str(value))
    except ValueError:
        raise InvalidInputError(f"{field} must be an integer, got {value!r}", code="invalid_request") from None


def form_bool(value: Any, field: str) -> bool:
    """A boolean form field by the one boolean rule (`server.booleans`); absent: false."""
    try:
        return parse_bool(value)
    except ValueError:
        raise InvalidInputError(f"{field} must be true or false, got {value!r}", code="invalid_request") from None


def form_json(value: Any, model: Type[BaseModel], field: str) -> Optional[BaseModel]:
    """A JSON form field parsed into `model` (400 if it is not JSON, 422 if it does not fit); absent: None."""
    if value is None or value == "":
        return None
    return parse_json_model(value, model, field)


__all__ = ["form_int", "form_bool", "form_json"]
