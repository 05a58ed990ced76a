"""`ExactIndex`: brute-force Euclidean search on the batched kNN of `oml.functional.knn`."""

from typing import Any, Dict, Optional, Tuple

import numpy as np

from indexing.errors import IndexCorruptError
from indexing.index_file import StoredInIndexFile, write_index_file
from indexing.interfaces import IIndex, check_ids, check_k, check_vectors
from oml.const import TPath

EXACT_SPEC = "exact"


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
        return removed

    def search(self, queries: np.ndarray, k: int, **params: Any) -> Tuple[np.ndarray, np.ndarray]:
        if params:
            raise ValueError(f"the exact index takes no search parameters, got {sorted(params)}")
        queries = check_vectors(queries, self.dim, what="queries")
        k = check_k(k)
        distances = np.full((queries.shape[0], k), np.inf, dtype=np.float32)
        ids = np.full((queries.shape[0], k), -1, dtype=np.int64)
        if self._size == 0 or queries.shape[0] == 0:
            return distances, ids
        from oml.functional.knn import exact_knn

        # exact_knn walks the gallery in blocks, so memory stays bounded whatever the batch of queries
        found_distances, found_positions = exact_knn(
            queries, self._vectors[: self._size], top_n=min(k, self._size), bs=self.batch_size, check_finite=False
        )
        n_found = found_positions.shape[1]
        distances[:, :n_found] = found_distances.numpy()
        ids[:, :n_found] = self._ids[: self._size][found_positions.numpy()]
        return distances, ids

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


__all__ = ["ExactIndex", "EXACT_SPEC"]
