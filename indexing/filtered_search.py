"""Filtered search in a local gallery: the filter is applied inside the index search, so `k` hits come back
whenever `k` items match.

1. The item store selects the matching ids (labels by their SQL index, payload conditions by SQLite's JSON1); the
   answer is cached per filter, store revision and embedding generation.
2. A small matching set (at most `exact_subset_max` items) is searched exactly among the stored embeddings of those
   items (cached with the ids), whatever the engine.
3. A larger one: exact engines (`exact`, `Flat`, untrained IVF) search with a mask or an id selector, exact among the
   matching items; approximate engines with an id selector inside FAISS's search. A query for which the approximate
   search found fewer than `min(k, matching)` hits is searched exactly among the matching items, so the count promise
   holds for every index.
"""

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

import numpy as np

from indexing.exact_index import masked_search
from indexing.filters import SearchFilter
from indexing.interfaces import IIndex, IItemStore

EXACT_SUBSET_MAX = 5000
CACHE_ENTRIES = 8


@dataclass
class _Matching:
    """The ids of the items that pass one filter, and (for small sets, once asked for) their embeddings."""

    ids: np.ndarray
    vectors: Optional[Tuple[np.ndarray, np.ndarray, np.ndarray]] = None  # (vectors, ids, squared norms)


class FilteredSearcher:
    """Answers filtered searches over one gallery's index and store (the caller holds the gallery's shared lock)."""

    def __init__(self, store: IItemStore, exact_subset_max: int = EXACT_SUBSET_MAX, cache_entries: int = CACHE_ENTRIES):
        self.store = store
        self.exact_subset_max = exact_subset_max
        self.cache_entries = cache_entries
        self._cache: "OrderedDict[Tuple[str, int, int], _Matching]" = OrderedDict()
        self._lock = threading.Lock()

    def matching(self, filter: SearchFilter, generation: int) -> _Matching:
        """The items passing `filter` now (cached until the store's next write)."""
        key = (filter.key, self.store.revision(), generation)
        with self._lock:
            found = self._cache.get(key)
            if found is not None:
                self._cache.move_to_end(key)
                return found
        found = _Matching(self.store.ids_matching(filter))
        with self._lock:
            self._cache[key] = found
            while len(self._cache) > self.cache_entries:
                self._cache.popitem(last=False)
        return found

    def _vectors(self, matching: _Matching, generation: int, dim: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The stored embeddings of the matching items, `(vectors, ids, squared norms)`; kept with the ids when the
        set is small."""
        if matching.vectors is not None:
            return matching.vectors
        ids, vectors = [], []
        for part_ids, part_vectors in self.store.iter_vectors(generation, dim, item_ids=matching.ids):
            ids.append(part_ids)
            vectors.append(part_vectors)
        found_ids = np.concatenate(ids) if ids else np.empty((0,), np.int64)
        found = np.concatenate(vectors) if vectors else np.empty((0, dim), np.float32)
        result = (found, found_ids, np.einsum("ij,ij->i", found, found))
        if found_ids.size == matching.ids.size and matching.ids.size <= self.exact_subset_max:
            matching.vectors = result  # complete (no item deleted since): keep it
        return result

    def search(self, index: IIndex, queries: np.ndarray, k: int, filter: SearchFilter, generation: int,
               params: Dict[str, Any]) -> Tuple[np.ndarray, np.ndarray]:
        """`(distances, ids)` of the `k` nearest matching items per query, padded with inf / -1."""
        matching = self.matching(filter, generation)
        n_queries = queries.shape[0]
        if matching.ids.size == 0:
            return np.full((n_queries, k), np.inf, np.float32), np.full((n_queries, k), -1, np.int64)

        def exact_subset(rows: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
            vectors, ids, norms = self._vectors(matching, generation, index.dim)
            return masked_search(rows, k, vectors, ids, np.ones(ids.size, bool), norms)

        if matching.ids.size <= self.exact_subset_max:
            return exact_subset(queries)
        if index.exact:
            return index.search_subset(queries, k, matching.ids, **params)
        try:
            distances, ids = index.search_subset(queries, k, matching.ids, **params)
        except NotImplementedError:
            return exact_subset(queries)
        short = (ids >= 0).sum(axis=1) < min(k, matching.ids.size)
        if short.any():
            distances[short], ids[short] = exact_subset(queries[short])
        return distances, ids


__all__ = ["FilteredSearcher", "EXACT_SUBSET_MAX"]
