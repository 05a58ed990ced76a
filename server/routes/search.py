"""Search a gallery with texts, vectors or stored items (JSON), or an image (multipart); optionally filtered."""

import asyncio
from dataclasses import dataclass
from typing import Any, List, Optional

import numpy as np
from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool

from indexing.filters import SearchFilter, parse_filter
from server.body import content_kind, form_files, form_text, parse_json_model, read_image_form
from server.dependencies import SearcherDep, SettingsDep, require_search_key
from server.errors import InvalidInputError, ModalityMismatchError
from server.galleries import Binding
from server.inputs import check_query_texts, decode_image
from server.openapi import json_or_multipart_body
from server.query_vectors import check_query_vectors, key_queries, stored_vectors
from server.routes.form_values import form_bool, form_int, form_json
from server.routes.params import NameParam
from server.schemas import ErrorResponse, SearchRequest, SearchResponse
from server.schemas import SearchFilter as SearchFilterBody
from server.search_service import QueryVectors, Searcher
from server.settings import Settings

router = APIRouter(prefix="/galleries/{name}/search", tags=["search"])

DEFAULT_K = 10

RERANK_FORM_FIELDS = {"k": {"type": "integer", "default": DEFAULT_K},
                      "rerank": {"type": "boolean", "default": False},
                      "rerank_top_n": {"type": "integer", "minimum": 1,
                                       "description": "hits per query to re-score; default: the reranker's top_n"}}

SEARCH_BODY = json_or_multipart_body(
    "SearchRequest", ["image"],
    {"image": {"type": "string", "format": "binary", "description": "query image"}, **RERANK_FORM_FIELDS,
     "filter": {"type": "string", "description": 'JSON filter, as in a JSON search: {"label": "cats", "payload": '
                                                 '{"year": {"gte": 2020}}}'}},
    examples={"one": {"value": {"text": "text editor", "k": 3}},
              "many": {"value": {"texts": ["text editor", "web browser"], "k": 2}},
              "reranked": {"value": {"text": "text editor", "k": 10, "rerank": True, "rerank_top_n": 5}},
              "more_like_this": {"value": {"key": "vim", "k": 5}},
              "filtered": {"value": {"text": "text editor", "k": 5, "filter": {
                  "label": ["editors", "devel"], "payload": {"priority": {"in": ["optional", "standard"]}}}}}})


@dataclass
class SearchInput:
    """The queries of a search request (texts, decoded images, or what a reranker reads of vector and key queries),
    its options, and for vector and key queries where their embeddings come from."""

    queries: List[Any]
    k: int
    rerank: bool
    rerank_top_n: Optional[int]
    filter: Optional[SearchFilter] = None
    query_vectors: Optional[QueryVectors] = None
    exclude_keys: Optional[List[str]] = None


def _filter(raw: Optional[SearchFilterBody]) -> Optional[SearchFilter]:
    return None if raw is None else parse_filter(raw.model_dump(exclude_none=True))


async def _json_queries(raw: bytes, name: str, modality: str, settings: Settings, searcher: Searcher) -> SearchInput:
    body = parse_json_model(raw, SearchRequest)
    search_filter = _filter(body.filter)
    if body.vector is not None or body.vectors is not None:
        return await _vector_queries(body, name, settings, searcher, search_filter)
    if body.key is not None or body.keys is not None:
        return await _key_queries(body, name, settings, searcher, search_filter)
    if modality != "text":
        raise ModalityMismatchError(f"gallery {name!r} holds images; send multipart/form-data with an 'image' file, "
                                    "or a 'vector' or 'key'")
    queries = check_query_texts(body.text, body.texts, settings.max_text_chars, settings.max_texts_per_query)
    return SearchInput(queries, body.k, body.rerank, body.rerank_top_n, search_filter)


def _check_count(n: int, what: str, settings: Settings) -> None:
    if n > settings.max_texts_per_query:
        raise InvalidInputError(f"{n} query {what}, over the limit of {settings.max_texts_per_query}",
                                code="too_many_queries")


async def _vector_queries(body: SearchRequest, name: str, settings: Settings, searcher: Searcher,
                          search_filter: Optional[SearchFilter]) -> SearchInput:
    """Vectors the caller embedded with the gallery's model version (the reply names it): checked, normalised."""
    rows, where = ([body.vector], "vector") if body.vector is not None else (body.vectors, "vectors")
    _check_count(len(rows), "vectors", settings)
    manifest = (await asyncio.to_thread(searcher.galleries.gallery, name)).manifest
    vectors = check_query_vectors(rows, name, manifest.embedding_size, manifest.normalised, where)
    if body.rerank:
        await _check_rerank_reads_embeddings(searcher, name, "vector")

    async def given(binding: Binding) -> np.ndarray:
        return vectors

    return SearchInput([None] * len(rows), body.k, body.rerank, body.rerank_top_n, search_filter, given)


async def _key_queries(body: SearchRequest, name: str, settings: Settings, searcher: Searcher,
                       search_filter: Optional[SearchFilter]) -> SearchInput:
    """Stored items as queries: their embeddings at the version searched, each left out of its own hits."""
    keys = [body.key] if body.key is not None else list(body.keys or [])
    _check_count(len(keys), "keys", settings)
    stored = await asyncio.to_thread(key_queries, searcher.galleries, name, keys)
    binding = await searcher.binding(name)
    inputs: List[Any] = [item.text if binding.modality == "text" else item.path for item in stored]
    if body.rerank and any(value is None for value in inputs):
        missing = next(item.key for item, value in zip(stored, inputs) if value is None)
        await _check_rerank_reads_embeddings(searcher, name, f"key {missing!r} (the item has no stored "
                                                             f"{'text' if binding.modality == 'text' else 'file'})")

    async def stored_embeddings(binding: Binding) -> np.ndarray:
        return await asyncio.to_thread(stored_vectors, searcher.galleries, name, keys, binding.version)

    return SearchInput(inputs, body.k, body.rerank, body.rerank_top_n, search_filter, stored_embeddings, keys)


async def _check_rerank_reads_embeddings(searcher: Searcher, name: str, query: str) -> None:
    """A reranker of texts or images cannot rerank a query that has none: 422 saying so."""
    binding = await searcher.binding(name)
    if binding.reranker is None:
        return  # the server's postprocessor (or RerankUnavailable) works on the hits alone
    _, reranker = await asyncio.to_thread(searcher.reranker.reranker_of, name, binding)
    if reranker.input_kind != "embeddings":
        raise InvalidInputError(f"rerank with a {query} query is not possible: the reranker {binding.reranker!r} of "
                                f"gallery {name!r} reads the query's {reranker.input_kind}; send the query as "
                                "text/image, or rerank=false", code="rerank_needs_query")


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
    search_filter = _filter(form_json(form_text(form, "filter"), SearchFilterBody, "filter"))
    filename, data = files[0]
    decoded = await run_in_threadpool(decode_image, data, filename, settings.max_image_pixels)
    return SearchInput([decoded.image], k, rerank, rerank_top_n, search_filter)


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
        query = await _json_queries(await request.body(), name, modality, settings, searcher)
    else:
        query = await _image_query(request, name, modality, settings)
    result = await searcher.search(name, query.queries, query.k, query.rerank, query.rerank_top_n,
                                   exclude_keys=query.exclude_keys, filter=query.filter,
                                   query_vectors=query.query_vectors)
    return SearchResponse(gallery=result.gallery, model=result.model, model_version=result.model_version,
                          reranked=result.reranked, reranker=result.reranker, results=result.hits)
