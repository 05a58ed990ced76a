"""Search a gallery with texts (JSON) or an image (multipart)."""

from typing import Any, List, Tuple

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool

from server.body import content_kind, form_files, form_text, parse_json_model, read_form
from server.booleans import parse_bool
from server.dependencies import SearcherDep, SettingsDep, require_search_key
from server.errors import InvalidInputError, ModalityMismatchError
from server.inputs import check_text, check_texts, decode_image
from server.routes.params import NameParam
from server.schemas import ErrorResponse, SearchRequest, SearchResponse
from server.settings import Settings

router = APIRouter(prefix="/galleries/{name}/search", tags=["search"])

DEFAULT_K = 10

SEARCH_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/SearchRequest"},
                                 "examples": {"one": {"value": {"text": "text editor", "k": 3}},
                                              "many": {"value": {"texts": ["text editor", "web browser"], "k": 2}}}},
            "multipart/form-data": {"schema": {
                "type": "object", "required": ["image"],
                "properties": {"image": {"type": "string", "format": "binary", "description": "query image"},
                               "k": {"type": "integer", "default": DEFAULT_K},
                               "rerank": {"type": "boolean", "default": False}}}},
        },
    }
}

QueriesAndOptions = Tuple[List[Any], int, bool]


def _form_k(value: Any) -> int:
    if value is None or value == "":
        return DEFAULT_K
    try:
        return int(str(value))
    except ValueError:
        raise InvalidInputError(f"k must be an integer, got {value!r}", code="invalid_request") from None


def _form_rerank(value: Any) -> bool:
    try:
        return parse_bool(value)
    except ValueError:
        raise InvalidInputError(f"rerank must be true or false, got {value!r}", code="invalid_request") from None


def _text_queries(raw: bytes, name: str, modality: str, settings: Settings) -> QueriesAndOptions:
    body = parse_json_model(raw, SearchRequest)
    if modality != "text":
        raise ModalityMismatchError(f"gallery {name!r} holds images; send multipart/form-data with an 'image' file")
    if body.texts is None:
        return [check_text(body.text, settings.max_text_chars, "text")], body.k, body.rerank
    if len(body.texts) > settings.max_texts_per_query:
        raise InvalidInputError(f"{len(body.texts)} query texts, over the limit of {settings.max_texts_per_query}",
                                code="too_many_queries")
    return check_texts(body.texts, settings.max_text_chars, "texts"), body.k, body.rerank


async def _image_query(request: Request, name: str, modality: str, settings: Settings) -> QueriesAndOptions:
    form = await read_form(request, settings.max_upload_bytes)
    if modality != "image":
        raise ModalityMismatchError(f"gallery {name!r} holds texts; send JSON {{\"text\": ...}} instead of an image")
    files = await form_files(form, "image")
    if len(files) != 1:
        raise InvalidInputError(f"send exactly one file under the multipart field 'image', got {len(files)}",
                                code="invalid_request")
    k, rerank = _form_k(form_text(form, "k")), _form_rerank(form_text(form, "rerank"))
    filename, data = files[0]
    decoded = await run_in_threadpool(decode_image, data, filename, settings.max_image_pixels)
    return [decoded.image], k, rerank


@router.post("", response_model=SearchResponse, openapi_extra=SEARCH_BODY, dependencies=[Depends(require_search_key)],
             summary="Nearest gallery items for each query, embedded with the gallery's model version",
             responses={400: {"model": ErrorResponse}, 404: {"model": ErrorResponse}, 413: {"model": ErrorResponse},
                        415: {"model": ErrorResponse}, 422: {"model": ErrorResponse},
                        501: {"model": ErrorResponse, "description": "rerank asked but no reranker configured"}})
async def search(request: Request, name: NameParam, settings: SettingsDep, searcher: SearcherDep) -> SearchResponse:
    kind = content_kind(request)
    modality = await searcher.modality(name)
    if kind == "json":
        queries, k, rerank = _text_queries(await request.body(), name, modality, settings)
    else:
        queries, k, rerank = await _image_query(request, name, modality, settings)
    result = await searcher.search(name, queries, k, rerank)
    return SearchResponse(gallery=result.gallery, model=result.model, model_version=result.model_version,
                          results=result.hits)
