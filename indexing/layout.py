"""Where galleries live on disk: `<data_dir>/galleries/<name>/`, its file names, creating, listing and deleting one.

```
<data_dir>/galleries/<name>/
    manifest.json      GalleryManifest
    items.sqlite       the item store (IItemStore)
    index.g<N>.*       the index of embedding generation N, a cache of the store
    files/             copies of items' source files
    .write.lock        the cross-process write lock
```
"""

import logging
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Dict, List

from indexing.errors import GalleryCorruptError, GalleryExistsError, GalleryNotFoundError, InvalidGalleryNameError
from indexing.interfaces import IIndex, IItemStore
from indexing.manifest import GalleryManifest
from indexing.store import ItemStore
from oml.const import TPath
from oml.utils.atomic import fsync_dir
from oml.utils.names import NAME_RULE, is_valid_name

LOGGER = logging.getLogger(__name__)

GALLERIES_DIR = "galleries"
STORE_FILE = "items.sqlite"
FILES_DIR = "files"
LOCK_FILE = ".write.lock"
_IN_PROGRESS_SUFFIXES = (".tmp", ".trash")  # hidden siblings of a gallery being created or deleted


def validate_gallery_name(name: Any) -> str:
    """Return `name` if it is a safe folder name (letters, digits, `_.-`, up to 64, not starting with `.`/`-`)."""
    if not is_valid_name(name) or name.endswith(_IN_PROGRESS_SUFFIXES):
        raise InvalidGalleryNameError(f"invalid gallery name {name!r}: use {NAME_RULE}")
    return name


def gallery_dir(data_dir: TPath, name: str) -> Path:
    """`<data_dir>/galleries/<name>` for a valid name."""
    return Path(data_dir) / GALLERIES_DIR / validate_gallery_name(name)


def existing_gallery_dir(data_dir: TPath, name: str) -> Path:
    """`gallery_dir`, or `GalleryNotFoundError` when there is no such gallery."""
    folder = gallery_dir(data_dir, name)
    if not folder.is_dir():
        raise GalleryNotFoundError(f"gallery {name!r} not found in {folder.parent}")
    return folder


def new_gallery_dir(data_dir: TPath, name: str) -> Path:
    """`gallery_dir`, or `GalleryExistsError` when that gallery exists already."""
    folder = gallery_dir(data_dir, name)
    if folder.exists():
        raise _exists_error(folder)
    return folder


def _exists_error(folder: Path) -> GalleryExistsError:
    return GalleryExistsError(f"gallery {folder.name!r} already exists in {folder.parent}")


def open_item_store(folder: Path, create: bool = False) -> IItemStore:
    """The item store of the gallery in `folder` (the one place that picks the store's engine)."""
    return ItemStore(folder / STORE_FILE, create=create)


def create_gallery_folder(folder: Path, manifest: GalleryManifest, index: IIndex) -> None:
    """Write a gallery holding `index` (empty) into `folder`: built in a hidden sibling, then renamed into place,
    so the folder appears complete or not at all."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    building = folder.parent / f".{folder.name}.{uuid.uuid4().hex[:8]}.tmp"
    building.mkdir()
    try:
        (building / FILES_DIR).mkdir()
        open_item_store(building, create=True).close()
        index.metadata["revision"] = 0
        index.save(building / manifest.index_file)
        manifest.save(building)
        fsync_dir(building)
        try:
            os.rename(building, folder)
        except OSError as error:
            raise _exists_error(folder) from error
        fsync_dir(folder.parent)
    finally:
        if building.exists():
            shutil.rmtree(building, ignore_errors=True)


def list_galleries(data_dir: TPath) -> List[Dict[str, Any]]:
    """`info()` of every gallery in `<data_dir>/galleries`, by name; an unreadable one is listed with an `error`."""
    root = Path(data_dir) / GALLERIES_DIR
    if not root.is_dir():
        return []
    result = []
    for folder in sorted(root.iterdir()):
        if not folder.is_dir() or not is_valid_name(folder.name):
            continue
        try:
            manifest = GalleryManifest.load(folder)
            store = open_item_store(folder)
            try:
                count = store.count()
            finally:
                store.close()
            result.append(manifest.summary(count, name=folder.name))
        except GalleryCorruptError as error:
            result.append({"name": folder.name, "error": str(error)})
    return result


def delete_gallery(data_dir: TPath, name: str) -> None:
    """Remove a gallery: renamed away first (so it vanishes at once), then deleted."""
    folder = existing_gallery_dir(data_dir, name)
    trash = folder.parent / f".{name}.{uuid.uuid4().hex[:8]}.trash"
    os.rename(folder, trash)
    fsync_dir(folder.parent)
    shutil.rmtree(trash, ignore_errors=True)
    LOGGER.info("deleted gallery %r", name)


__all__ = [
    "GALLERIES_DIR",
    "STORE_FILE",
    "FILES_DIR",
    "LOCK_FILE",
    "validate_gallery_name",
    "gallery_dir",
    "existing_gallery_dir",
    "new_gallery_dir",
    "open_item_store",
    "create_gallery_folder",
    "list_galleries",
    "delete_gallery",
]
