"""Adding an archive of images (zip or tar) to an image gallery: checked before the reply, indexed by a job."""

from pathlib import Path
from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile

from server.archive_jobs import spool_upload, start_archive_job
from server.archives import ArchiveLimits, ArchiveOptions, ArchivePlan, ArchiveRejected, plan_archive
from server.body import content_kind, form_text, read_image_form
from server.dependencies import GalleriesDep, SettingsDep, require_api_key
from server.errors import InvalidInputError, UnsupportedMediaTypeError
from server.routes.form_values import form_bool
from server.routes.params import NameParam
from server.schemas import ArchiveAccepted, ErrorResponse
from server.settings import Settings

router = APIRouter(prefix="/galleries/{name}/items", tags=["items"])

ARCHIVE_PATH = r"/galleries/[^/]+/items/archive/?"  # BodySizeLimitMiddleware gives it max_archive_upload_bytes
MAX_FIELD_BYTES = 64 * 1024

ARCHIVE_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["archive"], "properties": {
        "archive": {"type": "string", "format": "binary",
                    "description": "one .zip, .tar, .tar.gz/.tgz (.tar.bz2, .tar.xz) file of images"},
        "labels": {"type": "string", "enum": ["folder", "path", "none"], "default": "folder",
                   "description": "folder: each item's label is the name of its member's parent folder; path: the "
                                  "parent folder's path (e.g. Greek/character01); none: no labels"},
        "keys": {"type": "string", "enum": ["path", "name"], "default": "path",
                 "description": "path: member path without its extension ('/' kept); name: file name without it"},
        "payload_from_path": {"type": "boolean", "default": False,
                              "description": 'payload {"path": member path} for every item'}}}}}}}


def _options(form: FormData) -> ArchiveOptions:
    labels = form_text(form, "labels") or "folder"
    keys = form_text(form, "keys") or "path"
    try:
        return ArchiveOptions(labels=labels, keys=keys,
                              payload_from_path=form_bool(form_text(form, "payload_from_path"), "payload_from_path"))
    except ValueError as error:
        raise InvalidInputError(str(error), code="invalid_request") from None


def _the_upload(form: FormData) -> UploadFile:
    values = form.getlist("archive")
    if len(values) != 1 or not isinstance(values[0], UploadFile):
        raise InvalidInputError(f"send exactly one file under the multipart field 'archive', got {len(values)} "
                                "value(s)", code="invalid_request")
    return values[0]


def _limits(settings: Settings) -> ArchiveLimits:
    return ArchiveLimits(max_members=settings.max_archive_members, max_total_bytes=settings.max_archive_bytes,
                         max_member_bytes=settings.max_upload_bytes)


def _checked_plan(spooled: Path, limits: ArchiveLimits, options: ArchiveOptions) -> ArchivePlan:
    plan = plan_archive(spooled, limits, options)
    if not plan.members:
        raise ArchiveRejected(f"the archive holds no image members ({plan.skipped} other member(s) skipped; images "
                              "are .png, .jpg, .jpeg, .gif, .bmp, .webp, .tif, .tiff)", code="no_images")
    return plan


@router.post("/archive", status_code=202, response_model=ArchiveAccepted, openapi_extra=ARCHIVE_BODY,
             dependencies=[Depends(require_api_key)],
             summary="Add the images of a zip or tar archive as items; a background job (kind archive) indexes them",
             responses={400: {"model": ErrorResponse, "description": "an unsafe or over-limit archive; the detail "
                                                                     "names the member"},
                        404: {"model": ErrorResponse}, 413: {"model": ErrorResponse},
                        415: {"model": ErrorResponse, "description": "not multipart, or the upload is not a zip/tar"},
                        422: {"model": ErrorResponse}})
async def add_archive(request: Request, name: NameParam, settings: SettingsDep,
                      galleries: GalleriesDep) -> ArchiveAccepted:
    if content_kind(request) != "multipart":
        raise UnsupportedMediaTypeError("send multipart/form-data with the archive file under 'archive'")
    modality = (await run_in_threadpool(galleries.binding, name)).modality
    form = await read_image_form(request, name, modality, MAX_FIELD_BYTES,
                                 f'{{"items": [{{"key": ..., "text": ...}}]}} to POST /galleries/{name}/items')
    try:
        upload = _the_upload(form)
        options = _options(form)
        spooled = await run_in_threadpool(spool_upload, upload.file, settings.data_dir)
    finally:
        await form.close()
    try:
        plan = await run_in_threadpool(_checked_plan, spooled, _limits(settings), options)
        job_id = start_archive_job(galleries, name, spooled, plan)
    except BaseException:
        spooled.unlink(missing_ok=True)
        raise
    return ArchiveAccepted(gallery=name, indexed=0, job_id=job_id, accepted=len(plan.members), skipped=plan.skipped)


__all__ = ["router", "ARCHIVE_PATH"]
