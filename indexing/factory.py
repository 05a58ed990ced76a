"""`make_index(spec, dim)` and `load_index(path)`: one door to every index engine."""

from pathlib import Path
from typing import Any

from indexing.errors import IndexCorruptError
from indexing.exact_index import EXACT_SPEC, ExactIndex
from indexing.faiss_index import FaissIndex
from indexing.index_file import read_index_file
from indexing.interfaces import IIndex
from oml.const import TPath


def make_index(spec: str, dim: int, **options: Any) -> IIndex:
    """An empty index: `"exact"` for brute force, else a FAISS factory string (`"Flat"`, `"HNSW32"`, `"IVF1024,PQ32"`).

    `options` go to the engine (`FaissIndex`: `train_size`, `nprobe`, `ef_search`, `max_tombstone_fraction`).
    """
    if isinstance(spec, str) and spec.strip().lower() == EXACT_SPEC:
        return ExactIndex(dim, **options)
    return FaissIndex(spec, dim, **options)


def load_index(path: TPath) -> IIndex:
    """Read any index written by `IIndex.save`; raises `IndexCorruptError` naming the file when it is damaged."""
    description, sections = read_index_file(path)
    kind = description.get("kind")
    if kind == "exact":
        return ExactIndex.from_file_parts(path, description, sections)
    if kind == "faiss":
        return FaissIndex.from_file_parts(path, description, sections)
    raise IndexCorruptError(Path(path), f"unknown index kind {kind!r}")


__all__ = ["make_index", "load_index"]
