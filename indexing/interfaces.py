"""`IIndex`: the few verbs every vector index of a gallery offers, whatever engine is behind it."""

from abc import ABC, abstractmethod
from typing import Any, Dict, Tuple

import numpy as np
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


def check_vectors(vectors: Any, dim: int, what: str = "vectors") -> np.ndarray:
    """Return `vectors` as a C-contiguous float32 (n, dim) array or raise ValueError saying what is wrong."""
    if hasattr(vectors, "detach"):
        vectors = vectors.detach().cpu().numpy()
    array = np.asarray(vectors)
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


__all__ = ["IIndex", "TPath", "check_vectors", "check_ids", "check_k"]
