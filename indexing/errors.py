"""Exceptions of the indexing package: every bad input or bad file gets one that names the problem."""

from pathlib import Path
from typing import Union


class IndexingError(ValueError):
    """Base class of every error raised by `indexing`."""


class IndexSpecError(IndexingError):
    """An index spec string that names no supported index."""


class GalleryError(IndexingError):
    """Something is wrong with a gallery or with how it is used."""


class InvalidGalleryNameError(GalleryError):
    """A gallery name that is not a safe folder name."""


class GalleryNotFoundError(GalleryError):
    """No gallery of that name exists in the data folder."""


class GalleryExistsError(GalleryError):
    """A gallery of that name already exists."""


class ModelMismatchError(GalleryError):
    """Embeddings or an extractor whose size or model differ from what the gallery holds."""


class GalleryCorruptError(GalleryError):
    """A gallery file (manifest, item store or index) that cannot be read back."""

    def __init__(self, path: Union[str, Path], reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class IndexCorruptError(GalleryCorruptError):
    """An index file that is truncated, altered or not an index file at all."""


__all__ = [
    "IndexingError",
    "IndexSpecError",
    "GalleryError",
    "InvalidGalleryNameError",
    "GalleryNotFoundError",
    "GalleryExistsError",
    "ModelMismatchError",
    "GalleryCorruptError",
    "IndexCorruptError",
]
