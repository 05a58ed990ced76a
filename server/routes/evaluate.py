"""Evaluate a gallery with labelled queries: texts (JSON) or images (multipart)."""

from typing import List, Optional, Union

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import RootModel, StrictInt, StrictStr

from server.body import content_kind, form_files, form_text, parse_json_model, read_image_form
from server.dependencies import EvaluatorDep, SearcherDep, SettingsDep, require_search_key
from server.errors import InvalidInputError, ModalityMismatchError
from server.evaluation import Evaluation, Evaluator
from server.inputs import check_text, decode_image
from server.openapi import json_or_multipart_body
from server.routes.form_values import form_bool, form_int, form_json
from server.routes.params import NameParam
from server.routes.search import DEFAULT_K, RERANK_FORM_FIELDS
from server.schemas import ErrorResponse, EvaluateRequest, EvaluateResponse
from server.settings import Settings

router = APIRouter(prefix="/galleries/{name}/evaluate", tags=["search"])

EVALUATE_BODY = json_or_multipart_body(
    "EvaluateRequest", ["images", "labels"],
    {"images": {"type": "array", "items": {"type": "string", "format": "binary"},
                "description": "query images (image galleries)"},
     "labels": {"type": "string", "description": "JSON list, one label per image in order: [1, 1, 7]"},
     **RERANK_FORM_FIELDS,
     "exclude_keys": {"type": "string", "description": 'JSON list, one key (or null) per image: ["cat-1.png", null]'}},
    example=EvaluateRequest.model_config["json_schema_extra"]["example"])


class Labels(RootModel[List[Union[StrictInt, StrictStr]]]):
    """The `labels` part of a multipart evaluation: one label per image."""


class ExcludeKeys(RootModel[List[Optional[str]]]):
    """The `exclude_keys` part of a multipart evaluation: one key or null per image."""


async def _text_evaluation(raw: bytes, name: str, modality: str, settings: Settings,
                           evaluator: Evaluator) -> Evaluation:
    body = parse_json_model(raw, EvaluateRequest)
    if modality != "text":
        raise ModalityMismatchError(f"gallery {name!r} holds images; send multipart/form-data with 'images' files and "
                                    "a 'labels' JSON list")
    texts = [check_text(query.text, settings.max_text_chars, f"queries[{i}].text")
             for i, query in enumerate(body.queries)]
    return await evaluator.evaluate(name, texts, [query.label for query in body.queries], body.k, body.rerank,
                                    body.rerank_top_n, body.exclude_keys)


async def _image_evaluation(request: Request, name: str, modality: str, settings: Settings,
                            evaluator: Evaluator) -> Evaluation:
    form = await read_image_form(request, name, modality, settings.max_upload_bytes,
                                 '{"queries": [{"text": ..., "label": ...}]} instead of images')
    files = await form_files(form, "images")
    labels = form_json(form_text(form, "labels"), Labels, "labels")
    excluded = form_json(form_text(form, "exclude_keys"), ExcludeKeys, "exclude_keys")
    if not files or labels is None or len(labels.root) != len(files):
        raise InvalidInputError(f"send image files under 'images' and a 'labels' JSON list with one label per image; "
                                f"got {len(files)} files and {'no' if labels is None else len(labels.root)} labels",
                                code="invalid_request")
    if excluded is not None and len(excluded.root) != len(files):
        raise InvalidInputError(f"'exclude_keys' has {len(excluded.root)} entries for {len(files)} images",
                                code="invalid_request")
    k = form_int(form_text(form, "k"), "k", DEFAULT_K)
    rerank = form_bool(form_text(form, "rerank"), "rerank")
    rerank_top_n = form_int(form_text(form, "rerank_top_n"), "rerank_top_n", None)
    decoded = await run_in_threadpool(
        lambda: [decode_image(data, filename, settings.max_image_pixels).image for filename, data in files])
    return await evaluator.evaluate(name, decoded, labels.root, k, rerank, rerank_top_n,
                                    excluded.root if excluded is not None else None)


@router.post("", response_model=EvaluateResponse, openapi_extra=EVALUATE_BODY,
             dependencies=[Depends(require_search_key)],
             summary="Retrieval metrics of labelled queries against the gallery's labels (CMC, precision, mAP, "
                     "FNMR@FMR), optionally reranked",
             responses={400: {"model": ErrorResponse}, 404: {"model": ErrorResponse}, 413: {"model": ErrorResponse},
                        415: {"model": ErrorResponse}, 422: {"model": ErrorResponse},
                        501: {"model": ErrorResponse, "description": "rerank asked but the gallery names no reranker "
                                                                     "and the server has no postprocessor"},
                        503: {"model": ErrorResponse, "description": "the gallery's model or reranker cannot serve"}})
async def evaluate(request: Request, name: NameParam, settings: SettingsDep, searcher: SearcherDep,
                   evaluator: EvaluatorDep) -> EvaluateResponse:
    kind = content_kind(request)
    modality = await searcher.modality(name)
    if kind == "json":
        evaluation = await _text_evaluation(await request.body(), name, modality, settings, evaluator)
    else:
        evaluation = await _image_evaluation(request, name, modality, settings, evaluator)
    result = evaluation.search
    return EvaluateResponse(gallery=result.gallery, model=result.model, model_version=result.model_version,
                            reranked=result.reranked, reranker=result.reranker, n_queries=evaluation.n_queries,
                            k=evaluation.k, metrics=evaluation.metrics)
