"""Writing a snapshot archive of a local gallery while writes continue.

Under the gallery's write lock (held only for this) a second SQLite connection opens a read transaction, which pins
one consistent state of the WAL store; the index file and the stored files the items point to are hard-linked into
a staging folder (files never change in place: writes replace them by rename, and a replaced file is only deleted
after the write that replaced it commits, which needs the lock). The lock is then released and the pinned state is
copied with SQLite's backup API while writers go on. The copy keeps only the current embedding generation and names
stored files by their member path (`files/xx/name`); then every member is checksummed and the archive written.
"""

import hashlib
import io
import os
import shutil
import sqlite3
import tarfile
import time
from contextlib import closing
from pathlib import Path
from typing import Any, BinaryIO, Dict, List, Optional, Tuple

from indexing.layout import FILES_DIR, STORE_FILE
from indexing.manifest import MANIFEST_FILE
from indexing.snapshots.catalog import clear_stale_staging, new_snapshot_id, snapshots_dir
from indexing.snapshots.format import (ARCHIVE_SUFFIX, INFO_SUFFIX, SNAPSHOT_MANIFEST, SnapshotInfo,
                                       SnapshotManifest, SnapshotUnsupportedError, is_member_name)
from oml.const import TPath
from oml.utils.atomic import atomic_write_json, fsync_dir

CHUNK = 1024 * 1024


class _HashingWriter:
    """A binary file that hashes what is written to it (the archive's SHA-256, without reading it back)."""

    def __init__(self, handle: BinaryIO):
        self.handle, self.digest, self.size = handle, hashlib.sha256(), 0

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        self.size += len(data)
        return self.handle.write(data)

    def tell(self) -> int:
        return self.size


def _link_or_copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _pin(gallery: Any, staging: Path) -> Tuple[sqlite3.Connection, Dict[str, Any]]:
    """Under the write lock: a read transaction on the store, the manifest, the index file and the stored files."""
    with gallery.write_locked():
        manifest = gallery.manifest
        reader = sqlite3.connect(str(gallery.folder / STORE_FILE), isolation_level=None, check_same_thread=False)
        try:
            reader.execute("BEGIN")
            revision_row = reader.execute("SELECT seq FROM sqlite_sequence WHERE name='changes'").fetchone()
            paths = reader.execute("SELECT item_id, path FROM items WHERE path IS NOT NULL").fetchall()
            shutil.copy2(gallery.folder / MANIFEST_FILE, staging / MANIFEST_FILE)
            index_file = gallery.folder / manifest.index_file
            if index_file.is_file():
                _link_or_copy(index_file, staging / manifest.index_file)
            members = _link_stored_files(gallery.folder, paths, staging)
        except BaseException:
            reader.close()
            raise
    return reader, {"manifest": manifest, "revision": int(revision_row[0]) if revision_row else 0, "files": members}


def _link_stored_files(folder: Path, paths: List[Tuple[int, str]], staging: Path) -> Dict[int, str]:
    """Hard-link the stored files under `folder/files/` that items point to; returns item id -> member name."""
    root = (folder / FILES_DIR).resolve()
    members: Dict[int, str] = {}
    for item_id, stored in paths:
        path = Path(stored).resolve()
        if not path.is_relative_to(root) or not path.is_file():
            continue
        member = f"{FILES_DIR}/{path.relative_to(root).as_posix()}"
        if is_member_name(member):
            _link_or_copy(path, staging / member)
            members[item_id] = member
    return members


def _finish_store_copy(copy: Path, generation: int, files: Dict[int, str]) -> int:
    """Keep one embedding generation, name stored files by member path, make the copy one file; returns items."""
    with closing(sqlite3.connect(str(copy), isolation_level=None)) as db:
        db.execute("BEGIN")
        db.execute("DELETE FROM embeddings WHERE generation<>?", (generation,))
        db.executemany("UPDATE items SET path=? WHERE item_id=?", [(member, item_id) for item_id, member in files.items()])
        db.execute("COMMIT")
        count = int(db.execute("SELECT COUNT(*) FROM items").fetchone()[0])
        db.execute("PRAGMA journal_mode=DELETE")
    return count


def _staged_members(staging: Path) -> List[str]:
    fixed = [MANIFEST_FILE, STORE_FILE]
    rest = sorted(p.relative_to(staging).as_posix() for p in staging.rglob("*") if p.is_file())
    return fixed + [name for name in rest if name not in fixed]


def _write_tar(target: Path, staging: Path, manifest: SnapshotManifest) -> Tuple[int, str]:
    """Write `snapshot.json` then every member to `target`; returns the archive's size and SHA-256."""
    mtime = int(manifest.created_at)

    def info(name: str, size: int) -> tarfile.TarInfo:
        entry = tarfile.TarInfo(name)
        entry.size, entry.mtime, entry.mode, entry.uid, entry.gid = size, mtime, 0o644, 0, 0
        return entry

    with open(target, "wb") as handle:
        writer = _HashingWriter(handle)
        with tarfile.open(fileobj=writer, mode="w", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[arg-type]
            raw = manifest.to_json()
            tar.addfile(info(SNAPSHOT_MANIFEST, len(raw)), io.BytesIO(raw))
            for name in manifest.members:
                with open(staging / name, "rb") as member:
                    tar.addfile(info(name, manifest.members[name]["size"]), member)
        handle.flush()
        os.fsync(handle.fileno())
    return writer.size, writer.digest.hexdigest()


def check_local(gallery: Any) -> None:
    """`SnapshotUnsupportedError` for a gallery another backend (Milvus) keeps."""
    backend = getattr(gallery.manifest, "backend", "local")
    if backend != "local" or not hasattr(gallery, "write_locked"):
        raise SnapshotUnsupportedError(f"gallery {gallery.name!r} is kept by the {backend!r} backend: snapshots cover "
                                       "local galleries only (use the backend's own backup)")


def write_snapshot(gallery: Any, target: Path, staging: Path, snapshot_id: str) -> SnapshotInfo:
    """Write a snapshot archive of the open local `gallery` to `target`, staging its members in `staging` (an empty
    folder on the data disk, removed by the caller)."""
    check_local(gallery)
    created_at = time.time()
    reader, pinned = _pin(gallery, staging)
    with closing(reader):
        with closing(sqlite3.connect(str(staging / STORE_FILE))) as copy:
            reader.backup(copy)
        reader.execute("COMMIT")
    manifest = pinned["manifest"]
    items = _finish_store_copy(staging / STORE_FILE, manifest.generation, pinned["files"])
    members = {name: {"size": (staging / name).stat().st_size, "sha256": file_sha256(staging / name)}
               for name in _staged_members(staging)}
    snapshot = SnapshotManifest(
        id=snapshot_id, gallery=gallery.name, created_at=created_at, items=items, revision=pinned["revision"],
        index_file=manifest.index_file, members=members,
        model={"name": manifest.model_name, "version": int(manifest.model_version),
               "embedding_size": int(manifest.embedding_size), "modality": manifest.modality})
    size, sha256 = _write_tar(target, staging, snapshot)
    return SnapshotInfo(id=snapshot_id, gallery=gallery.name, created_at=created_at, size=size, sha256=sha256,
                        items=items, model={"name": manifest.model_name, "version": int(manifest.model_version)})


def export_snapshot(gallery: Any, data_dir: TPath, target: TPath, snapshot_id: Optional[str] = None) -> SnapshotInfo:
    """Write a snapshot archive of `gallery` to the file `target` (written beside it, then renamed into place); the
    members are staged under `<data_dir>/snapshots/<gallery>/`, on the gallery's disk, so they can be hard links."""
    check_local(gallery)
    target = Path(target)
    staging_root = snapshots_dir(data_dir, gallery.name)
    staging_root.mkdir(parents=True, exist_ok=True)
    snapshot_id = snapshot_id or new_snapshot_id()
    staging = staging_root / f".{snapshot_id}.tmp"
    partial = target.parent / f".{target.name}.{snapshot_id}.tmp"
    staging.mkdir()
    try:
        info = write_snapshot(gallery, partial, staging, snapshot_id)
        os.replace(partial, target)
        fsync_dir(target.parent)
        return info
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        partial.unlink(missing_ok=True)


def create_snapshot(gallery: Any, data_dir: TPath) -> SnapshotInfo:
    """Store a new snapshot of `gallery` as `<data_dir>/snapshots/<gallery>/<id>.tar` (+ `<id>.json`)."""
    check_local(gallery)
    folder = snapshots_dir(data_dir, gallery.name)
    folder.mkdir(parents=True, exist_ok=True)
    clear_stale_staging(folder)
    snapshot_id = new_snapshot_id()
    target = folder / f"{snapshot_id}{ARCHIVE_SUFFIX}"
    info = export_snapshot(gallery, data_dir, target, snapshot_id)
    try:
        atomic_write_json(target.with_suffix(INFO_SUFFIX), info.to_dict())
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return info


__all__ = ["check_local", "write_snapshot", "export_snapshot", "create_snapshot", "file_sha256"]
