"""Reading request bodies that may be JSON or multipart, with clear 400/415/422 errors."""

import json
from typing import Any, List, Tuple, Type, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError
from starlette.datastructures import FormData, UploadFile

from server.errors import (InvalidInputError, MalformedJsonError, ModalityMismatchError, UnsupportedMediaTypeError,
                           describe_validation_errors)

ModelT = TypeVar("ModelT", bound=BaseModel)


def content_kind(request: Request) -> str:
    """'json' or 'multipart'; anything else is a 415."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json" or content_type.endswith("+json"):
        return "json"
    if content_type == "multipart/form-data":
        return "multipart"
    raise UnsupportedMediaTypeError(
        f"content type {content_type or '(none)'!r} is not accepted; send application/json or multipart/form-data")


def parse_json_model(raw: bytes, model: Type[ModelT], what: str = "body") -> ModelT:
    """Parse `raw` as JSON into `model`: 400 if it is not JSON, 422 naming the field if it does not fit."""
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise MalformedJsonError(f"malformed JSON in {what}: {error}") from None
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise InvalidInputError(describe_validation_errors(error.errors(), f"{what}: " if what != "body" else ""),
                                code="invalid_request") from None


def parse_json_list(raw: str, model: Type[ModelT], what: str) -> List[ModelT]:
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as error:
        raise MalformedJsonError(f"malformed JSON in {what}: {error}") from None
    if not isinstance(data, list):
        raise InvalidInputError(f"{what} must be a JSON list, got {type(data).__name__}", code="invalid_request")
    result = []
    for i, entry in enumerate(data):
        try:
            result.append(model.model_validate(entry))
        except ValidationError as error:
            raise InvalidInputError(describe_validation_errors(error.errors(), f"{what}[{i}]."),
                                    code="invalid_request") from None
    return result


async def read_form(request: Request, max_bytes: int) -> FormData:
    return await request.form(max_files=10_000, max_fields=1_000, max_part_size=max_bytes)


async def read_image_form(request: Request, gallery: str, modality: str, max_bytes: int, send_instead: str) -> FormData:
    """The multipart form of a request to an image gallery; to a text gallery, `ModalityMismatchError` saying what
    JSON to send instead (`send_instead`, e.g. `{"text": ...} instead of an image`)."""
    form = await read_form(request, max_bytes)
    if modality != "image":
        raise ModalityMismatchError(f"gallery {gallery!r} holds texts; send JSON {send_instead}")
    return form


async def form_files(form: FormData, field: str) -> List[Tuple[str, bytes]]:
    """(filename, bytes) of every file uploaded under `field`; a plain string there is an error."""
    files = []
    for value in form.getlist(field):
        if not isinstance(value, UploadFile):
            raise InvalidInputError(f"multipart field {field!r} must hold files, got a plain value",
                                    code="invalid_request")
        files.append((value.filename or f"{field}[{len(files)}]", await value.read()))
    return files


def form_text(form: FormData, field: str) -> Any:
    value = form.get(field)
    if isinstance(value, UploadFile):
        raise InvalidInputError(f"multipart field {field!r} must be a plain value, got a file", code="invalid_request")
    return value


__all__ = ["content_kind", "parse_json_model", "parse_json_list", "read_form", "read_image_form", "form_files",
           "form_text"]
