"""`ExactIndex`: brute-force Euclidean search on the batched kNN of `oml.functional.knn`."""

from typing import Any, Dict, Optional, Tuple

import numpy as np

from indexing.errors import IndexCorruptError
from indexing.index_file import StoredInIndexFile, write_index_file
from indexing.interfaces import IIndex, check_ids, check_k, check_vectors
from oml.const import TPath

EXACT_SPEC = "exact"
MASKED_SHARE = 0.25  # from this share of matching rows on, a subset search masks rows instead of copying them


def exact_subset_search(queries: np.ndarray, k: int, vectors: np.ndarray, ids: np.ndarray, batch_size: int = 512
                        ) -> Tuple[np.ndarray, np.ndarray]:
    """The exact k nearest of `vectors` (ids `ids`) for every query, padded with inf / -1 to k columns."""
    distances = np.full((queries.shape[0], k), np.inf, dtype=np.float32)
    found_ids = np.full((queries.shape[0], k), -1, dtype=np.int64)
    if vectors.shape[0] == 0 or queries.shape[0] == 0:
        return distances, found_ids
    from oml.functional.knn import exact_knn

    # exact_knn walks the gallery in blocks, so memory stays bounded whatever the batch of queries
    found_distances, found_positions = exact_knn(queries, vectors, top_n=min(k, vectors.shape[0]), bs=batch_size,
                                                 check_finite=False)
    n_found = found_positions.shape[1]
    distances[:, :n_found] = found_distances.numpy()
    found_ids[:, :n_found] = ids[found_positions.numpy()]
    return distances, found_ids


def masked_search(queries: np.ndarray, k: int, vectors: np.ndarray, ids: np.ndarray, mask: np.ndarray,
                  norms: np.ndarray, block: int = 32768) -> Tuple[np.ndarray, np.ndarray]:
    """The exact k nearest rows of `vectors` (squared norms `norms`) where `mask` is true, the others skipped in place:
    their norms count as infinite, so no row is copied. Blocks of `block` rows keep memory bounded; padded with
    inf / -1 to k columns."""
    n = queries.shape[0]
    penalised = np.where(mask, norms, np.inf).astype(np.float32)
    query_norms = np.einsum("ij,ij->i", queries, queries)[:, None]
    best = np.empty((n, 0), np.float32)
    best_rows = np.empty((n, 0), np.int64)
    for start in range(0, vectors.shape[0], block):
        squared = queries @ vectors[start:start + block].T
        squared *= -2
        squared += penalised[None, start:start + block]
        squared += query_norms
        width = min(k, squared.shape[1])
        top = np.argpartition(squared, width - 1, axis=1)[:, :width]
        best = np.concatenate([best, np.take_along_axis(squared, top, 1)], axis=1)
        best_rows = np.concatenate([best_rows, top + start], axis=1)
        if best.shape[1] > k:
            keep = np.argpartition(best, k - 1, axis=1)[:, :k]
            best, best_rows = np.take_along_axis(best, keep, 1), np.take_along_axis(best_rows, keep, 1)
    order = np.argsort(best, axis=1, kind="stable")
    best, best_rows = np.take_along_axis(best, order, 1), np.take_along_axis(best_rows, order, 1)
    distances = np.full((n, k), np.inf, np.float32)
    found = np.full((n, k), -1, np.int64)
    valid = np.isfinite(best)
    distances[:, :best.shape[1]] = np.where(valid, np.sqrt(np.maximum(best, 0)), np.inf)
    found[:, :best.shape[1]] = np.where(valid, ids[best_rows], -1)
    return distances, found


class ExactIndex(StoredInIndexFile, IIndex):
    """Every query is compared with every vector: exact results, for evaluation and small galleries.

    >>> import numpy as np
    >>> index = ExactIndex(dim=2)
    >>> index.add(np.array([[0, 0], [3, 4]], dtype=np.float32), np.array([10, 11]))
    >>> distances, ids = index.search(np.array([[0, 0]], dtype=np.float32), k=3)
    >>> ids.tolist(), distances[0, :2].tolist()
    ([[10, 11, -1]], [0.0, 5.0])
    """

    file_kind = "exact"
    file_kind_name = "an exact index"

    def __init__(
        self,
        dim: int,
        batch_size: int = 512,
        metadata: Optional[Dict[str, Any]] = None,
    ):
        if dim < 1:
            raise ValueError(f"dim must be positive, got {dim}")
        self.spec = EXACT_SPEC
        self.dim = int(dim)
        self.batch_size = batch_size
        self.metadata = dict(metadata or {})
        self._vectors = np.empty((0, self.dim), dtype=np.float32)
        self._ids = np.empty((0,), dtype=np.int64)
        self._size = 0
        self._norms: Optional[np.ndarray] = None  # squared row norms for masked searches, computed when first needed

    def __len__(self) -> int:
        return self._size

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        vectors = check_vectors(vectors, self.dim)
        ids = check_ids(ids, vectors.shape[0])
        if ids.size == 0:
            return
        clash = np.isin(ids, self._ids[: self._size])
        if clash.any():
            raise ValueError(f"ids already in the index: {ids[clash][:5].tolist()}")
        needed = self._size + ids.size
        if needed > self._vectors.shape[0]:
            capacity = max(needed, 2 * self._vectors.shape[0], 1024)
            grown_vectors = np.empty((capacity, self.dim), dtype=np.float32)
            grown_vectors[: self._size] = self._vectors[: self._size]
            grown_ids = np.empty((capacity,), dtype=np.int64)
            grown_ids[: self._size] = self._ids[: self._size]
            self._vectors, self._ids = grown_vectors, grown_ids
        self._vectors[self._size : needed] = vectors
        self._ids[self._size : needed] = ids
        self._size = needed
        self._norms = None

    def remove(self, ids: np.ndarray) -> int:
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        if ids.size == 0 or self._size == 0:
            return 0
        keep = ~np.isin(self._ids[: self._size], ids)
        removed = int(self._size - keep.sum())
        if removed:
            kept = int(keep.sum())
            self._vectors[:kept] = self._vectors[: self._size][keep]
            self._ids[:kept] = self._ids[: self._size][keep]
            self._size = kept
            self._norms = None
        return removed

    exact = True

    def search(self, queries: np.ndarray, k: int, **params: Any) -> Tuple[np.ndarray, np.ndarray]:
        if params:
            raise ValueError(f"the exact index takes no search parameters, got {sorted(params)}")
        queries = check_vectors(queries, self.dim, what="queries")
        return exact_subset_search(queries, check_k(k), self._vectors[: self._size], self._ids[: self._size],
                                   self.batch_size)

    def search_subset(self, queries: np.ndarray, k: int, ids: np.ndarray,
                      **params: Any) -> Tuple[np.ndarray, np.ndarray]:
        """The exact search among the vectors of `ids` only: a mask picks them out of the gallery before the search."""
        if params:
            raise ValueError(f"the exact index takes no search parameters, got {sorted(params)}")
        queries = check_vectors(queries, self.dim, what="queries")
        k = check_k(k)
        mask = np.isin(self._ids[: self._size], np.asarray(ids, dtype=np.int64))
        if mask.sum() < MASKED_SHARE * self._size:  # few rows: copy them out and search those
            return exact_subset_search(queries, k, self._vectors[: self._size][mask], self._ids[: self._size][mask],
                                       self.batch_size)
        if self._norms is None:
            vectors = self._vectors[: self._size]
            self._norms = np.einsum("ij,ij->i", vectors, vectors)
        return masked_search(queries, k, self._vectors[: self._size], self._ids[: self._size], mask, self._norms)

    def ids(self) -> np.ndarray:
        return np.sort(self._ids[: self._size])

    def vectors(self) -> Tuple[np.ndarray, np.ndarray]:
        """All stored `(vectors, ids)`, in insertion order (a copy)."""
        return self._vectors[: self._size].copy(), self._ids[: self._size].copy()

    def save(self, path: TPath) -> None:
        description = {"kind": "exact", "spec": self.spec, "dim": self.dim, "metadata": self.metadata}
        write_index_file(path, description, {"vectors": self._vectors[: self._size], "ids": self._ids[: self._size]})

    @classmethod
    def from_file_parts(cls, path: TPath, description: Dict[str, Any], sections: Dict[str, np.ndarray]) -> "ExactIndex":
        """Build the index from what `read_index_file` returned for `path`."""
        cls.check_kind(path, description)
        index = cls(dim=int(description["dim"]), metadata=description.get("metadata"))
        vectors, ids = sections["vectors"], sections["ids"]
        if vectors.shape != (ids.shape[0], index.dim):
            raise IndexCorruptError(path, f"vectors of shape {vectors.shape} do not match {ids.shape[0]} ids")
        index._vectors, index._ids, index._size = vectors, ids, int(ids.shape[0])
        return index


__all__ = ["ExactIndex", "EXACT_SPEC", "exact_subset_search", "masked_search"]
