"""Adding items (JSON texts or multipart images), listing them page by page, reading and deleting them."""

from typing import Annotated, Any, List, Literal, Optional, Tuple

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.concurrency import run_in_threadpool

from indexing import Item
from server import item_listing as listing
from server.body import content_kind, form_files, form_text, parse_json_list, parse_json_model, read_image_form
from server.dependencies import GalleriesDep, SettingsDep, require_api_key, require_search_key
from server.errors import InvalidInputError, ModalityMismatchError
from server.galleries import GalleryService
from server.cursors import MAX_CURSOR_CHARS, signer_for
from server.inputs import check_text, decode_image
from server.item_listing import MAX_PAGE
from server.openapi import json_or_multipart_body
from server.routes.params import KeyParam, NameParam
from server.schemas import (DeletedResponse, ErrorResponse, ItemMeta, ItemOut, ItemPage, ItemsAccepted,
                            ItemsRequest)
from server.settings import Settings

router = APIRouter(prefix="/galleries/{name}/items", tags=["items"])

ITEMS_BODY = json_or_multipart_body(
    "ItemsRequest", ["files"],
    {"files": {"type": "array", "items": {"type": "string", "format": "binary"},
               "description": "image files (image galleries)"},
     "items": {"type": "string", "description": 'JSON list, one entry per file in order: [{"key": "a", "label": 1, '
                                                '"payload": {}}]; without it the file names are the keys'}},
    example=ItemsRequest.model_config["json_schema_extra"]["example"])

ItemsAndInputs = Tuple[List[Item], List[Any]]


def _check_unique(keys: List[str]) -> None:
    seen = set()
    for key in keys:
        if key in seen:
            raise InvalidInputError(f"key {key!r} appears twice in one request", code="duplicate_key")
        seen.add(key)


def _text_items(raw: bytes, name: str, modality: str, settings: Settings) -> ItemsAndInputs:
    body = parse_json_model(raw, ItemsRequest)
    if modality != "text":
        raise ModalityMismatchError(f"gallery {name!r} holds images; send multipart/form-data with image files "
                                    "under 'files' and an optional 'items' JSON part")
    _check_unique([entry.key for entry in body.items])
    inputs = [check_text(entry.text, settings.max_text_chars, f"items[{i}].text") for i, entry in enumerate(body.items)]
    items = [Item(key=entry.key, label=entry.label, text=entry.text, payload=entry.payload) for entry in body.items]
    return items, inputs


async def _image_items(request: Request, name: str, modality: str, settings: Settings,
                       galleries: GalleryService) -> ItemsAndInputs:
    form = await read_image_form(request, name, modality, settings.max_upload_bytes,
                                 '{"items": [{"key": ..., "text": ...}]} instead of files')
    files = await form_files(form, "files")
    if not files:
        raise InvalidInputError("no image files under the multipart field 'files'", code="no_files")
    raw_meta = form_text(form, "items")
    metas = parse_json_list(raw_meta, ItemMeta, "items") if raw_meta else [ItemMeta(key=n) for n, _ in files]
    if len(metas) != len(files):
        raise InvalidInputError(f"'items' has {len(metas)} entries but {len(files)} files were sent",
                                code="invalid_request")
    _check_unique([meta.key for meta in metas])
    decoded = await run_in_threadpool(
        lambda: [decode_image(data, filename, settings.max_image_pixels) for filename, data in files])
    paths = await run_in_threadpool(
        lambda: [galleries.store_image(name, meta.key, image.data, image.suffix)
                 for meta, image in zip(metas, decoded)])
    items = [Item(key=meta.key, label=meta.label, path=str(path), payload=meta.payload)
             for meta, path in zip(metas, paths)]
    return items, [image.image for image in decoded]


@router.post("", response_model=ItemsAccepted, openapi_extra=ITEMS_BODY, dependencies=[Depends(require_api_key)],
             summary="Add or replace items: small batches are indexed before the reply, large ones become a job",
             responses={202: {"model": ItemsAccepted, "description": "a background job was started"},
                        400: {"model": ErrorResponse}, 404: {"model": ErrorResponse}, 413: {"model": ErrorResponse},
                        415: {"model": ErrorResponse}, 422: {"model": ErrorResponse}})
async def add_items(request: Request, name: NameParam, response: Response, settings: SettingsDep,
                    galleries: GalleriesDep) -> ItemsAccepted:
    kind = content_kind(request)
    modality = (await run_in_threadpool(galleries.binding, name)).modality
    if kind == "json":
        items, inputs = _text_items(await request.body(), name, modality, settings)
    else:
        items, inputs = await _image_items(request, name, modality, settings, galleries)
    if len(items) <= settings.sync_items_limit:
        count = await run_in_threadpool(galleries.add_items, name, items, inputs)
        return ItemsAccepted(gallery=name, indexed=len(items), keys=[item.key for item in items], count=count)
    response.status_code = 202
    return ItemsAccepted(gallery=name, indexed=0, job_id=galleries.start_items_job(name, items))


@router.get("", response_model=ItemPage, dependencies=[Depends(require_search_key)],
            summary="Items page by page in key order, with a cursor to the next page",
            responses={400: {"model": ErrorResponse, "description": "a cursor this server did not issue for this "
                                                                    "listing"},
                       404: {"model": ErrorResponse}, 422: {"model": ErrorResponse}})
async def list_items(name: NameParam, galleries: GalleriesDep, settings: SettingsDep,
                     limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="items per page")] = 100,
                     cursor: Annotated[Optional[str], Query(max_length=MAX_CURSOR_CHARS,
                                                            description="next_cursor of the page before")] = None,
                     label: Annotated[Optional[str], Query(max_length=1024, description="only items with this label "
                                                           "(a string, or the integer it spells)")] = None,
                     include: Annotated[Optional[Literal["embedding"]], Query(
                         description="embedding: add each item's stored embedding")] = None) -> ItemPage:
    signer = await run_in_threadpool(signer_for, settings.data_dir)
    return await run_in_threadpool(listing.list_items, galleries, signer, name, limit, cursor, label,
                                   include == "embedding")


@router.get("/{key:path}", response_model=ItemOut, summary="One stored item by key",
            responses={404: {"model": ErrorResponse}})
async def get_item(key: KeyParam, name: NameParam, galleries: GalleriesDep) -> ItemOut:
    return await run_in_threadpool(galleries.get_item, name, key)


@router.delete("/{key:path}", response_model=DeletedResponse, dependencies=[Depends(require_api_key)],
               summary="Delete one item by key", responses={404: {"model": ErrorResponse}})
async def delete_item(key: KeyParam, name: NameParam, galleries: GalleriesDep) -> DeletedResponse:
    await run_in_threadpool(galleries.delete_item, name, key)
    return DeletedResponse(deleted=key)
