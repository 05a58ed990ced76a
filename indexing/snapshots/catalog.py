"""Where snapshots are kept: `<data_dir>/snapshots/<gallery>/<id>.tar` with `<id>.json` (its `SnapshotInfo`) beside it;
new ids, listing and deleting."""

import json
import os
import secrets
import shutil
import time
from pathlib import Path
from typing import List

from indexing.layout import validate_gallery_name
from indexing.snapshots.format import (ARCHIVE_SUFFIX, INFO_SUFFIX, SNAPSHOTS_DIR, SnapshotInfo,
                                       SnapshotNotFoundError, is_snapshot_id)
from oml.const import TPath

STALE_STAGING_S = 3600.0  # hidden staging folders older than this were left by a crash


def snapshots_dir(data_dir: TPath, gallery: str) -> Path:
    """`<data_dir>/snapshots/<gallery>` (not created)."""
    return Path(data_dir) / SNAPSHOTS_DIR / validate_gallery_name(gallery)


def new_snapshot_id() -> str:
    """A sortable, unique id: UTC time and 8 random hex digits, e.g. `20261130T062321Z-3fa85f64`."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(4)


def archive_path(data_dir: TPath, gallery: str, snapshot_id: str) -> Path:
    """The archive of a stored snapshot; `SnapshotNotFoundError` when there is none."""
    if not is_snapshot_id(snapshot_id):
        raise SnapshotNotFoundError(f"gallery {gallery!r} has no snapshot {snapshot_id!r} (ids look like "
                                    "20261130T062321Z-3fa85f64)")
    path = snapshots_dir(data_dir, gallery) / f"{snapshot_id}{ARCHIVE_SUFFIX}"
    if not path.is_file():
        raise SnapshotNotFoundError(f"gallery {gallery!r} has no snapshot {snapshot_id!r}")
    return path


def read_info(data_dir: TPath, gallery: str, snapshot_id: str) -> SnapshotInfo:
    """The `SnapshotInfo` of a stored snapshot."""
    path = archive_path(data_dir, gallery, snapshot_id).with_suffix(INFO_SUFFIX)
    try:
        info = SnapshotInfo.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        info = None
    if info is None:
        raise SnapshotNotFoundError(f"snapshot {snapshot_id!r} of gallery {gallery!r} has no readable info file")
    return info


def list_snapshots(data_dir: TPath, gallery: str) -> List[SnapshotInfo]:
    """The stored snapshots of `gallery` (the gallery itself may be gone), oldest first."""
    folder = snapshots_dir(data_dir, gallery)
    if not folder.is_dir():
        return []
    found = []
    for path in sorted(folder.glob(f"*{ARCHIVE_SUFFIX}")):
        if is_snapshot_id(path.stem):
            try:
                found.append(read_info(data_dir, gallery, path.stem))
            except SnapshotNotFoundError:
                continue  # deleted meanwhile, or its info file is not written yet
    return sorted(found, key=lambda info: (info.created_at, info.id))


def delete_snapshot(data_dir: TPath, gallery: str, snapshot_id: str) -> None:
    """Remove a stored snapshot (archive and info file)."""
    path = archive_path(data_dir, gallery, snapshot_id)
    path.with_suffix(INFO_SUFFIX).unlink(missing_ok=True)
    path.unlink(missing_ok=True)


def clear_stale_staging(folder: Path) -> None:
    """Remove hidden staging folders and partial archives a crashed snapshot left in `folder`."""
    if not folder.is_dir():
        return
    now = time.time()
    for entry in folder.iterdir():
        try:
            if entry.name.startswith(".") and now - entry.stat().st_mtime > STALE_STAGING_S:
                shutil.rmtree(entry) if entry.is_dir() else os.unlink(entry)
        except OSError:
            continue


__all__ = ["snapshots_dir", "new_snapshot_id", "archive_path", "read_info", "list_snapshots", "delete_snapshot",
           "clear_stale_staging"]
