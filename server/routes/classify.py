"""kNN classification against a gallery: texts (JSON) or images (multipart) get the label their nearest labelled
items vote for (`server.classification`)."""

from dataclasses import dataclass
from typing import Any, List, Optional

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool

from oml.retrieval.knn_classification import WEIGHTINGS
from server.body import content_kind, form_files, form_text, parse_json_model, read_image_form
from server.classification import classify_all
from server.classify_schemas import ClassifyRequest, ClassifyResponse, Weighting, check_threshold
from server.dependencies import SearcherDep, SettingsDep, require_search_key
from server.errors import InvalidInputError, ModalityMismatchError
from server.inputs import check_query_texts, decode_image
from server.routes.form_values import form_int
from server.routes.params import NameParam
from server.routes.search import DEFAULT_K
from server.schemas import ErrorResponse
from server.settings import Settings

router = APIRouter(prefix="/galleries/{name}/classify", tags=["search"])

CLASSIFY_FORM_FIELDS = {
    "image": {"type": "array", "items": {"type": "string", "format": "binary"}, "description": "one or more images"},
    "k": {"type": "integer", "default": DEFAULT_K},
    "threshold": {"type": "number", "minimum": 0, "description": "neighbours farther than this do not vote"},
    "weighting": {"type": "string", "enum": list(WEIGHTINGS), "default": "inverse_distance"}}

CLASSIFY_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": ClassifyRequest.model_json_schema(),
                         "example": ClassifyRequest.model_config["json_schema_extra"]["example"]},
    "multipart/form-data": {"schema": {"type": "object", "required": ["image"], "properties": CLASSIFY_FORM_FIELDS}}}}}


@dataclass
class ClassifyInput:
    """The queries (texts, or decoded images) of a classify request and its options."""

    queries: List[Any]
    k: int
    threshold: Optional[float]
    weighting: Weighting


def _text_queries(raw: bytes, name: str, modality: str, settings: Settings) -> ClassifyInput:
    body = parse_json_model(raw, ClassifyRequest)
    if modality != "text":
        raise ModalityMismatchError(f"gallery {name!r} holds images; send multipart/form-data with 'image' files")
    queries = check_query_texts(body.text, body.texts, settings.max_text_chars, settings.max_texts_per_query)
    return ClassifyInput(queries, body.k, body.threshold, body.weighting)


def _form_threshold(value: Any) -> Optional[float]:
    if value is None or value == "":
        return None
    try:
        return check_threshold(float(str(value)))
    except ValueError:
        raise InvalidInputError(f"threshold must be a finite distance >= 0, got {value!r}",
                                code="invalid_request") from None


def _form_weighting(value: Any) -> Weighting:
    if value is None or value == "":
        return "inverse_distance"
    if value not in WEIGHTINGS:
        raise InvalidInputError(f"weighting must be one of {', '.join(WEIGHTINGS)}, got {value!r}",
                                code="invalid_request")
    return value


async def _image_queries(request: Request, name: str, modality: str, settings: Settings) -> ClassifyInput:
    form = await read_image_form(request, name, modality, settings.max_upload_bytes,
                                 '{"text": ...} or {"texts": [...]} instead of images')
    files = await form_files(form, "image")
    if not files or len(files) > settings.max_texts_per_query:
        raise InvalidInputError(f"send 1 to {settings.max_texts_per_query} files under the multipart field 'image', "
                                f"got {len(files)}", code="invalid_request")
    k = form_int(form_text(form, "k"), "k", DEFAULT_K)
    threshold = _form_threshold(form_text(form, "threshold"))
    weighting = _form_weighting(form_text(form, "weighting"))
    images = await run_in_threadpool(
        lambda: [decode_image(data, filename, settings.max_image_pixels).image for filename, data in files])
    return ClassifyInput(images, k, threshold, weighting)


@router.post("", response_model=ClassifyResponse, openapi_extra=CLASSIFY_BODY,
             dependencies=[Depends(require_search_key)],
             summary="kNN classification: the labels of each query's k nearest items vote for its label",
             responses={400: {"model": ErrorResponse}, 404: {"model": ErrorResponse}, 413: {"model": ErrorResponse},
                        415: {"model": ErrorResponse}, 422: {"model": ErrorResponse},
                        503: {"model": ErrorResponse, "description": "the gallery's model cannot serve"}})
async def classify(request: Request, name: NameParam, settings: SettingsDep, searcher: SearcherDep) -> ClassifyResponse:
    """Each labelled neighbour not farther than `threshold` votes with weight `1 / (distance + eps)`
    (`inverse_distance`, eps = 1e-6) or 1 (`uniform`); `score` is the winner's share of the votes, `label` is
    `unknown` when no neighbour votes. Unlabelled items never vote."""
    kind = content_kind(request)
    modality = await searcher.modality(name)
    if kind == "json":
        query = _text_queries(await request.body(), name, modality, settings)
    else:
        query = await _image_queries(request, name, modality, settings)
    result = await searcher.search(name, query.queries, query.k)
    return ClassifyResponse(gallery=result.gallery, model=result.model, model_version=result.model_version,
                            k=query.k, threshold=query.threshold, weighting=query.weighting,
                            results=classify_all(result.hits, query.threshold, query.weighting))


__all__ = ["router"]
