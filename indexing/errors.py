"""Exceptions of the indexing package: every bad input or bad file gets one that names the problem."""

import errno
import shutil
import sqlite3
from pathlib import Path
from typing import Optional, Union


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


class InsufficientStorageError(GalleryError):
    """The data disk is full (ENOSPC, EDQUOT, SQLITE_FULL): the write was not made, nothing stored was harmed, and
    writes work again once space is freed. The message names no file path."""


_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}


def storage_full_cause(error: BaseException, folder: Optional[Path] = None) -> Optional[BaseException]:
    """The error in `error`'s chain (itself, its cause or context) that says the disk is full, else None.

    SQLite reports a full disk as SQLITE_FULL, or as SQLITE_IOERR when it cannot even create its WAL/shm files; the
    latter counts as full only when `folder`'s file system has (almost) no space left.
    """
    seen = set()
    current: Optional[BaseException] = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, InsufficientStorageError):
            return current
        if isinstance(current, OSError) and current.errno in _FULL_ERRNOS:
            return current
        if isinstance(current, sqlite3.DatabaseError):
            code = getattr(current, "sqlite_errorcode", None)
            if code == sqlite3.SQLITE_FULL or "database or disk is full" in str(current):
                return current
            if folder is not None and (code is not None and code & 0xFF == sqlite3.SQLITE_IOERR) and _nearly_full(folder):
                return current
        current = current.__cause__ or current.__context__
    return None


def _nearly_full(folder: Path, margin_bytes: int = 1 << 20) -> bool:
    try:
        return shutil.disk_usage(folder).free < margin_bytes
    except OSError:
        return False


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
    "InsufficientStorageError",
    "storage_full_cause",
]
