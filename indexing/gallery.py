"""`Gallery`: an index, an item store and a manifest in `<data_dir>/galleries/<name>/`, behind one object.

The store is the source of truth (items and their embeddings); the index is a cache kept in step with it
(`indexing.sync`). A chunk written by `upsert` is one store transaction, so a process killed at any moment leaves
every chunk either fully stored or absent, and the next `open` re-syncs the index. Searches run concurrently (shared
lock); writes take the exclusive lock in this process and a file lock across processes (`indexing.locking`).
Where things live on disk: `indexing.layout`; model hot-swap: `indexing.reembed`.
"""

import logging
from pathlib import Path
from typing import Any, Callable, ContextManager, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from indexing.errors import GalleryError
from indexing.filtered_search import FilteredSearcher
from indexing.filters import as_filter
from indexing.interfaces import IIndex, IItemStore, check_k
from indexing.items import Hit, Item, StoredItem, check_label, upsert_rows
from indexing.layout import (
    GALLERIES_DIR,
    LOCK_FILE,
    create_gallery_folder,
    delete_gallery,
    existing_gallery_dir,
    gallery_dir,
    list_galleries,
    new_gallery_dir,
    open_item_store,
    validate_gallery_name,
)
from indexing.locking import GalleryLock
from indexing.manifest import GalleryManifest
from indexing.reembed import reembed_gallery
from indexing.search_results import to_hits, to_retrieval_results
from indexing.source_files import drop_replaced_files, store_source_file
from indexing.sync import ON_CORRUPT_INDEX, SyncedIndex, empty_index
from oml.const import TPath

LOGGER = logging.getLogger(__name__)


class Gallery:
    """A searchable, persistent set of items. Build one with `Gallery.create` or `Gallery.open`.

    >>> import tempfile, numpy as np
    >>> from oml.artifact import ModelManifest
    >>> model = ModelManifest(name="demo", version=1, modality="text", embedding_size=2,
    ...                       preprocessing={"tokenizer": "tokenizer", "max_length": 8})
    >>> gallery = Gallery.create(tempfile.mkdtemp(), "docs", model, index_spec="Flat")
    >>> _ = gallery.upsert([Item("a", label=1), Item("b", label=2)], np.array([[0, 0], [1, 0]], np.float32))
    >>> [hit.key for hit in gallery.search(np.array([[0.9, 0]], np.float32), k=2)[0]]
    ['b', 'a']
    >>> gallery.close()
    """

    def __init__(self, folder: Path, manifest: GalleryManifest, store: IItemStore, autosave_changes: int = 100_000):
        self.folder = folder
        self.store = store
        self.autosave_changes = autosave_changes
        self._synced = SyncedIndex(folder, manifest, store)
        self._lock = GalleryLock(folder / LOCK_FILE)
        self._closed = False
        self._reranker_choice = manifest.reranker
        self._filtered = FilteredSearcher(store)

    # ---- life cycle ---------------------------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        data_dir: TPath,
        name: str,
        manifest: Any,
        index_spec: str = "exact",
        index_options: Optional[Dict[str, Any]] = None,
        reranker: Optional[str] = None,
        **open_options: Any,
    ) -> "Gallery":
        """Create an empty gallery for embeddings of the model described by `manifest` (a `ModelManifest`).

        `index_spec`: `"exact"` or a FAISS factory string; `index_options` go to the index engine
        (e.g. `{"train_size": 5000, "nprobe": 16}`); `reranker` names the reranker model of its searches, if any.
        The folder appears complete or not at all.
        """
        folder = new_gallery_dir(data_dir, name)
        gallery_manifest = GalleryManifest.for_model(name, manifest, index_spec, index_options).with_reranker(reranker)
        create_gallery_folder(folder, gallery_manifest, empty_index(gallery_manifest))
        LOGGER.info("created gallery %r (%s v%s, index %s)", name, gallery_manifest.model_name,
                    gallery_manifest.model_version, index_spec)
        return cls.open(data_dir, name, **open_options)

    @classmethod
    def open(
        cls, data_dir: TPath, name: str, on_corrupt_index: str = "rebuild", autosave_changes: int = 100_000
    ) -> "Gallery":
        """Open a gallery and bring its index up to date with the store.

        A missing, truncated or corrupt index file is rebuilt from the store with a warning
        (`on_corrupt_index="rebuild"`) or raises `IndexCorruptError` (`"raise"`). A damaged manifest or item store
        raises `GalleryCorruptError` naming the file.
        """
        if on_corrupt_index not in ON_CORRUPT_INDEX:
            raise ValueError(f"on_corrupt_index must be one of {ON_CORRUPT_INDEX}, got {on_corrupt_index!r}")
        folder = existing_gallery_dir(data_dir, name)
        manifest = GalleryManifest.load(folder)
        store = open_item_store(folder)
        gallery = cls(folder, manifest, store, autosave_changes=autosave_changes)
        try:
            with gallery._writing():
                gallery._synced.load(on_corrupt_index)
        except BaseException:
            store.close()
            raise
        return gallery

    def _writing(self) -> ContextManager[None]:
        """The exclusive lock (this process and others), on a gallery that is still open."""
        self._check_open()
        return self._lock.exclusive()

    def write_locked(self) -> ContextManager[None]:
        """Hold the gallery's write lock (no write commits, no index file is saved meanwhile): snapshots pin a
        consistent copy under it."""
        return self._writing()

    def _check_open(self) -> None:
        if self._closed:
            raise GalleryError(f"gallery {self.manifest.name!r} is closed")

    def refresh(self) -> None:
        """Pick up items written by other processes since this gallery was opened or last written."""
        with self._writing():
            self._synced.catch_up()

    def save_index(self) -> None:
        """Write the index file (atomically) and forget the change-log entries it now reflects."""
        self._check_open()
        with self._lock.shared():
            self._synced.save()

    def close(self) -> None:
        """Save the index if it changed, and close the store."""
        if self._closed:
            return
        if self._synced.unsaved_changes:
            self.save_index()
        with self._lock.exclusive_in_process():
            self.store.close()
            self._closed = True

    def __enter__(self) -> "Gallery":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    # ---- reading --------------------------------------------------------------------------------------------------

    @property
    def manifest(self) -> GalleryManifest:
        """Name, model and index of the gallery (replaced as a whole by `reembed`)."""
        return self._synced.manifest

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def embedding_size(self) -> int:
        return self.manifest.embedding_size

    @property
    def index(self) -> IIndex:
        return self._synced.index

    def __len__(self) -> int:
        return len(self._synced.index)

    def info(self) -> Dict[str, Any]:
        """Name, count, model, model_version, modality, embedding_size, index, distance, generation."""
        return self.manifest.summary(len(self))

    def get(self, key: str) -> Optional[StoredItem]:
        """The stored item with this key, or None."""
        self._check_open()
        return self.store.get(key)

    def get_embedding(self, key: str) -> Optional[np.ndarray]:
        """The stored embedding of the item with this key (current generation), or None."""
        item = self.get(key)
        if item is None:
            return None
        for _, vectors in self.store.iter_vectors(self.manifest.generation, self.embedding_size, item_ids=[item.item_id]):
            return vectors[0]
        return None

    def get_embeddings(self, item_ids: Sequence[int]) -> Dict[int, np.ndarray]:
        """`item_id -> stored embedding` (current generation) of the given items; ids without one are left out."""
        self._check_open()
        with self._lock.shared():
            manifest = self.manifest
            found: Dict[int, np.ndarray] = {}
            for ids, vectors in self.store.iter_vectors(manifest.generation, manifest.embedding_size,
                                                        item_ids=list(item_ids)):
                found.update(zip(ids.tolist(), vectors))
        return found

    def ids_with_labels(self, labels: Sequence[Any]) -> Dict[Any, List[int]]:
        """`label -> ids of the items with that label` (ids ascending) for each of `labels` (None matches nothing)."""
        self._check_open()
        return self.store.ids_with_labels([check_label(label) for label in labels])

    def iter_items(self, batch_size: int = 1000) -> Iterator[List[StoredItem]]:
        """All stored items in id order, in lists of `batch_size`."""
        self._check_open()
        return self.store.iter_items(batch_size)

    def list_items(self, limit: int, after_key: Optional[str] = None, labels: Optional[Sequence[Any]] = None
                   ) -> List[StoredItem]:
        """Up to `limit` items in key order after `after_key` (a page), with one of `labels` when given."""
        self._check_open()
        if limit < 1:
            raise ValueError(f"limit must be positive, got {limit}")
        labels = None if labels is None else [check_label(label) for label in labels]
        return self.store.items_by_key(limit, after_key, labels)

    def label_counts(self) -> Tuple[List[Tuple[Any, int]], int]:
        """`([(label, item count), ...], unlabelled count)`, most frequent labels first."""
        self._check_open()
        return self.store.label_counts()

    def check_model(self, model: Any) -> None:
        """Raise `ModelMismatchError` unless `model` (a `ModelManifest` or extractor) is the one this gallery holds."""
        self.manifest.check_model(model)

    def search(self, queries: Any, k: int = 10, labels: Optional[Sequence[Any]] = None, filter: Any = None,
               **params: Any) -> List[List[Hit]]:
        """The `k` nearest items of every query embedding, nearest first; `params` (`nprobe`, `efSearch`) go to FAISS.

        `filter` (`indexing.filters` syntax, a dict or a parsed `SearchFilter`) or `labels` (any of them): only the
        items that pass, selected inside the index search, so `k` hits come back whenever `k` items match.
        """
        queries = self._checked_queries(queries)
        k = check_k(k)
        search_filter = as_filter(filter, labels)
        with self._lock.shared():
            if search_filter is None:
                distances, ids = self._synced.index.search(queries, k, **params)
            else:
                distances, ids = self._filtered.search(self._synced.index, queries, k, search_filter,
                                                       self.manifest.generation, params)
        return to_hits(distances, ids, self.store)

    def to_retrieval_results(
        self, query_embeddings: Any, k: int = 10, query_labels: Optional[Sequence[Any]] = None, **params: Any
    ) -> Any:
        """Search and return `oml.retrieval.RetrievalResults` (retrieved ids are item ids; gt ids from labels)."""
        queries = self._checked_queries(query_embeddings)
        if query_labels is not None and len(query_labels) != queries.shape[0]:
            raise ValueError(f"{len(query_labels)} query labels for {queries.shape[0]} queries")
        distances, ids = self._nearest(queries, k, params)
        return to_retrieval_results(distances, ids, self.store, query_labels)

    def _checked_queries(self, queries: Any) -> np.ndarray:
        self._check_open()
        return self.manifest.check_embeddings(queries, "query embeddings")

    def _nearest(self, queries: np.ndarray, k: int, params: Dict[str, Any]) -> Tuple[np.ndarray, np.ndarray]:
        k = check_k(k)
        with self._lock.shared():
            return self._synced.index.search(queries, k, **params)

    # ---- writing --------------------------------------------------------------------------------------------------

    def upsert(self, items: Sequence[Item], embeddings: Any, model: Any = None) -> List[int]:
        """Insert items, or replace those whose key exists (vector included); one transaction. Returns item ids.

        `model` (a `ModelManifest` or extractor), when given, must be the gallery's model.
        """
        if model is not None:
            self.check_model(model)
        vectors = self.manifest.check_embeddings(embeddings, "embeddings")
        items, keep = upsert_rows(items, vectors)
        with self._writing():
            self._synced.catch_up()
            old_files = self._file_paths([items[p].key for p in keep]) if any(item.path for item in items) else []
            new_ids, replaced = self.store.upsert([items[p] for p in keep], vectors[keep], self.manifest.generation)
            self._synced.mirror_write(replaced, new_ids, vectors[keep])
        drop_replaced_files(self.folder, old_files, kept=[items[p].path for p in keep])
        self._maybe_autosave()
        id_by_key = {items[p].key: item_id for p, item_id in zip(keep, new_ids)}
        return [id_by_key[item.key] for item in items]

    def delete_many(self, keys: Sequence[str]) -> int:
        """Delete items by key; returns how many existed."""
        with self._writing():
            self._synced.catch_up()
            old_files = self._file_paths(list(keys))
            removed = self.store.delete_keys(list(keys))
            self._synced.mirror_write(removed)
        drop_replaced_files(self.folder, old_files)
        self._maybe_autosave()
        return len(removed)

    def _file_paths(self, keys: Sequence[str]) -> List[Optional[str]]:
        """Stored file paths of the items with these keys (to delete once a write replaced or deleted them)."""
        return [item.path for item in (self.store.get(key) for key in keys) if item is not None and item.path]

    def delete(self, key: str) -> bool:
        """Delete the item with this key; False if there was none."""
        return self.delete_many([key]) == 1

    def _maybe_autosave(self) -> None:
        if self._synced.unsaved_changes >= self.autosave_changes:
            self.save_index()

    def store_file(self, key: str, data: bytes, suffix: str) -> Path:
        """Keep a copy of an item's source file (e.g. an uploaded image) under `files/`; returns its path."""
        self._check_open()
        return store_source_file(self.folder, key, data, suffix)

    def set_reranker(self, reranker: Optional[str]) -> GalleryManifest:
        """Name the reranker model that refines this gallery's searches (None: none); the manifest is rewritten
        atomically under the write lock. Returns the new manifest."""
        with self._writing():
            manifest = self._save_reranker(reranker)
        LOGGER.info("gallery %r: reranker %s", manifest.name, reranker)
        return manifest

    def _save_reranker(self, reranker: Optional[str]) -> GalleryManifest:
        """Write the manifest naming `reranker` and remember the choice (the caller holds the write lock)."""
        manifest = self.manifest.with_reranker(reranker)
        manifest.save(self.folder)
        self._synced.manifest = manifest
        self._reranker_choice = reranker
        return manifest

    # ---- model hot-swap -------------------------------------------------------------------------------------------

    def reembed(
        self, extractor: Any, batch_size: int = 64, progress: bool = False, on_batch: Optional[Callable[[int], None]] = None
    ) -> Dict[str, Any]:
        """Re-embed every stored item with `extractor` into a shadow index, then swap model and index atomically.

        Searches keep using the old index until the swap; writes made meanwhile are caught up under the lock before
        it. The manifest (model name, version, embedding size, generation) is the commit point: a crash before it
        leaves the old gallery intact. Returns counts and timings.
        """
        self._check_open()
        report = reembed_gallery(self._synced, self._writing, extractor, batch_size, progress, on_batch)
        with self._writing():
            if self.manifest.reranker != self._reranker_choice:  # set while the items were being re-embedded
                self._save_reranker(self._reranker_choice)
        return report


__all__ = [
    "Gallery",
    "list_galleries",
    "delete_gallery",
    "gallery_dir",
    "validate_gallery_name",
    "GALLERIES_DIR",
]
