"""Copies of items' source files (e.g. uploaded images) kept in a gallery's `files/` folder."""

import hashlib
import re
from pathlib import Path

from indexing.layout import FILES_DIR
from oml.utils.atomic import atomic_write_bytes

_SUFFIX_RE = re.compile(r"^[A-Za-z0-9]{1,10}$")


def store_source_file(gallery_folder: Path, key: str, data: bytes, suffix: str) -> Path:
    """Write `data` atomically to `files/<hash of key>[:2]/<hash of key>.<suffix>` and return that path.

    The name comes from the key's SHA-256, so any key is safe; `suffix` must be 1-10 letters or digits.
    """
    suffix = suffix.lstrip(".")
    if not _SUFFIX_RE.match(suffix):
        raise ValueError(f"file suffix must be 1-10 letters or digits, got {suffix!r}")
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()
    folder = gallery_folder / FILES_DIR / digest[:2]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{digest}.{suffix.lower()}"
    atomic_write_bytes(path, data)
    return path


__all__ = ["store_source_file"]
