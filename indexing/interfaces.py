"""The two seams of a gallery: `IIndex` (vectors searched by distance) and `IItemStore` (items, their embeddings and a
change log), plus the argument checks every index engine shares."""

from abc import ABC, abstractmethod
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from indexing.items import Item, StoredItem
from oml.const import TPath


class IIndex(ABC):
    """A set of vectors of one size, each with a unique int64 id, searched by Euclidean distance.

    `search` returns distances (n, k) float32, ascending, Euclidean (not squared), and ids (n, k) int64;
    where fewer than k vectors exist, ids are padded with -1 and distances with +inf.
    `metadata` is a small JSON-able dict saved with the index (the gallery keeps its store revision there).
    """

    spec: str
    dim: int
    metadata: Dict[str, Any]

    @abstractmethod
    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        """Add vectors (n, dim) with new unique ids (n,); an id already present is an error."""

    @abstractmethod
    def remove(self, ids: np.ndarray) -> int:
        """Remove the vectors of these ids (unknown ids are ignored); return how many were removed."""

    @abstractmethod
    def search(self, queries: np.ndarray, k: int, **params: Any) -> Tuple[np.ndarray, np.ndarray]:
        """The k nearest vectors of every query: `(distances, ids)`, both (n_queries, k)."""

    exact: bool = False  # whether `search` (and `search_subset`) return the true nearest vectors

    def search_subset(self, queries: np.ndarray, k: int, ids: np.ndarray,
                      **params: Any) -> Tuple[np.ndarray, np.ndarray]:
        """As `search`, among the vectors whose ids are in `ids` (sorted int64) only, the others skipped inside the
        search (an id selector or mask, not by over-fetching). Engines that cannot raise `NotImplementedError`."""
        raise NotImplementedError(f"{type(self).__name__} cannot search a subset of its vectors")

    @abstractmethod
    def ids(self) -> np.ndarray:
        """Ids of all vectors in the index, sorted ascending."""

    @abstractmethod
    def save(self, path: TPath) -> None:
        """Write the index to `path` atomically."""

    @classmethod
    @abstractmethod
    def load(cls, path: TPath) -> "IIndex":
        """Read an index written by `save`; raises `IndexCorruptError` for a damaged file."""

    @abstractmethod
    def __len__(self) -> int:
        ...

    def __repr__(self) -> str:
        return f"{type(self).__name__}(spec={self.spec!r}, dim={self.dim}, size={len(self)})"


class IItemStore(ABC):
    """A gallery's source of truth: items by unique key, their embeddings per generation, and a change log.

    Every item gets an int id that is never reused. Each added or deleted item id is one entry of the change log;
    the number of the newest entry is the store's revision. Writes are atomic: all of a call's items or none.
    A damaged store raises `GalleryCorruptError` naming its file.
    """

    @abstractmethod
    def count(self) -> int:
        """Number of items stored."""

    @abstractmethod
    def revision(self) -> int:
        """Number of the newest change-log entry ever written (0 for a fresh store)."""

    @abstractmethod
    def pruned_through(self) -> int:
        """Change-log entries up to this revision have been forgotten."""

    @abstractmethod
    def get(self, key: str) -> Optional[StoredItem]:
        """The item with this key, or None."""

    @abstractmethod
    def get_many(self, item_ids: Iterable[int]) -> Dict[int, StoredItem]:
        """`item_id -> StoredItem` for the ids that exist."""

    @abstractmethod
    def iter_items(self, batch_size: int = 1000, after_id: int = 0) -> Iterator[List[StoredItem]]:
        """All items with ids above `after_id`, in id order, in lists of `batch_size`; safe against concurrent writes."""

    @abstractmethod
    def iter_vectors(
        self, generation: int, dim: int, batch_size: int = 10000, item_ids: Optional[Sequence[int]] = None
    ) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
        """`(ids, vectors)` batches of the stored embeddings of one generation: all, or those of `item_ids`."""

    @abstractmethod
    def changes_since(self, revision: int) -> Tuple[np.ndarray, np.ndarray]:
        """Net effect of the log after `revision`: `(ids added and still present, ids deleted)`, sorted."""

    @abstractmethod
    def item_ids(self) -> np.ndarray:
        """Ids of all stored items, ascending, int64."""

    @abstractmethod
    def ids_with_labels(self, labels: Sequence[Any]) -> Dict[Any, List[int]]:
        """`label -> ids of the items with that label`, for every given label (empty list when none)."""

    @abstractmethod
    def ids_matching(self, filter: Any) -> np.ndarray:
        """Ids (ascending, int64) of the items that pass an `indexing.filters.SearchFilter`."""

    @abstractmethod
    def items_by_key(self, limit: int, after_key: Optional[str] = None,
                     labels: Optional[Sequence[Any]] = None) -> List[StoredItem]:
        """Up to `limit` items in key order, keys after `after_key` only, with one of `labels` when given."""

    @abstractmethod
    def label_counts(self) -> Tuple[List[Tuple[Any, int]], int]:
        """`([(label, item count), ...], unlabelled count)`, most frequent labels first."""

    @abstractmethod
    def ids_missing_generation(self, generation: int) -> List[int]:
        """Ids of items that have no embedding of this generation."""

    @abstractmethod
    def hashes_for_keys(self, keys: Sequence[str]) -> Dict[str, str]:
        """`key -> content_hash` of those of the given keys that are stored."""

    @abstractmethod
    def upsert(self, items: Sequence[Item], vectors: np.ndarray, generation: int) -> Tuple[List[int], List[int]]:
        """Insert items, replacing (under a new id) those whose key exists; `(new ids, ids of replaced items)`."""

    @abstractmethod
    def delete_keys(self, keys: Sequence[str]) -> List[int]:
        """Delete items by key (unknown keys are ignored); the ids deleted."""

    @abstractmethod
    def put_embeddings(self, generation: int, item_ids: Sequence[int], vectors: np.ndarray) -> int:
        """Store embeddings of a generation for those of the items that still exist; how many were stored."""

    @abstractmethod
    def drop_generation(self, generation: int) -> None:
        """Forget every embedding of this generation."""

    @abstractmethod
    def drop_generations_except(self, generation: int) -> None:
        """Forget every embedding not of this generation."""

    @abstractmethod
    def prune_changes(self, through_revision: int) -> None:
        """Forget change-log entries up to `through_revision` (an index file already reflects them)."""

    @abstractmethod
    def close(self) -> None:
        """Release the store; no other verb may be used afterwards."""


def as_numpy(array: Any) -> np.ndarray:
    """`array` as a numpy array; a torch tensor is detached and moved to the CPU first."""
    if hasattr(array, "detach"):
        array = array.detach().cpu().numpy()
    return np.asarray(array)


def check_vectors(vectors: Any, dim: int, what: str = "vectors") -> np.ndarray:
    """Return `vectors` as a C-contiguous float32 (n, dim) array or raise ValueError saying what is wrong."""
    array = as_numpy(vectors)
    if array.ndim == 1 and array.shape[0] == dim:
        array = array[None, :]
    if array.ndim != 2:
        raise ValueError(f"{what} must be a 2-D array (n, {dim}), got shape {array.shape}")
    if array.shape[1] != dim:
        raise ValueError(f"{what} have size {array.shape[1]}, the index holds vectors of size {dim}")
    if not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"{what} must be numeric, got dtype {array.dtype}")
    array = np.ascontiguousarray(array, dtype=np.float32)
    if not np.isfinite(array).all():
        raise ValueError(f"{what} contain NaN or infinite values")
    return array


def check_ids(ids: Any, n: int) -> np.ndarray:
    """Return `ids` as an int64 (n,) array of unique non-negative ids or raise ValueError."""
    array = np.asarray(ids)
    if array.ndim != 1 or array.shape[0] != n:
        raise ValueError(f"ids must be a 1-D array of {n} ids, got shape {array.shape}")
    if n and not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"ids must be integers, got dtype {array.dtype}")
    array = array.astype(np.int64)
    if n and array.min() < 0:
        raise ValueError("ids must be non-negative (-1 marks padding in search results)")
    if np.unique(array).shape[0] != n:
        raise ValueError("ids must be unique")
    return array


def check_k(k: Any) -> int:
    """Return `k` as a positive int or raise ValueError."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    return int(k)


__all__ = ["IIndex", "IItemStore", "as_numpy", "check_vectors", "check_ids", "check_k"]
