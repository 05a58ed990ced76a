"""Gallery snapshots: take one (a consistent archive, while writes go on), list, download, delete, and restore a
gallery from a stored snapshot or an uploaded archive. Archives live in `<data_dir>/snapshots/<gallery>/<id>.tar`."""

from pathlib import Path
from typing import Annotated, Tuple

from fastapi import APIRouter, Depends, Path as PathParam, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse
from starlette.datastructures import UploadFile

from indexing.snapshots import SNAPSHOT_ID_REGEX, RestoredSnapshot, SnapshotInfo
from server.archive_jobs import spool_upload
from server.body import content_kind, form_text, parse_json_model, read_form
from server.dependencies import GalleriesDep, RegistryDep, SearcherDep, require_api_key
from server.errors import InvalidInputError
from server.routes.form_values import form_bool
from server.routes.params import NameParam
from server.schemas import DeletedResponse, ErrorResponse, ModelRef
from server.snapshot_schemas import (RestoredSnapshotOut, RestoreRequest, RestoreResponse, SnapshotOut,
                                     SnapshotsResponse)
from server.snapshot_service import SnapshotService

router = APIRouter(prefix="/galleries/{name}", tags=["snapshots"])

RESTORE_PATH = r"/galleries/[^/]+/restore/?"  # BodySizeLimitMiddleware gives it max_archive_upload_bytes
MAX_FIELD_BYTES = 64 * 1024

SnapshotIdParam = Annotated[str, PathParam(pattern=SNAPSHOT_ID_REGEX, description="a snapshot id")]
WRITE_ERRORS = {401: {"model": ErrorResponse}, 403: {"model": ErrorResponse}}

RESTORE_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": RestoreRequest.model_json_schema(),
                         "example": RestoreRequest.model_config["json_schema_extra"]["example"]},
    "multipart/form-data": {"schema": {"type": "object", "required": ["archive"], "properties": {
        "archive": {"type": "string", "format": "binary", "description": "a snapshot archive (.tar)"},
        "replace": {"type": "boolean", "default": False,
                    "description": "replace an existing gallery of this name (else 409)"}}}}}}}


def snapshot_service(galleries: GalleriesDep, registry: RegistryDep) -> SnapshotService:
    return SnapshotService(galleries, registry)


SnapshotsDep = Annotated[SnapshotService, Depends(snapshot_service)]


def _out(info: SnapshotInfo) -> SnapshotOut:
    return SnapshotOut(id=info.id, gallery=info.gallery, created_at=info.created_at, size=info.size,
                       sha256=info.sha256, items=info.items, model=ModelRef(**info.model))


@router.post("/snapshots", response_model=SnapshotOut, status_code=201, dependencies=[Depends(require_api_key)],
             summary="Take a snapshot: one consistent archive of items, embeddings, index, manifest and stored "
                     "files, with checksums; writes go on meanwhile",
             responses={404: {"model": ErrorResponse},
                        422: {"model": ErrorResponse, "description": "a Milvus gallery (`unsupported_backend`)"},
                        507: {"model": ErrorResponse}, **WRITE_ERRORS})
async def create_snapshot(name: NameParam, snapshots: SnapshotsDep) -> SnapshotOut:
    return _out(await run_in_threadpool(snapshots.create, name))


@router.get("/snapshots", response_model=SnapshotsResponse, dependencies=[Depends(require_api_key)],
            summary="The stored snapshots of a gallery (kept after the gallery is deleted), oldest first",
            responses=WRITE_ERRORS)
async def list_snapshots(name: NameParam, snapshots: SnapshotsDep) -> SnapshotsResponse:
    found = await run_in_threadpool(snapshots.list, name)
    return SnapshotsResponse(gallery=name, snapshots=[_out(info) for info in found])


@router.get("/snapshots/{snapshot_id}", response_class=FileResponse, dependencies=[Depends(require_api_key)],
            summary="Download a snapshot archive (.tar)",
            responses={200: {"content": {"application/x-tar": {}}, "description": "the archive"},
                       404: {"model": ErrorResponse}, **WRITE_ERRORS})
async def download_snapshot(name: NameParam, snapshot_id: SnapshotIdParam, snapshots: SnapshotsDep) -> Response:
    path = await run_in_threadpool(snapshots.archive, name, snapshot_id)
    return FileResponse(path, media_type="application/x-tar", filename=f"{name}-{snapshot_id}.tar")


@router.delete("/snapshots/{snapshot_id}", response_model=DeletedResponse, dependencies=[Depends(require_api_key)],
               summary="Delete a stored snapshot", responses={404: {"model": ErrorResponse}, **WRITE_ERRORS})
async def delete_snapshot(name: NameParam, snapshot_id: SnapshotIdParam, snapshots: SnapshotsDep) -> DeletedResponse:
    await run_in_threadpool(snapshots.delete, name, snapshot_id)
    return DeletedResponse(deleted=snapshot_id)


async def _uploaded_archive(request: Request, data_dir: Path) -> Tuple[Path, bool]:
    form = await read_form(request, MAX_FIELD_BYTES)
    try:
        values = form.getlist("archive")
        if len(values) != 1 or not isinstance(values[0], UploadFile):
            raise InvalidInputError(f"send exactly one snapshot archive under the multipart field 'archive', got "
                                    f"{len(values)} value(s)", code="invalid_request")
        replace = form_bool(form_text(form, "replace"), "replace")
        return await run_in_threadpool(spool_upload, values[0].file, data_dir), replace
    finally:
        await form.close()


@router.post("/restore", response_model=RestoreResponse, openapi_extra=RESTORE_BODY,
             dependencies=[Depends(require_api_key)],
             summary="Bring a snapshot back as this gallery (a stored one by id, or an uploaded archive); every check "
                     "passes before anything is replaced",
             responses={400: {"model": ErrorResponse, "description": "truncated, altered, unsafe or unknown-format "
                                                                     "archive (`invalid_snapshot`)"},
                        404: {"model": ErrorResponse, "description": "unknown snapshot"},
                        409: {"model": ErrorResponse, "description": "the gallery exists and replace is false"},
                        413: {"model": ErrorResponse}, 415: {"model": ErrorResponse},
                        422: {"model": ErrorResponse, "description": "a model this server cannot serve "
                                                                     "(`snapshot_model_mismatch`), a bad body"},
                        507: {"model": ErrorResponse}, **WRITE_ERRORS})
async def restore(request: Request, name: NameParam, snapshots: SnapshotsDep, galleries: GalleriesDep,
                  searcher: SearcherDep) -> RestoreResponse:
    spooled = None
    if content_kind(request) == "json":
        body = parse_json_model(await request.body(), RestoreRequest)
        archive = await run_in_threadpool(snapshots.archive, body.from_gallery or name, body.snapshot)
        replace = body.replace
    else:
        spooled, replace = await _uploaded_archive(request, snapshots.data_dir)
        archive = spooled
    try:
        restored: RestoredSnapshot = await run_in_threadpool(snapshots.restore, name, archive, replace)
    finally:
        if spooled is not None:
            spooled.unlink(missing_ok=True)
    searcher.forget_gallery(name)
    source = restored.snapshot
    return RestoreResponse(
        gallery=await run_in_threadpool(galleries.info, name), replaced=restored.replaced,
        snapshot=RestoredSnapshotOut(id=source.id, gallery=source.gallery, created_at=source.created_at,
                                     items=source.items, model=ModelRef(name=source.model["name"],
                                                                        version=source.model["version"])))


__all__ = ["router", "RESTORE_PATH"]
