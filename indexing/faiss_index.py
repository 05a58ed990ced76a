"""`FaissIndex`: approximate (or flat) search with FAISS, named by a factory string.

- `Flat`, `HNSW32`, `IVF1024,Flat`, `IVF1024,PQ32` (and most other L2 factory strings).
- Indexes that need training (IVF, PQ) hold their vectors in a flat, exact stage until `train_size` vectors exist
  (39 per IVF list, as FAISS's k-means asks), then train once on a sample of them and move every vector over.
- Removal: FAISS `remove_ids` for flat and IVF indexes. HNSW graphs cannot drop nodes, so removed ids become
  tombstones, skipped inside the graph search by an id selector; once tombstones pass `max_tombstone_fraction`
  of the graph, the graph is rebuilt from the live vectors.
- Distances are Euclidean: FAISS reports squared L2, so they are square-rooted here.
"""

import logging
import math
import re
from typing import Any, Dict, Optional, Tuple

import numpy as np

from indexing.errors import IndexCorruptError, IndexSpecError
from indexing.index_file import StoredInIndexFile, write_index_file
from indexing.interfaces import IIndex, check_ids, check_k, check_vectors
from oml.const import TPath
from oml.utils.faiss_setup import faiss

LOGGER = logging.getLogger(__name__)

_IVF_RE = re.compile(r"IVF(\d+)")
_PQ_RE = re.compile(r"PQ(\d+)(?:x(\d+))?")
_MIN_POINTS_PER_CENTROID = 39
_DEFAULT_EF_SEARCH = 64
_TRAIN_POINTS_PER_LIST = 100  # k-means sample: FAISS asks for 39 to 256 points per centroid
_ADD_BATCH = 65536
SUBSET_EF_MAX = 1024  # the widest HNSW search a filtered search asks for


def _flat_stage(dim: int) -> faiss.Index:
    return faiss.IndexIDMap2(faiss.IndexFlatL2(dim))


class FaissIndex(StoredInIndexFile, IIndex):
    """A FAISS index with ids, removal, per-search `nprobe` / `efSearch`, and checksummed atomic saves.

    >>> import numpy as np
    >>> index = FaissIndex("HNSW32", dim=4)
    >>> index.add(np.eye(4, dtype=np.float32), np.array([7, 8, 9, 10]))
    >>> index.remove(np.array([7]))
    1
    >>> index.search(np.eye(4, dtype=np.float32)[:1], k=2, efSearch=32)[1].shape
    (1, 2)
    """

    file_kind = "faiss"
    file_kind_name = "a FAISS index"

    def __init__(
        self,
        spec: str,
        dim: int,
        *,
        train_size: Optional[int] = None,
        nprobe: Optional[int] = None,
        ef_search: int = _DEFAULT_EF_SEARCH,
        max_tombstone_fraction: float = 0.25,
        metadata: Optional[Dict[str, Any]] = None,
    ):
        if dim < 1:
            raise ValueError(f"dim must be positive, got {dim}")
        self.spec = spec
        self.dim = int(dim)
        self.metadata = dict(metadata or {})
        template = self._new_template()
        ivf = faiss.try_extract_index_ivf(template)
        self.is_ivf = ivf is not None
        self.nlist = int(ivf.nlist) if ivf is not None else 0
        self.is_hnsw = isinstance(faiss.downcast_index(template), faiss.IndexHNSW)
        self.needs_training = not template.is_trained
        self.train_size = int(train_size) if train_size is not None else self._default_train_size()
        self.nprobe = int(nprobe) if nprobe is not None else max(1, min(self.nlist, round(self.nlist**0.5)))
        self.ef_search = int(ef_search)
        self.max_tombstone_fraction = float(max_tombstone_fraction)
        self.trained = not self.needs_training
        self._index = self._wrap(template) if self.trained else _flat_stage(self.dim)
        self._live = np.empty((0,), dtype=np.int64)
        self._tombstones = np.empty((0,), dtype=np.int64)
        self._tombstone_selector: Optional[faiss.IDSelector] = None
        self._subset_selector: Optional[Tuple[np.ndarray, int, faiss.IDSelector]] = None

    def _new_template(self) -> faiss.Index:
        if not isinstance(self.spec, str) or not self.spec.strip():
            raise IndexSpecError(f"index spec must be a non-empty string, got {self.spec!r}")
        if "IDMap" in self.spec:
            raise IndexSpecError(f"index spec {self.spec!r}: leave out IDMap, ids are always kept")
        try:
            index = faiss.index_factory(self.dim, self.spec, faiss.METRIC_L2)
        except RuntimeError as error:
            first_line = str(error).strip().splitlines()[-1] if str(error).strip() else str(error)
            raise IndexSpecError(f"unknown FAISS index spec {self.spec!r}: {first_line}") from error
        ivf = faiss.try_extract_index_ivf(index)
        if ivf is not None and isinstance(faiss.downcast_index(ivf), faiss.IndexIVFPQ):
            ivf = faiss.downcast_index(ivf)
            ivf.do_polysemous_training = False  # slow, and only for Hamming-filtered search, which is never used here
        return index

    def _default_train_size(self) -> int:
        if not self.needs_training:
            return 0
        centroids = self.nlist
        match = _PQ_RE.search(self.spec)
        if match:
            centroids = max(centroids, 2 ** int(match.group(2) or 8))
        return _MIN_POINTS_PER_CENTROID * max(centroids, 1)

    @staticmethod
    def _wrap(raw: faiss.Index) -> faiss.Index:
        if faiss.try_extract_index_ivf(raw) is not None:
            return raw  # IVF indexes keep ids themselves and support remove_ids
        wrapped = faiss.IndexIDMap2(raw)
        wrapped.own_fields = True
        raw.this.disown()  # the id map now owns (and frees) the inner index
        return wrapped

    def __len__(self) -> int:
        return int(self._live.size)

    @property
    def n_tombstones(self) -> int:
        return int(self._tombstones.size)

    def ids(self) -> np.ndarray:
        return self._live.copy()

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        vectors = check_vectors(vectors, self.dim)
        ids = check_ids(ids, vectors.shape[0])
        if ids.size == 0:
            return
        clash = np.isin(ids, self._live) | np.isin(ids, self._tombstones)
        if clash.any():
            raise ValueError(f"ids already in the index: {ids[clash][:5].tolist()}")
        if not self.trained and len(self) + ids.size >= self.train_size:
            staged_vectors, staged_ids = self._all_vectors()
            if staged_ids.size:
                vectors, ids = np.concatenate([staged_vectors, vectors]), np.concatenate([staged_ids, ids])
            self._train_and_add(vectors, ids)
        else:
            self._add_in_batches(vectors, ids)
        self._live = np.union1d(self._live, ids)

    def _add_in_batches(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        for start in range(0, ids.size, _ADD_BATCH):
            self._index.add_with_ids(vectors[start : start + _ADD_BATCH], ids[start : start + _ADD_BATCH])

    def _all_vectors(self) -> Tuple[np.ndarray, np.ndarray]:
        """Vectors and ids of an id-mapped index (flat stage or HNSW), tombstones included."""
        index = faiss.downcast_index(self._index)
        ids = faiss.vector_to_array(index.id_map).astype(np.int64)
        vectors = index.index.reconstruct_n(0, index.ntotal) if ids.size else np.empty((0, self.dim), np.float32)
        return vectors, ids

    def _train_and_add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        """Train on a sample of `vectors` (the staged ones included), then hold every vector in the trained index."""
        rng = np.random.default_rng(0)
        sample_size = min(ids.size, max(self.train_size, _TRAIN_POINTS_PER_LIST * max(self.nlist, 1)))
        sample = vectors[np.sort(rng.choice(ids.size, size=sample_size, replace=False))] if sample_size < ids.size else vectors
        LOGGER.info("training FAISS %r on %d of %d vectors", self.spec, sample.shape[0], ids.size)
        trained = self._new_template()
        trained.train(sample)
        self._index = self._wrap(trained)
        self.trained = True
        self._add_in_batches(vectors, ids)

    def remove(self, ids: np.ndarray) -> int:
        ids = np.unique(np.asarray(ids, dtype=np.int64).reshape(-1))
        present = ids[np.isin(ids, self._live)]
        if present.size == 0:
            return 0
        if self.trained and self.is_hnsw:
            self._tombstones = np.union1d(self._tombstones, present)
            self._tombstone_selector = None
        else:
            self._index.remove_ids(faiss.IDSelectorBatch(present))
        self._live = np.setdiff1d(self._live, present, assume_unique=True)
        if self._tombstones.size and self._tombstones.size > self.max_tombstone_fraction * self._index.ntotal:
            self.compact()
        return int(present.size)

    def compact(self) -> None:
        """Rebuild an HNSW graph from its live vectors, dropping tombstones."""
        if not self._tombstones.size:
            return
        vectors, ids = self._all_vectors()
        keep = ~np.isin(ids, self._tombstones)
        LOGGER.info("rebuilding HNSW %r: %d live vectors, %d tombstones", self.spec, keep.sum(), self._tombstones.size)
        self._index = self._wrap(self._new_template())
        self._tombstones = np.empty((0,), dtype=np.int64)
        self._tombstone_selector = None
        self._index.add_with_ids(np.ascontiguousarray(vectors[keep]), np.ascontiguousarray(ids[keep]))

    def _search_parameters(self, params: Dict[str, Any]) -> Optional[faiss.SearchParameters]:
        params = dict(params)
        nprobe = params.pop("nprobe", None)
        ef_search = params.pop("efSearch", params.pop("ef_search", None))
        if params:
            raise ValueError(f"unknown search parameters {sorted(params)}; FAISS indexes take nprobe or efSearch")
        if nprobe is not None and not self.is_ivf:
            raise ValueError(f"nprobe applies to IVF indexes only, this index is {self.spec!r}")
        if ef_search is not None and not self.is_hnsw:
            raise ValueError(f"efSearch applies to HNSW indexes only, this index is {self.spec!r}")
        for name, value in (("nprobe", nprobe), ("efSearch", ef_search)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1):
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not self.trained:
            return None
        if self.is_ivf:
            return faiss.SearchParametersIVF(nprobe=int(min(nprobe or self.nprobe, self.nlist)))
        if self.is_hnsw:
            parameters = faiss.SearchParametersHNSW(efSearch=int(ef_search or self.ef_search))
            if self._tombstones.size:
                selector = self._tombstone_selector
                if selector is None:
                    removed = faiss.IDSelectorBatch(self._tombstones)
                    selector = faiss.IDSelectorNot(removed)
                    selector.keep_alive = removed
                    self._tombstone_selector = selector
                parameters.sel = selector
                parameters.keep_alive = selector  # SWIG does not reference `sel`: the caller must keep it alive
            return parameters
        return None

    def search(self, queries: np.ndarray, k: int, **params: Any) -> Tuple[np.ndarray, np.ndarray]:
        queries = check_vectors(queries, self.dim, what="queries")
        k = check_k(k)
        parameters = self._search_parameters(params)
        if queries.shape[0] == 0 or len(self) == 0:
            return np.full((queries.shape[0], k), np.inf, np.float32), np.full((queries.shape[0], k), -1, np.int64)
        squared, ids = self._index.search(queries, k, params=parameters)
        distances = np.sqrt(np.maximum(squared, 0.0, dtype=np.float32), dtype=np.float32)
        distances[ids < 0] = np.inf
        return distances, ids.astype(np.int64, copy=False)

    @property
    def exact(self) -> bool:  # type: ignore[override]
        """Flat indexes (and IVF/PQ ones before training, still flat) search exactly."""
        return not self.trained or self.spec.strip() == "Flat"

    def search_subset(self, queries: np.ndarray, k: int, ids: np.ndarray,
                      **params: Any) -> Tuple[np.ndarray, np.ndarray]:
        """As `search`, among `ids` only: an `IDSelectorBatch` inside FAISS's search skips every other vector.

        With a selector an HNSW search keeps exploring past vectors it may not return, so its breadth (`efSearch`)
        grows as the share of matching vectors shrinks (`ef / sqrt(share)`, at most `SUBSET_EF_MAX`); an index type
        whose search takes no selector raises `NotImplementedError`.
        """
        queries = check_vectors(queries, self.dim, what="queries")
        k = check_k(k)
        allowed = np.asarray(ids, dtype=np.int64)
        if self._tombstones.size:
            allowed = allowed[~np.isin(allowed, self._tombstones)]
        if queries.shape[0] == 0 or allowed.size == 0 or len(self) == 0:
            return np.full((queries.shape[0], k), np.inf, np.float32), np.full((queries.shape[0], k), -1, np.int64)
        parameters = self._search_parameters({**params, **self._subset_breadth(params, k, allowed.size)})
        selector = self._selector_of(ids, allowed)
        if parameters is None:
            parameters = faiss.SearchParameters()
        parameters.sel = selector
        parameters.keep_alive = selector  # SWIG does not reference `sel`
        try:
            squared, found = self._index.search(queries, k, params=parameters)
        except RuntimeError as error:
            raise NotImplementedError(f"FAISS index {self.spec!r} cannot search with an id selector: "
                                      f"{str(error).strip().splitlines()[-1]}") from error
        distances = np.sqrt(np.maximum(squared, 0.0, dtype=np.float32), dtype=np.float32)
        distances[found < 0] = np.inf
        return distances, found.astype(np.int64, copy=False)

    def _selector_of(self, ids: np.ndarray, allowed: np.ndarray) -> faiss.IDSelector:
        """An `IDSelectorBatch` of `allowed`, reused while the caller passes the same `ids` array again (a filter's
        cached matching ids) and no id was removed meanwhile."""
        cached = self._subset_selector
        if cached is not None and cached[0] is ids and cached[1] == self._tombstones.size:
            return cached[2]
        selector = faiss.IDSelectorBatch(allowed)
        self._subset_selector = (ids, self._tombstones.size, selector)  # holds `ids`, so its identity stays unique
        return selector

    def _subset_breadth(self, params: Dict[str, Any], k: int, n_allowed: int) -> Dict[str, Any]:
        """The `efSearch` of an HNSW search restricted to `n_allowed` of the index's vectors."""
        if not (self.trained and self.is_hnsw):
            return {}
        base = params.get("efSearch", params.get("ef_search")) or self.ef_search
        share = max(n_allowed / max(len(self), 1), 1e-6)
        return {"efSearch": int(min(max(SUBSET_EF_MAX, base), max(base, k, math.ceil(base / math.sqrt(share)))))}

    def save(self, path: TPath) -> None:
        description = {
            "kind": "faiss",
            "spec": self.spec,
            "dim": self.dim,
            "trained": self.trained,
            "train_size": self.train_size,
            "nprobe": self.nprobe,
            "ef_search": self.ef_search,
            "max_tombstone_fraction": self.max_tombstone_fraction,
            "metadata": self.metadata,
        }
        sections = {"faiss": faiss.serialize_index(self._index), "ids": self._live, "tombstones": self._tombstones}
        write_index_file(path, description, sections)

    @classmethod
    def from_file_parts(cls, path: TPath, description: Dict[str, Any], sections: Dict[str, np.ndarray]) -> "FaissIndex":
        """Build the index from what `read_index_file` returned for `path`."""
        cls.check_kind(path, description)
        index = cls(
            description["spec"],
            int(description["dim"]),
            train_size=description["train_size"],
            nprobe=description["nprobe"],
            ef_search=description["ef_search"],
            max_tombstone_fraction=description["max_tombstone_fraction"],
            metadata=description.get("metadata"),
        )
        try:
            index._index = faiss.deserialize_index(np.ascontiguousarray(sections["faiss"]))
        except RuntimeError as error:
            raise IndexCorruptError(path, f"FAISS cannot read the index: {str(error)[:200]}") from error
        index.trained = bool(description["trained"])
        index._live = sections["ids"]
        index._tombstones = sections["tombstones"]
        if index._index.ntotal != index._live.size + index._tombstones.size or index._index.d != index.dim:
            raise IndexCorruptError(path, "the FAISS index does not match its id list")
        return index


__all__ = ["FaissIndex"]
