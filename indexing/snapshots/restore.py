"""Bringing a snapshot archive back as a gallery: everything is checked in a hidden staging folder first, then the
folder is renamed into place (replacing a gallery of that name only when asked).

Checked before anything is replaced: the archive reads to its end (not truncated); `snapshot.json` has a known format
version and lists every member with its size and SHA-256, and every member matches (no extra, missing, unsafe or
linked members); the gallery manifest is readable, of the local backend and names the same model, version and
embedding size as `snapshot.json`; the caller's `check_model` accepts that model (the server: a known extractor
with that version and embedding size); the item store opens with the expected schema, passes SQLite's quick check,
holds `items` items and an embedding of the manifest's generation for each.
"""

import logging
import os
import shutil
import sqlite3
import uuid
from contextlib import closing
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Dict, Optional

from indexing.errors import GalleryCorruptError, GalleryExistsError
from indexing.layout import FILES_DIR, STORE_FILE, gallery_dir, open_item_store, validate_gallery_name
from indexing.manifest import GalleryManifest
from indexing.snapshots.format import InvalidSnapshotError, SnapshotManifest, SnapshotModelError
from indexing.snapshots.reader import extract_verified
from oml.const import TPath
from oml.utils.atomic import fsync_dir

LOGGER = logging.getLogger(__name__)

ModelCheck = Callable[[Dict[str, Any]], None]  # raises SnapshotModelError for a model it cannot serve
Swap = Callable[[Callable[[], bool]], Any]  # runs the rename (returns whether a gallery was replaced) its own way


@dataclass(frozen=True)
class RestoredSnapshot:
    """What a restore did: the gallery's name, the snapshot it came from, whether an existing gallery was replaced."""

    gallery: str
    snapshot: SnapshotManifest
    replaced: bool


def _checked_gallery_manifest(building: Path, snapshot: SnapshotManifest, name: str) -> GalleryManifest:
    try:
        manifest = GalleryManifest.load(building)
    except GalleryCorruptError as error:
        raise InvalidSnapshotError(f"the gallery manifest in the archive is unusable: {error.reason}") from None
    model = snapshot.model
    held = (manifest.model_name, int(manifest.model_version), int(manifest.embedding_size))
    if held != (model["name"], model["version"], model["embedding_size"]) or manifest.backend != "local":
        raise InvalidSnapshotError(f"the gallery manifest ({held[0]} v{held[1]}, size {held[2]}, backend "
                                   f"{manifest.backend!r}) disagrees with snapshot.json ({model['name']} "
                                   f"v{model['version']}, size {model['embedding_size']})")
    return replace(manifest, name=name)


def _checked_store(building: Path, snapshot: SnapshotManifest, manifest: GalleryManifest, final: Path) -> None:
    """Open the copied store (schema, quick check, count, embeddings) and point stored files at `final/files/`."""
    try:
        store = open_item_store(building)
        try:
            store.quick_check()
            count = store.count()
            missing = store.ids_missing_generation(manifest.generation)
        finally:
            store.close()
    except GalleryCorruptError as error:
        raise InvalidSnapshotError(f"the item store in the archive is unusable: {error.reason}") from None
    if count != snapshot.items:
        raise InvalidSnapshotError(f"the item store holds {count} items, snapshot.json says {snapshot.items}")
    if missing:
        raise InvalidSnapshotError(f"{len(missing)} item(s) in the archive have no embedding of generation "
                                   f"{manifest.generation}")
    members = [name for name in snapshot.members if name.startswith(f"{FILES_DIR}/")]
    with closing(sqlite3.connect(str(building / STORE_FILE), isolation_level=None)) as db:
        db.execute("CREATE TEMP TABLE members (name TEXT PRIMARY KEY)")
        db.executemany("INSERT INTO members VALUES (?)", [(name,) for name in members])
        db.execute("BEGIN")
        db.execute("UPDATE items SET path = ? || path WHERE path IN (SELECT name FROM members)", (f"{final}/",))
        db.execute("COMMIT")


def restore_snapshot(archive: TPath, data_dir: TPath, name: str, replace_existing: bool = False,
                     check_model: Optional[ModelCheck] = None, swap: Optional[Swap] = None) -> RestoredSnapshot:
    """Restore the snapshot `archive` as gallery `name` in `data_dir`.

    `GalleryExistsError` when `name` exists and `replace_existing` is False (checked first, and again at the
    rename); `InvalidSnapshotError` / `SnapshotModelError` for an archive that fails a check (module docstring).
    `swap(rename)` lets a caller run the final rename its own way (the server closes its open gallery around it).
    """
    final = gallery_dir(data_dir, validate_gallery_name(name))
    if final.exists() and not replace_existing:
        raise GalleryExistsError(f"gallery {name!r} already exists; restore with replace=true to replace it")
    final.parent.mkdir(parents=True, exist_ok=True)
    building = final.parent / f".{name}.{uuid.uuid4().hex[:8]}.tmp"
    building.mkdir()
    try:
        snapshot = extract_verified(Path(archive), building)
        if check_model is not None:
            check_model(dict(snapshot.model))
        manifest = _checked_gallery_manifest(building, snapshot, name)
        _checked_store(building, snapshot, manifest, final)
        (building / FILES_DIR).mkdir(exist_ok=True)
        manifest.save(building)
        fsync_dir(building)

        def rename() -> bool:
            return _move_into_place(building, final, replace_existing)

        replaced = swap(rename) if swap is not None else rename()
    finally:
        if building.exists():
            shutil.rmtree(building, ignore_errors=True)
    LOGGER.info("gallery %r restored from snapshot %s (%d items)%s", name, snapshot.id, snapshot.items,
                " replacing the old one" if replaced else "")
    return RestoredSnapshot(gallery=name, snapshot=snapshot, replaced=bool(replaced))


def _move_into_place(building: Path, final: Path, replace_existing: bool) -> bool:
    """Rename `building` to `final`; an existing `final` is renamed away first (only with `replace_existing`)."""
    trash = None
    if final.exists():
        if not replace_existing:
            raise GalleryExistsError(f"gallery {final.name!r} already exists; restore with replace=true to replace it")
        trash = final.parent / f".{final.name}.{uuid.uuid4().hex[:8]}.trash"
        os.rename(final, trash)
    try:
        os.rename(building, final)
    except BaseException:
        if trash is not None:
            os.rename(trash, final)
        raise
    fsync_dir(final.parent)
    if trash is not None:
        shutil.rmtree(trash, ignore_errors=True)
    return trash is not None


__all__ = ["restore_snapshot", "RestoredSnapshot", "ModelCheck", "SnapshotModelError"]
