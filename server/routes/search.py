"""Search a gallery with texts (JSON) or an image (multipart)."""

from dataclasses import dataclass
from typing import Any, List, Optional

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool

from server.body import content_kind, form_files, form_text, parse_json_model, read_image_form
from server.dependencies import SearcherDep, SettingsDep, require_search_key
from server.errors import InvalidInputError, ModalityMismatchError
from server.inputs import check_query_texts, decode_image
from server.openapi import json_or_multipart_body
from server.routes.form_values import form_bool, form_int
from server.routes.params import NameParam
from server.schemas import ErrorResponse, SearchRequest, SearchResponse
from server.settings import Settings

router = APIRouter(prefix="/galleries/{name}/search", tags=["search"])

DEFAULT_K = 10

RERANK_FORM_FIELDS = {"k": {"type": "integer", "default": DEFAULT_K},
                      "rerank": {"type": "boolean", "default": False},
                      "rerank_top_n": {"type": "integer", "minimum": 1,
                                       "description": "hits per query to re-score; default: the reranker's top_n"}}

SEARCH_BODY = json_or_multipart_body(
    "SearchRequest", ["image"],
    {"image": {"type": "string", "format": "binary", "description": "query image"}, **RERANK_FORM_FIELDS},
    examples={"one": {"value": {"text": "text editor", "k": 3}},
              "many": {"value": {"texts": ["text editor", "web browser"], "k": 2}},
              "reranked": {"value": {"text": "text editor", "k": 10, "rerank": True, "rerank_top_n": 5}}})


@dataclass
class SearchInput:
    """The queries (texts, or decoded images) of a search request and its options."""

    queries: List[Any]
    k: int
    rerank: bool
    rerank_top_n: Optional[int]
    labels: Optional[List[Any]] = None


def _text_queries(raw: bytes, name: str, modality: str, settings: Settings) -> SearchInput:
    body = parse_json_model(raw, SearchRequest)
    if modality != "text":
        raise ModalityMismatchError(f"gallery {name!r} holds images; send multipart/form-data with an 'image' file")
    queries = check_query_texts(body.text, body.texts, settings.max_text_chars, settings.max_texts_per_query)
    return SearchInput(queries, body.k, body.rerank, body.rerank_top_n,
                       body.filter.labels() if body.filter is not None else None)


async def _image_query(request: Request, name: str, modality: str, settings: Settings) -> SearchInput:
    form = await read_image_form(request, name, modality, settings.max_upload_bytes,
                                 '{"text": ...} instead of an image')
    files = await form_files(form, "image")
    if len(files) != 1:
        raise InvalidInputError(f"send exactly one file under the multipart field 'image', got {len(files)}",
                                code="invalid_request")
    k = form_int(form_text(form, "k"), "k", DEFAULT_K)
    rerank = form_bool(form_text(form, "rerank"), "rerank")
    rerank_top_n = form_int(form_text(form, "rerank_top_n"), "rerank_top_n", None)
    filename, data = files[0]
    decoded = await run_in_threadpool(decode_image, data, filename, settings.max_image_pixels)
    return SearchInput([decoded.image], k, rerank, rerank_top_n)


@router.post("", response_model=SearchResponse, openapi_extra=SEARCH_BODY, dependencies=[Depends(require_search_key)],
             summary="Nearest gallery items for each query, embedded with the gallery's model version",
             responses={400: {"model": ErrorResponse}, 404: {"model": ErrorResponse}, 413: {"model": ErrorResponse},
                        415: {"model": ErrorResponse}, 422: {"model": ErrorResponse},
                        501: {"model": ErrorResponse, "description": "rerank asked but the gallery names no reranker "
                                                                     "and the server has no postprocessor"},
                        503: {"model": ErrorResponse, "description": "the gallery's model or reranker cannot serve"}})
async def search(request: Request, name: NameParam, settings: SettingsDep, searcher: SearcherDep) -> SearchResponse:
    kind = content_kind(request)
    modality = await searcher.modality(name)
    if kind == "json":
        query = _text_queries(await request.body(), name, modality, settings)
    else:
        query = await _image_query(request, name, modality, settings)
    result = await searcher.search(name, query.queries, query.k, query.rerank, query.rerank_top_n,
                                   labels=query.labels)
    return SearchResponse(gallery=result.gallery, model=result.model, model_version=result.model_version,
                          reranked=result.reranked, reranker=result.reranker, results=result.hits)
