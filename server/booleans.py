"""The server's one reading of a boolean, for `OML_*` settings and multipart form fields alike."""

from typing import Any

from pydantic import TypeAdapter, ValidationError

_PYDANTIC_BOOL = TypeAdapter(bool)


def parse_bool(value: Any) -> bool:
    """Pydantic's booleans (true/false, 1/0, yes/no, on/off, any case); None or a blank string is false.

    >>> parse_bool("Yes"), parse_bool(""), parse_bool(0)
    (True, False, False)
    """
    if isinstance(value, str):
        value = value.strip()
    if value is None or value == "":
        return False
    try:
        return _PYDANTIC_BOOL.validate_python(value)
    except ValidationError:
        raise ValueError(f"not a boolean: {value!r} (use true/false, 1/0, yes/no, on/off)") from None


__all__ = ["parse_bool"]
