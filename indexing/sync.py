"""`SyncedIndex`: a gallery's `IIndex`, kept in step with its `IItemStore`.

The store is the source of truth; the index file is a cache that records the store revision it reflects. On open the
file is loaded and the store's change log after that revision is replayed; a missing or damaged file, or a log pruned
past it, means a rebuild from the stored embeddings. Saving the index lets the store forget the log it now reflects.
Callers hold the gallery's lock: exclusive for everything but `save`.
"""

import logging
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from indexing.errors import IndexCorruptError, InsufficientStorageError, storage_full_cause
from indexing.factory import load_index, make_index
from indexing.interfaces import IIndex, IItemStore
from indexing.manifest import GalleryManifest

LOGGER = logging.getLogger(__name__)

ON_CORRUPT_INDEX = ("rebuild", "raise")


def empty_index(manifest: GalleryManifest) -> IIndex:
    """A new, empty index of the spec, size and options the manifest names."""
    return make_index(manifest.index_spec, manifest.embedding_size, **manifest.index_options)


class SyncedIndex:
    """The index of the gallery in `folder`, the store revision it reflects, and how many changes are unsaved."""

    def __init__(self, folder: Path, manifest: GalleryManifest, store: IItemStore):
        self.folder = folder
        self.manifest = manifest
        self.store = store
        self.index = empty_index(manifest)
        self.revision = 0
        self.unsaved_changes = 0

    @property
    def index_path(self) -> Path:
        """The index file of the manifest's generation."""
        return self.folder / self.manifest.index_file

    def load(self, on_corrupt_index: str = "rebuild") -> None:
        """Load the index file and catch up with the store, rebuilding (`"rebuild"`) or raising `IndexCorruptError`
        (`"raise"`) when the file is missing, damaged or of another spec or size."""
        path = self.index_path
        try:
            index = load_index(path)
            if index.dim != self.manifest.embedding_size or index.spec != self.manifest.index_spec:
                raise IndexCorruptError(path, f"index holds {index.spec!r} of size {index.dim}, the manifest says "
                                        f"{self.manifest.index_spec!r} of size {self.manifest.embedding_size}")
        except (IndexCorruptError, FileNotFoundError) as error:
            if on_corrupt_index == "raise":
                if isinstance(error, FileNotFoundError):
                    raise IndexCorruptError(path, "index file is missing") from error
                raise
            LOGGER.warning("gallery %r: %s; rebuilding the index from the item store", self.manifest.name, error)
            self.rebuild()
            try:
                self.save()
            except (OSError, InsufficientStorageError) as save_error:  # serve the rebuilt index; save it later
                if storage_full_cause(save_error) is None:
                    raise
                LOGGER.warning("gallery %r: the rebuilt index cannot be saved yet, the disk is full: %s",
                               self.manifest.name, save_error)
            return
        self.index = index
        self.revision = int(index.metadata.get("revision", 0))
        self.catch_up()
        if len(self.index) != self.store.count():
            LOGGER.warning("gallery %r: index holds %d items, store %d; rebuilding", self.manifest.name,
                           len(self.index), self.store.count())
            self.rebuild()

    def rebuild(self) -> None:
        """Build the index afresh from the stored embeddings of the current generation."""
        revision = self.store.revision()
        index = empty_index(self.manifest)
        for ids, vectors in self.store.iter_vectors(self.manifest.generation, self.manifest.embedding_size):
            index.add(vectors, ids)
        self.index = index
        self.revision = revision
        self.unsaved_changes = max(self.unsaved_changes, 1)

    def catch_up(self) -> None:
        """Apply store changes newer than what the index reflects (other processes, or after a crash)."""
        revision = self.store.revision()
        if revision == self.revision:
            return
        if self.revision < self.store.pruned_through():
            self.rebuild()
            return
        added, deleted = self.store.changes_since(self.revision)
        self.index.remove(deleted)
        if added.size:
            fresh = added[~np.isin(added, self.index.ids())]
            for ids, vectors in self.store.iter_vectors(
                self.manifest.generation, self.manifest.embedding_size, item_ids=fresh
            ):
                self.index.add(vectors, ids)
        LOGGER.info("gallery %r: index caught up from revision %d to %d (+%d, -%d)", self.manifest.name,
                    self.revision, revision, added.size, deleted.size)
        self.revision = revision
        self.unsaved_changes += int(added.size + deleted.size)

    def mirror_write(
        self, removed_ids: Sequence[int], added_ids: Sequence[int] = (), added_vectors: Optional[np.ndarray] = None
    ) -> None:
        """Apply a store write this process just committed; if the index fails, rebuild it from the store and re-raise."""
        try:
            self.index.remove(np.array(removed_ids, dtype=np.int64))
            if added_vectors is not None:
                self.index.add(added_vectors, np.array(added_ids, dtype=np.int64))
        except BaseException:
            LOGGER.exception("gallery %r: index update failed; rebuilding it from the store", self.manifest.name)
            self.rebuild()
            raise
        self.revision = self.store.revision()
        self.unsaved_changes += len(added_ids) + len(removed_ids)

    def save(self) -> None:
        """Write the index file (atomically) and let the store forget the change-log entries it now reflects."""
        revision = self.revision
        self.index.metadata["revision"] = revision
        self.index.save(self.index_path)
        self.unsaved_changes = 0
        self.store.prune_changes(revision)

    def adopt(self, manifest: GalleryManifest, index: IIndex) -> None:
        """Serve `index`, already saved as `manifest`'s index file and reflecting the current revision."""
        self.manifest = manifest
        self.index = index
        self.unsaved_changes = 0


__all__ = ["SyncedIndex", "empty_index", "ON_CORRUPT_INDEX"]
