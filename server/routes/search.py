"""Search a gallery with texts (JSON) or an image (multipart)."""

from fastapi import APIRouter, Depends, Path, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from server.body import content_kind, form_files, form_text, parse_json_model, read_form
from server.dependencies import Services, get_services, require_search_key
from server.errors import InvalidInputError, ModalityMismatchError
from server.inputs import check_text, check_texts, decode_image
from server.schemas import NAME_REGEX, ErrorResponse, SearchRequest, SearchResponse

router = APIRouter(prefix="/galleries/{name}/search", tags=["search"])

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
                               "k": {"type": "integer", "default": 10},
                               "rerank": {"type": "boolean", "default": False}}}},
        },
    }
}


def _parse_bool(value: object, field: str) -> bool:
    if value is None:
        return False
    lowered = str(value).strip().lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off", ""):
        return False
    raise InvalidInputError(f"{field} must be true or false, got {value!r}", code="invalid_request")


def _parse_k(value: object) -> int:
    if value is None or value == "":
        return 10
    try:
        return int(str(value))
    except ValueError:
        raise InvalidInputError(f"k must be an integer, got {value!r}", code="invalid_request") from None


@router.post("", response_model=SearchResponse, openapi_extra=SEARCH_BODY, dependencies=[Depends(require_search_key)],
             summary="Nearest gallery items for each query, embedded with the gallery's model version",
             responses={400: {"model": ErrorResponse}, 404: {"model": ErrorResponse}, 413: {"model": ErrorResponse},
                        415: {"model": ErrorResponse}, 422: {"model": ErrorResponse},
                        501: {"model": ErrorResponse, "description": "rerank asked but no reranker configured"}})
async def search(request: Request, name: str = Path(pattern=NAME_REGEX),
                 services: Services = Depends(get_services)) -> JSONResponse:
    settings, searcher = services.settings, services.searcher
    kind = content_kind(request)
    modality = await searcher.modality(name)
    if kind == "json":
        body = parse_json_model(await request.body(), SearchRequest)
        if modality != "text":
            raise ModalityMismatchError(f"gallery {name!r} holds images; send multipart/form-data with an 'image' file")
        texts = [body.text] if body.text is not None else list(body.texts or [])
        if len(texts) > settings.max_texts_per_query:
            raise InvalidInputError(f"{len(texts)} query texts, over the limit of {settings.max_texts_per_query}",
                                    code="too_many_queries")
        queries = check_texts(texts, settings.max_text_chars, "texts") if body.texts is not None else \
            [check_text(body.text, settings.max_text_chars, "text")]
        k, rerank = body.k, body.rerank
    else:
        form = await read_form(request, settings.max_upload_bytes)
        if modality != "image":
            raise ModalityMismatchError(f"gallery {name!r} holds texts; send JSON {{\"text\": ...}} instead of an image")
        files = await form_files(form, "image")
        if len(files) != 1:
            raise InvalidInputError(f"send exactly one file under the multipart field 'image', got {len(files)}",
                                    code="invalid_request")
        k, rerank = _parse_k(form_text(form, "k")), _parse_bool(form_text(form, "rerank"), "rerank")
        filename, data = files[0]
        decoded = await run_in_threadpool(decode_image, data, filename, settings.max_image_pixels)
        queries = [decoded.image]
    return await searcher.search(name, queries, k, rerank)
