"""Queries that are already embeddings: vectors a client sends (checked against the gallery's model and normalised
like its embeddings) and the stored embeddings of items named by key ("more like this")."""

from dataclasses import dataclass
from typing import Any, List, Optional, Sequence

import numpy as np

from server.errors import InvalidInputError
from server.galleries import GalleryService, ItemNotFound, VersionChanged


@dataclass(frozen=True)
class KeyQuery:
    """A stored item searched with: its key, and what a reranker would read of it (its text, or its file)."""

    key: str
    text: Optional[str]
    path: Optional[str]


def check_query_vectors(rows: Sequence[Sequence[float]], gallery: str, size: int, normalised: bool,
                        where: str) -> np.ndarray:
    """`rows` as a float32 (n, size) array, each row of the gallery's embedding size and finite, scaled to unit length
    when the gallery's model gives unit-length embeddings; else `InvalidInputError` naming the row."""
    for i, row in enumerate(rows):
        if len(row) != size:
            raise InvalidInputError(f"{_name(where, i, len(rows))} has {len(row)} numbers; gallery {gallery!r} holds "
                                    f"embeddings of size {size}", code="wrong_vector_size")
    vectors = np.asarray(rows, dtype=np.float64).reshape(len(rows), size)
    with np.errstate(over="ignore"):
        single = vectors.astype(np.float32)
    bad = ~np.isfinite(single)
    if bad.any():
        i, j = (int(x) for x in np.argwhere(bad)[0])
        raise InvalidInputError(f"{_name(where, i, len(rows))}[{j}] is {float(vectors[i, j])}; query vectors must be "
                                "finite float32 numbers", code="non_finite_vector")
    if normalised:
        norms = np.linalg.norm(vectors, axis=1)
        zero = np.flatnonzero(norms == 0)
        if zero.size:
            raise InvalidInputError(f"{_name(where, int(zero[0]), len(rows))} is all zeros; gallery {gallery!r} holds "
                                    "unit-length embeddings and a zero vector has no direction",
                                    code="zero_vector")
        single = (vectors / norms[:, None]).astype(np.float32)
    return np.ascontiguousarray(single)


def _name(where: str, i: int, n: int) -> str:
    return f"{where}[{i}]" if where.endswith("s") else where


def key_queries(galleries: GalleryService, name: str, keys: Sequence[str]) -> List[KeyQuery]:
    """The stored items of `keys`; `ItemNotFound` naming the first unknown key."""
    gallery = galleries.gallery(name)
    found = []
    for key in keys:
        item = gallery.get(key)
        if item is None:
            raise ItemNotFound(f"gallery {name!r} has no item with key {key!r} to search with")
        found.append(KeyQuery(key=key, text=item.text, path=item.path))
    return found


def stored_vectors(galleries: GalleryService, name: str, keys: Sequence[str], version: int) -> np.ndarray:
    """The stored embeddings (model version `version`) of the items of `keys`; `ItemNotFound` for a key deleted
    meanwhile, `VersionChanged` when the gallery moved to another version while they were read."""
    gallery = galleries.gallery(name)
    rows: List[Any] = []
    if int(gallery.manifest.model_version) == version:
        for key in keys:
            vector = gallery.get_embedding(key)
            if vector is None:
                raise ItemNotFound(f"gallery {name!r} has no item with key {key!r} to search with")
            rows.append(vector)
        if int(gallery.manifest.model_version) == version:
            return np.stack(rows).astype(np.float32)
    raise VersionChanged(f"gallery {name!r} is no longer on version {version}")


__all__ = ["KeyQuery", "check_query_vectors", "key_queries", "stored_vectors"]
