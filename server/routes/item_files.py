"""The stored source file of an item (the uploaded image), for thumbnails and downloads."""

import mimetypes
import os
from pathlib import Path

from fastapi import APIRouter, Depends, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse

from indexing.layout import FILES_DIR
from server.dependencies import GalleriesDep, require_search_key
from server.galleries import GalleryService, ItemNotFound
from server.routes.params import KeyParam, NameParam
from server.schemas import ErrorResponse

router = APIRouter(prefix="/galleries/{name}/items", tags=["items"])

CACHE_CONTROL = "private, no-cache"  # revalidate with the ETag: re-sending a key may replace its file


class NoSourceFile(LookupError):
    """An item without a stored file in its gallery's `files/` folder (a text item, or one indexed from elsewhere)."""


def source_file(galleries: GalleryService, name: str, key: str) -> Path:
    """The resolved path of item `key`'s stored file, only if it lies inside the gallery's own `files/` folder."""
    gallery = galleries.gallery(name)
    item = gallery.get(key)
    if item is None:
        raise ItemNotFound(f"gallery {name!r} has no item with key {key!r}")
    if item.path is None:
        raise NoSourceFile(f"item {key!r} of gallery {name!r} has no stored file (a text item)")
    files = (gallery.folder / FILES_DIR).resolve()
    path = Path(item.path).resolve()
    if not path.is_relative_to(files) or not path.is_file():
        raise NoSourceFile(f"item {key!r} of gallery {name!r} has no file kept in the gallery")
    return path


def _etag(stat: os.stat_result) -> str:
    return f'"{stat.st_mtime_ns:x}-{stat.st_size:x}"'


@router.get("/{key:path}/file", dependencies=[Depends(require_search_key)], response_class=FileResponse,
            summary="The stored file of an image item (keys may contain '/')",
            responses={200: {"description": "the file, its content type from its suffix",
                             "content": {"image/png": {}, "image/jpeg": {}, "application/octet-stream": {}}},
                       304: {"description": "not modified (If-None-Match matched the ETag)"},
                       404: {"model": ErrorResponse, "description": "unknown gallery or key (`not_found`), or an "
                                                                    "item without a stored file (`no_file`)"}})
async def get_item_file(request: Request, key: KeyParam, name: NameParam, galleries: GalleriesDep) -> Response:
    path = await run_in_threadpool(source_file, galleries, name, key)
    stat = await run_in_threadpool(path.stat)
    headers = {"Cache-Control": CACHE_CONTROL, "ETag": _etag(stat), "X-Content-Type-Options": "nosniff"}
    if request.headers.get("if-none-match") == headers["ETag"]:
        return Response(status_code=304, headers=headers)
    media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return FileResponse(path, media_type=media_type, headers=headers, stat_result=stat)


__all__ = ["router", "source_file", "NoSourceFile"]
