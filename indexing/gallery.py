"""`Gallery`: an index, a SQLite item store and a manifest in `<data_dir>/galleries/<name>/`.

The store is the source of truth (items and their embeddings); the index file is a cache that records the store
revision it reflects and is brought up to date from the store's change log whenever it is opened. A chunk written
by `upsert` is one SQLite transaction, so a process killed at any moment leaves every chunk either fully stored or
absent, and the next `open` re-syncs the index. Searches run concurrently (shared lock); writes take the exclusive
lock in this process and a file lock across processes.
"""

import fcntl
import hashlib
import logging
import os
import re
import shutil
import time
import uuid
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence

import numpy as np

from oml.utils.atomic import fsync_dir
from indexing.errors import (
    GalleryCorruptError,
    GalleryError,
    GalleryExistsError,
    GalleryNotFoundError,
    IndexCorruptError,
    InvalidGalleryNameError,
    ModelMismatchError,
)
from indexing.factory import load_index, make_index
from indexing.interfaces import IIndex, check_k
from indexing.items import Hit, Item, StoredItem
from indexing.manifest import GalleryManifest
from indexing.rwlock import ReadWriteLock
from indexing.store import ItemStore
from oml.const import TPath

LOGGER = logging.getLogger(__name__)

GALLERIES_DIR = "galleries"
STORE_FILE = "items.sqlite"
FILES_DIR = "files"
LOCK_FILE = ".write.lock"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_SUFFIX_RE = re.compile(r"^[A-Za-z0-9]{1,10}$")
_ON_CORRUPT = ("rebuild", "raise")



def validate_gallery_name(name: Any) -> str:
    """Return `name` if it is a safe folder name (letters, digits, `_.-`, up to 64, not starting with `.`/`-`)."""
    if not isinstance(name, str) or not _NAME_RE.match(name) or name.endswith((".tmp", ".trash")):
        raise InvalidGalleryNameError(
            f"invalid gallery name {name!r}: use 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit"
        )
    return name


def gallery_dir(data_dir: TPath, name: str) -> Path:
    """`<data_dir>/galleries/<name>` for a valid name."""
    return Path(data_dir) / GALLERIES_DIR / validate_gallery_name(name)


def _model_identity(model: Any) -> Dict[str, Any]:
    """Name, version, modality, size, normalised of a `ModelManifest` or of an extractor holding one."""
    manifest = getattr(model, "manifest", model)
    return {
        "model_name": manifest.name,
        "model_version": int(manifest.version),
        "modality": manifest.modality,
        "embedding_size": int(manifest.embedding_size),
        "normalised": bool(getattr(manifest, "normalised", True)),
        "distance": getattr(manifest, "distance", "euclidean"),
    }


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

    def __init__(self, folder: Path, manifest: GalleryManifest, store: ItemStore, autosave_changes: int = 100_000):
        self.folder = folder
        self.manifest = manifest
        self.store = store
        self.autosave_changes = autosave_changes
        self._lock = ReadWriteLock()
        self._index: IIndex = make_index(manifest.index_spec, manifest.embedding_size, **manifest.index_options)
        self._index_revision = 0
        self._unsaved_changes = 0
        self._closed = False

    # ---- life cycle ---------------------------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        data_dir: TPath,
        name: str,
        manifest: Any,
        index_spec: str = "exact",
        index_options: Optional[Dict[str, Any]] = None,
        **open_options: Any,
    ) -> "Gallery":
        """Create an empty gallery for embeddings of the model described by `manifest` (a `ModelManifest`).

        `index_spec`: `"exact"` or a FAISS factory string; `index_options` go to the index engine
        (e.g. `{"train_size": 5000, "nprobe": 16}`). The folder appears complete or not at all.
        """
        folder = gallery_dir(data_dir, name)
        if folder.exists():
            raise GalleryExistsError(f"gallery {name!r} already exists in {folder.parent}")
        identity = _model_identity(manifest)
        index_options = dict(index_options or {})
        make_index(index_spec, identity["embedding_size"], **index_options)  # reject a bad spec before writing
        gallery_manifest = GalleryManifest(
            name=name, index_spec=index_spec, index_options=index_options, created_at=time.time(), **identity
        )
        folder.parent.mkdir(parents=True, exist_ok=True)
        building = folder.parent / f".{name}.{uuid.uuid4().hex[:8]}.tmp"
        building.mkdir()
        try:
            (building / FILES_DIR).mkdir()
            store = ItemStore(building / STORE_FILE, create=True)
            store.close()
            index = make_index(index_spec, identity["embedding_size"], **index_options)
            index.metadata["revision"] = 0
            index.save(building / gallery_manifest.index_file)
            gallery_manifest.save(building)
            fsync_dir(building)
            try:
                os.rename(building, folder)
            except OSError as error:
                raise GalleryExistsError(f"gallery {name!r} already exists in {folder.parent}") from error
            fsync_dir(folder.parent)
        finally:
            if building.exists():
                shutil.rmtree(building, ignore_errors=True)
        LOGGER.info("created gallery %r (%s v%s, index %s)", name, identity["model_name"], identity["model_version"], index_spec)
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
        if on_corrupt_index not in _ON_CORRUPT:
            raise ValueError(f"on_corrupt_index must be one of {_ON_CORRUPT}, got {on_corrupt_index!r}")
        folder = gallery_dir(data_dir, name)
        if not folder.is_dir():
            raise GalleryNotFoundError(f"gallery {name!r} not found in {folder.parent}")
        manifest = GalleryManifest.load(folder)
        store = ItemStore(folder / STORE_FILE)
        gallery = cls(folder, manifest, store, autosave_changes=autosave_changes)
        try:
            with gallery._writing():
                gallery._load_index(on_corrupt_index)
        except BaseException:
            store.close()
            raise
        return gallery

    def _load_index(self, on_corrupt_index: str) -> None:
        path = self.folder / self.manifest.index_file
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
            self._rebuild_index()
            self._save_index_locked()
            return
        self._index = index
        self._index_revision = int(index.metadata.get("revision", 0))
        self._catch_up()
        if len(self._index) != self.store.count():
            LOGGER.warning("gallery %r: index holds %d items, store %d; rebuilding", self.manifest.name,
                           len(self._index), self.store.count())
            self._rebuild_index()

    def _rebuild_index(self) -> None:
        """Build the index afresh from the stored embeddings of the current generation (caller holds the lock)."""
        revision = self.store.revision()
        index = make_index(self.manifest.index_spec, self.manifest.embedding_size, **self.manifest.index_options)
        for ids, vectors in self.store.iter_vectors(self.manifest.generation, self.manifest.embedding_size):
            index.add(vectors, ids)
        self._index = index
        self._index_revision = revision
        self._unsaved_changes = max(self._unsaved_changes, 1)

    def _catch_up(self) -> None:
        """Apply store changes newer than what the in-memory index reflects (other processes, or after a crash)."""
        revision = self.store.revision()
        if revision == self._index_revision:
            return
        if self._index_revision < self.store.pruned_through():
            self._rebuild_index()
            return
        added, deleted = self.store.changes_since(self._index_revision)
        self._index.remove(deleted)
        if added.size:
            fresh = added[~np.isin(added, self._index.ids())]
            for ids, vectors in self.store.iter_vectors(
                self.manifest.generation, self.manifest.embedding_size, item_ids=fresh
            ):
                self._index.add(vectors, ids)
        LOGGER.info("gallery %r: index caught up from revision %d to %d (+%d, -%d)", self.manifest.name,
                    self._index_revision, revision, added.size, deleted.size)
        self._index_revision = revision
        self._unsaved_changes += int(added.size + deleted.size)

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """Exclusive access: the in-process write lock and the gallery's file lock (one writer across processes)."""
        self._check_open()
        with self._lock.write():
            with open(self.folder / LOCK_FILE, "a+b") as handle:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def _check_open(self) -> None:
        if self._closed:
            raise GalleryError(f"gallery {self.manifest.name!r} is closed")

    def refresh(self) -> None:
        """Pick up items written by other processes since this gallery was opened or last written."""
        with self._writing():
            self._catch_up()

    def save_index(self) -> None:
        """Write the index file (atomically) and forget the change-log entries it now reflects."""
        self._check_open()
        with self._lock.read():
            self._save_index_locked()

    def _save_index_locked(self) -> None:
        """`save_index` for a caller that already holds the lock (shared or exclusive)."""
        revision = self._index_revision
        self._index.metadata["revision"] = revision
        self._index.save(self.folder / self.manifest.index_file)
        self._unsaved_changes = 0
        self.store.prune_changes(revision)

    def close(self) -> None:
        """Save the index if it changed, and close the store."""
        if self._closed:
            return
        if self._unsaved_changes:
            self.save_index()
        with self._lock.write():
            self.store.close()
            self._closed = True

    def __enter__(self) -> "Gallery":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    # ---- reading --------------------------------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def embedding_size(self) -> int:
        return self.manifest.embedding_size

    @property
    def index(self) -> IIndex:
        return self._index

    def __len__(self) -> int:
        return len(self._index)

    def info(self) -> Dict[str, Any]:
        """Name, count, model, model_version, modality, embedding_size, index, distance, generation."""
        return {
            "name": self.manifest.name,
            "count": len(self),
            "model": self.manifest.model_name,
            "model_version": self.manifest.model_version,
            "modality": self.manifest.modality,
            "embedding_size": self.manifest.embedding_size,
            "index": self.manifest.index_spec,
            "distance": self.manifest.distance,
            "generation": self.manifest.generation,
        }

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

    def iter_items(self, batch_size: int = 1000) -> Iterator[List[StoredItem]]:
        """All stored items in id order, in lists of `batch_size`."""
        self._check_open()
        return self.store.iter_items(batch_size)

    def check_model(self, model: Any) -> None:
        """Raise `ModelMismatchError` unless `model` (a `ModelManifest` or extractor) is the one this gallery holds."""
        identity = _model_identity(model)
        held = (self.manifest.model_name, self.manifest.model_version, self.manifest.embedding_size)
        given = (identity["model_name"], identity["model_version"], identity["embedding_size"])
        if given != held:
            raise ModelMismatchError(
                f"gallery {self.name!r} holds embeddings of {held[0]} v{held[1]} (size {held[2]}), "
                f"not of {given[0]} v{given[1]} (size {given[2]}); re-embed the gallery to switch models"
            )

    def _check_embeddings(self, embeddings: Any, what: str) -> np.ndarray:
        if hasattr(embeddings, "detach"):
            embeddings = embeddings.detach().cpu().numpy()
        array = np.asarray(embeddings)
        if array.ndim == 1:
            array = array[None, :]
        if array.ndim != 2:
            raise ValueError(f"{what} must be a 2-D array (n, {self.embedding_size}), got shape {array.shape}")
        if array.shape[1] != self.embedding_size:
            raise ModelMismatchError(
                f"{what} have size {array.shape[1]}, gallery {self.name!r} holds embeddings of size "
                f"{self.embedding_size} from {self.manifest.model_name} v{self.manifest.model_version}"
            )
        array = np.ascontiguousarray(array, dtype=np.float32)
        if not np.isfinite(array).all():
            raise ValueError(f"{what} contain NaN or infinite values")
        return array

    def search(self, queries: Any, k: int = 10, **params: Any) -> List[List[Hit]]:
        """The `k` nearest items of every query embedding, nearest first; `params` (`nprobe`, `efSearch`) go to FAISS."""
        self._check_open()
        queries = self._check_embeddings(queries, "query embeddings")
        k = check_k(k)
        with self._lock.read():
            distances, ids = self._index.search(queries, k, **params)
        items = self.store.get_many(ids[ids >= 0].tolist())
        results = []
        for row_distances, row_ids in zip(distances, ids):
            hits = []
            for distance, item_id in zip(row_distances, row_ids):
                item = items.get(int(item_id))
                if item is None:
                    continue  # padding, or deleted between the search and this look-up
                hits.append(Hit(key=item.key, label=item.label, distance=float(distance), payload=item.payload,
                                item_id=item.item_id, path=item.path, text=item.text))
            results.append(hits)
        return results

    def to_retrieval_results(
        self, query_embeddings: Any, k: int = 10, query_labels: Optional[Sequence[Any]] = None, **params: Any
    ) -> Any:
        """Search and return `oml.retrieval.RetrievalResults` (retrieved ids are item ids; gt ids from labels)."""
        import torch

        from oml.retrieval import RetrievalResults

        self._check_open()
        queries = self._check_embeddings(query_embeddings, "query embeddings")
        if query_labels is not None and len(query_labels) != queries.shape[0]:
            raise ValueError(f"{len(query_labels)} query labels for {queries.shape[0]} queries")
        with self._lock.read():
            distances, ids = self._index.search(queries, check_k(k), **params)
        found = ids >= 0
        distances_list = [torch.from_numpy(distances[row][found[row]].copy()) for row in range(ids.shape[0])]
        ids_list = [torch.from_numpy(ids[row][found[row]].copy()) for row in range(ids.shape[0])]
        gt_ids = None
        if query_labels is not None:
            labels = [_plain_label(label) for label in query_labels]
            by_label = self.store.ids_with_labels(labels)
            gt_ids = [torch.tensor(by_label[label], dtype=torch.long) for label in labels]
        return RetrievalResults(distances=distances_list, retrieved_ids=ids_list, gt_ids=gt_ids)

    # ---- writing --------------------------------------------------------------------------------------------------

    def upsert(self, items: Sequence[Item], embeddings: Any, model: Any = None) -> List[int]:
        """Insert items, or replace those whose key exists (vector included); one transaction. Returns item ids.

        `model` (a `ModelManifest` or extractor), when given, must be the gallery's model.
        """
        if model is not None:
            self.check_model(model)
        vectors = self._check_embeddings(embeddings, "embeddings")
        items = list(items)
        if len(items) != vectors.shape[0]:
            raise ValueError(f"{len(items)} items but {vectors.shape[0]} embeddings")
        for item in items:
            if not isinstance(item, Item):
                raise TypeError(f"items must be indexing.Item, got {type(item).__name__}")
        last = {item.key: position for position, item in enumerate(items)}
        keep = sorted(last.values())
        with self._writing():
            self._catch_up()
            new_ids, replaced = self.store.upsert([items[p] for p in keep], vectors[keep], self.manifest.generation)
            try:
                self._index.remove(np.array(replaced, dtype=np.int64))
                self._index.add(vectors[keep], np.array(new_ids, dtype=np.int64))
            except BaseException:
                LOGGER.exception("gallery %r: index update failed; rebuilding it from the store", self.name)
                self._rebuild_index()
                raise
            self._index_revision = self.store.revision()
            self._unsaved_changes += len(new_ids) + len(replaced)
        self._maybe_autosave()
        id_by_key = {items[p].key: item_id for p, item_id in zip(keep, new_ids)}
        return [id_by_key[item.key] for item in items]

    def delete_many(self, keys: Sequence[str]) -> int:
        """Delete items by key; returns how many existed."""
        with self._writing():
            self._catch_up()
            removed = self.store.delete_keys(list(keys))
            self._index.remove(np.array(removed, dtype=np.int64))
            self._index_revision = self.store.revision()
            self._unsaved_changes += len(removed)
        self._maybe_autosave()
        return len(removed)

    def delete(self, key: str) -> bool:
        """Delete the item with this key; False if there was none."""
        return self.delete_many([key]) == 1

    def _maybe_autosave(self) -> None:
        if self._unsaved_changes >= self.autosave_changes:
            self.save_index()

    def store_file(self, key: str, data: bytes, suffix: str) -> Path:
        """Keep a copy of an item's source file (e.g. an uploaded image) under `files/`; returns its path."""
        self._check_open()
        suffix = suffix.lstrip(".")
        if not _SUFFIX_RE.match(suffix):
            raise ValueError(f"file suffix must be 1-10 letters or digits, got {suffix!r}")
        digest = hashlib.sha256(key.encode("utf-8")).hexdigest()
        folder = self.folder / FILES_DIR / digest[:2]
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{digest}.{suffix.lower()}"
        from oml.utils.atomic import atomic_write_bytes

        atomic_write_bytes(path, data)
        return path

    # ---- model hot-swap -------------------------------------------------------------------------------------------

    def reembed(
        self, extractor: Any, batch_size: int = 64, progress: bool = False, on_batch: Optional[Callable[[int], None]] = None
    ) -> Dict[str, Any]:
        """Re-embed every stored item with `extractor` into a shadow index, then swap model and index atomically.

        Searches keep using the old index until the swap; writes made meanwhile are caught up under the lock before
        it. The manifest (model name, version, embedding size, generation) is the commit point: a crash before it
        leaves the old gallery intact. Returns counts and timings.
        """
        from tqdm import tqdm

        self._check_open()
        started = time.time()
        identity = _model_identity(extractor)
        new_generation = self.manifest.generation + 1
        new_manifest = replace(self.manifest, generation=new_generation, **identity)
        self.store.drop_generation(new_generation)  # leftovers of an interrupted re-embedding
        shadow = make_index(new_manifest.index_spec, new_manifest.embedding_size, **new_manifest.index_options)
        total = self.store.count()
        bar = tqdm(total=total, desc=f"re-embed {self.name}", unit="item", disable=not progress)
        embedded = 0
        for batch in self.store.iter_items(batch_size):
            vectors = embed_stored_items(extractor, batch)
            self.store.put_embeddings(new_generation, [item.item_id for item in batch], vectors)
            shadow.add(vectors, np.array([item.item_id for item in batch], dtype=np.int64))
            embedded += len(batch)
            bar.update(len(batch))
            if on_batch is not None:
                on_batch(embedded)
        bar.close()
        with self._writing():
            self._catch_up()
            present = self.store.item_ids()
            shadow.remove(np.setdiff1d(shadow.ids(), present))
            missing = self.store.ids_missing_generation(new_generation)
            if missing:
                late = [item for batch in [list(self.store.get_many(missing).values())] for item in batch]
                late.sort(key=lambda item: item.item_id)
                vectors = embed_stored_items(extractor, late)
                self.store.put_embeddings(new_generation, [item.item_id for item in late], vectors)
                shadow.remove(np.array([item.item_id for item in late], dtype=np.int64))
                shadow.add(vectors, np.array([item.item_id for item in late], dtype=np.int64))
            shadow.metadata["revision"] = self._index_revision
            shadow.save(self.folder / new_manifest.index_file)
            old_index_file = self.folder / self.manifest.index_file
            new_manifest.save(self.folder)  # the commit point
            self.manifest = new_manifest
            self._index = shadow
            self._unsaved_changes = 0
            self.store.drop_generations_except(new_generation)
            if old_index_file.exists() and old_index_file != self.folder / new_manifest.index_file:
                old_index_file.unlink()
        report = {"gallery": self.name, "items": len(shadow), "late_items": len(missing),
                  "model": new_manifest.model_name, "model_version": new_manifest.model_version,
                  "embedding_size": new_manifest.embedding_size, "seconds": round(time.time() - started, 3)}
        LOGGER.info("re-embedded gallery %r: %s", self.name, report)
        return report


def _plain_label(label: Any) -> Any:
    if hasattr(label, "item") and not isinstance(label, (str, bytes)):
        label = label.item()
    if isinstance(label, float) and label.is_integer():
        label = int(label)
    return label


def embed_stored_items(extractor: Any, items: Sequence[StoredItem]) -> np.ndarray:
    """Embed stored items by their text or image path, per the extractor's modality."""
    if extractor.modality == "text":
        lacking = [item.key for item in items if item.text is None]
        if lacking:
            raise GalleryError(f"items without text cannot be embedded by a text model: {lacking[:5]}")
        return np.asarray(extractor.embed_texts([item.text for item in items]), dtype=np.float32)
    lacking = [item.key for item in items if item.path is None]
    if lacking:
        raise GalleryError(f"items without an image path cannot be embedded by an image model: {lacking[:5]}")
    return np.asarray(extractor.embed_images([item.path for item in items]), dtype=np.float32)


def list_galleries(data_dir: TPath) -> List[Dict[str, Any]]:
    """`info()` of every gallery in `<data_dir>/galleries`, by name; an unreadable one is listed with an `error`."""
    root = Path(data_dir) / GALLERIES_DIR
    if not root.is_dir():
        return []
    result = []
    for folder in sorted(root.iterdir()):
        if not folder.is_dir() or folder.name.startswith(".") or not _NAME_RE.match(folder.name):
            continue
        try:
            manifest = GalleryManifest.load(folder)
            store = ItemStore(folder / STORE_FILE)
            try:
                count = store.count()
            finally:
                store.close()
            result.append({
                "name": folder.name, "count": count, "model": manifest.model_name,
                "model_version": manifest.model_version, "modality": manifest.modality,
                "embedding_size": manifest.embedding_size, "index": manifest.index_spec,
                "distance": manifest.distance, "generation": manifest.generation,
            })
        except GalleryCorruptError as error:
            result.append({"name": folder.name, "error": str(error)})
    return result


def delete_gallery(data_dir: TPath, name: str) -> None:
    """Remove a gallery: renamed away first (so it vanishes at once), then deleted."""
    folder = gallery_dir(data_dir, name)
    if not folder.is_dir():
        raise GalleryNotFoundError(f"gallery {name!r} not found in {folder.parent}")
    trash = folder.parent / f".{name}.{uuid.uuid4().hex[:8]}.trash"
    os.rename(folder, trash)
    fsync_dir(folder.parent)
    shutil.rmtree(trash, ignore_errors=True)
    LOGGER.info("deleted gallery %r", name)


__all__ = [
    "Gallery",
    "list_galleries",
    "delete_gallery",
    "gallery_dir",
    "validate_gallery_name",
    "embed_stored_items",
    "GALLERIES_DIR",
]
