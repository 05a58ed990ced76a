"""Snapshots of the server's galleries (`indexing.snapshots`): create, list, find, delete, and restore one (a stored
snapshot or an uploaded archive) with the model check that needs this server's registry."""

import logging
from pathlib import Path
from typing import Any, Dict, List

from indexing.milvus_backend import MilvusCatalog
from indexing.snapshots import (RestoredSnapshot, SnapshotInfo, SnapshotModelError, SnapshotUnsupportedError,
                                archive_path, create_snapshot, delete_snapshot, list_snapshots, restore_snapshot)
from server.galleries import GalleryService
from server.model_registry import ModelNotFound, ModelRegistry

logger = logging.getLogger(__name__)


def check_snapshot_model(registry: ModelRegistry, model: Dict[str, Any]) -> None:
    """`SnapshotModelError` unless this server has the snapshot's model as an extractor with that version and
    embedding size (the version need not be active: a gallery keeps the version it was embedded with)."""
    name, version, size = model["name"], model["version"], model["embedding_size"]
    held = f"the snapshot holds embeddings of {name} v{version} (size {size})"
    try:
        state = registry.version_state(name, version)
    except ModelNotFound as error:
        raise SnapshotModelError(f"{held}, which this server does not have: {error}") from None
    if state.kind not in (None, "extractor") or state.state == "failed":
        raise SnapshotModelError(f"{held}, but this server's {name} v{version} cannot embed "
                                 f"({state.error or state.kind})")
    if state.embedding_size != size:
        raise SnapshotModelError(f"{held}, but this server's {name} v{version} embeds into size "
                                 f"{state.embedding_size}")


class SnapshotService:
    """Snapshots under `<data_dir>/snapshots/<gallery>/`; restores swap the gallery in through `GalleryService`."""

    def __init__(self, galleries: GalleryService, registry: ModelRegistry):
        self.galleries = galleries
        self.registry = registry
        self.data_dir = galleries.data_dir

    def create(self, name: str) -> SnapshotInfo:
        """Write a snapshot of gallery `name` while writes go on (`SnapshotUnsupportedError` for a Milvus one)."""
        info = create_snapshot(self.galleries.gallery(name), self.data_dir)
        logger.info("gallery %s: snapshot %s (%d items, %d bytes)", name, info.id, info.items, info.size)
        return info

    def list(self, name: str) -> List[SnapshotInfo]:
        return list_snapshots(self.data_dir, name)

    def archive(self, name: str, snapshot_id: str) -> Path:
        return archive_path(self.data_dir, name, snapshot_id)

    def delete(self, name: str, snapshot_id: str) -> None:
        delete_snapshot(self.data_dir, name, snapshot_id)

    def restore(self, name: str, archive: Path, replace: bool) -> RestoredSnapshot:
        """Check `archive` fully, then make it gallery `name` (replacing one only when `replace`), reopened."""
        milvus = self.galleries.milvus
        if milvus is not None and MilvusCatalog(milvus).get(name) is not None:
            raise SnapshotUnsupportedError(f"gallery {name!r} is kept by the 'milvus' backend: a snapshot cannot "
                                           "replace it; restore under another name")
        restored = restore_snapshot(archive, self.data_dir, name, replace_existing=replace,
                                    check_model=lambda model: check_snapshot_model(self.registry, model),
                                    swap=lambda rename: self.galleries.swap_folder(name, rename))
        self.galleries.info(name)  # reopen now: the next request finds it ready
        return restored


__all__ = ["SnapshotService", "check_snapshot_model"]
