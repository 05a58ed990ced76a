"""Galleries of embeddings: exact and FAISS indexes, a SQLite item store, crash-safe bulk indexing."""

from indexing.errors import (
    GalleryCorruptError,
    GalleryError,
    GalleryExistsError,
    GalleryNotFoundError,
    IndexCorruptError,
    IndexingError,
    IndexSpecError,
    InvalidGalleryNameError,
    ModelMismatchError,
)
from indexing.exact_index import ExactIndex
from indexing.factory import load_index, make_index
from indexing.faiss_index import FaissIndex
from indexing.gallery import Gallery
from indexing.interfaces import IIndex, IItemStore
from indexing.items import Hit, Item, StoredItem
from indexing.layout import delete_gallery, list_galleries


def bulk_index(*args, **kwargs):  # noqa: D103 - documented in indexing.bulk
    from indexing.bulk import bulk_index as _bulk_index

    return _bulk_index(*args, **kwargs)


__all__ = [
    "IIndex",
    "IItemStore",
    "ExactIndex",
    "FaissIndex",
    "make_index",
    "load_index",
    "Gallery",
    "list_galleries",
    "delete_gallery",
    "Item",
    "StoredItem",
    "Hit",
    "bulk_index",
    "IndexingError",
    "IndexSpecError",
    "GalleryError",
    "GalleryNotFoundError",
    "GalleryExistsError",
    "InvalidGalleryNameError",
    "ModelMismatchError",
    "GalleryCorruptError",
    "IndexCorruptError",
]
