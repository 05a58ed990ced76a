"""`POST /embeddings/image`: embeddings of uploaded images with an image extractor, in the reply shape of OpenAI's
embeddings (`server.openai_schemas.EmbeddingsResponse`)."""

from typing import get_args

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool

from server.body import content_kind, form_files, form_text, read_form
from server.dependencies import RegistryDep, ServicesDep, SettingsDep, require_search_key
from server.errors import InvalidInputError, UnsupportedMediaTypeError
from server.inputs import decode_image
from server.openai_schemas import EmbeddingsResponse, EncodingFormat
from server.routes.openai_embeddings import embed_in_chunks, resolve_extractor
from server.schemas import ErrorResponse

router = APIRouter(prefix="/embeddings", tags=["embeddings"])

IMAGE_EMBEDDINGS_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["model", "files"],
    "properties": {"model": {"type": "string", "description": "an image extractor: `name` or `name:version`"},
                   "files": {"type": "array", "items": {"type": "string", "format": "binary"},
                             "description": "the images, embedded in this order"},
                   "encoding_format": {"type": "string", "enum": list(get_args(EncodingFormat)),
                                       "default": "float"}}}}}}}


def _encoding_format(value: object) -> EncodingFormat:
    if value is None or value == "":
        return "float"
    if value not in get_args(EncodingFormat):
        raise InvalidInputError(f"encoding_format must be 'float' or 'base64', got {value!r}", code="invalid_request")
    return value  # type: ignore[return-value]


@router.post("/image", response_model=EmbeddingsResponse, openapi_extra=IMAGE_EMBEDDINGS_BODY,
             dependencies=[Depends(require_search_key)],
             summary="Embeddings of images (multipart `files`) with an image extractor, in OpenAI's reply shape",
             responses={400: {"model": ErrorResponse}, 401: {"model": ErrorResponse}, 403: {"model": ErrorResponse},
                        404: {"model": ErrorResponse}, 413: {"model": ErrorResponse}, 415: {"model": ErrorResponse},
                        422: {"model": ErrorResponse},
                        503: {"model": ErrorResponse, "description": "the model version cannot serve"}})
async def embed_images(request: Request, services: ServicesDep, settings: SettingsDep,
                       registry: RegistryDep) -> EmbeddingsResponse:
    """`data[i].embedding` is the embedding of the i-th file; `usage` counts no tokens (0)."""
    if content_kind(request) != "multipart":
        raise UnsupportedMediaTypeError("send multipart/form-data with image files under 'files' and a 'model' field; "
                                        "texts go to POST /v1/embeddings")
    form = await read_form(request, settings.max_upload_bytes)
    spec = form_text(form, "model")
    if not isinstance(spec, str) or not spec.strip():
        raise InvalidInputError("the form field 'model' is missing: name an image extractor", code="invalid_request")
    encoding_format = _encoding_format(form_text(form, "encoding_format"))
    name, version = resolve_extractor(registry, spec.strip(), "image")
    files = await form_files(form, "files")
    if not files:
        raise InvalidInputError("no images: send one or more files under the multipart field 'files'",
                                code="invalid_request")
    if len(files) > settings.max_embedding_inputs:
        raise InvalidInputError(f"{len(files)} images, over the limit of {settings.max_embedding_inputs} per request",
                                code="too_many_inputs")
    images = await run_in_threadpool(
        lambda: [decode_image(data, filename, settings.max_image_pixels).image for filename, data in files])
    vectors = await embed_in_chunks(services, name, version, images)
    return EmbeddingsResponse.of(vectors, name, encoding_format, tokens=0)


__all__ = ["router"]
