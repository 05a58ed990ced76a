"""`make_index(spec, dim)` and `load_index(path)`: one door to every index engine."""

from pathlib import Path
from typing import Any

from indexing.errors import IndexCorruptError
from indexing.exact_index import EXACT_SPEC, ExactIndex
from indexing.faiss_index import FaissIndex
from indexing.index_file import read_index_file
from indexing.interfaces import IIndex
from oml.const import TPath

ENGINES_BY_FILE_KIND = {engine.file_kind: engine for engine in (ExactIndex, FaissIndex)}


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
    engine = ENGINES_BY_FILE_KIND.get(description.get("kind"))
    if engine is None:
        raise IndexCorruptError(Path(path), f"unknown index kind {description.get('kind')!r}")
    return engine.from_file_parts(path, description, sections)


__all__ = ["make_index", "load_index"]
