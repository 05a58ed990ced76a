"""Copies of items' source files (e.g. uploaded images) kept in a gallery's `files/` folder."""

import hashlib
import re
import uuid
from pathlib import Path
from typing import Iterable, Optional

from indexing.layout import FILES_DIR
from oml.utils.atomic import atomic_write_bytes

_SUFFIX_RE = re.compile(r"^[A-Za-z0-9]{1,10}$")


def store_source_file(gallery_folder: Path, key: str, data: bytes, suffix: str) -> Path:
    """Write `data` atomically to `files/<hash of key>[:2]/<hash of key>.<random>.<suffix>` and return that path.

    The name comes from the key's SHA-256, so any key is safe; `suffix` must be 1-10 letters or digits. Every upload
    gets a file of its own, so a new upload for a stored key never overwrites the file the stored item points to:
    until the write naming the new file commits (then `drop_replaced_files` removes the old one), a crash or a
    failed write leaves the stored item with its own file.
    """
    suffix = suffix.lstrip(".")
    if not _SUFFIX_RE.match(suffix):
        raise ValueError(f"file suffix must be 1-10 letters or digits, got {suffix!r}")
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()
    folder = gallery_folder / FILES_DIR / digest[:2]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{digest}.{uuid.uuid4().hex[:16]}.{suffix.lower()}"
    atomic_write_bytes(path, data)
    return path


def drop_replaced_files(gallery_folder: Path, old_paths: Iterable[Optional[str]], kept: Iterable[Optional[str]] = ()
                        ) -> None:
    """Delete the files of items that a committed write replaced or deleted (only files under `files/`, and not
    those `kept` names); a file that cannot be deleted is left behind."""
    root = (gallery_folder / FILES_DIR).resolve()
    keep = {str(Path(path).resolve()) for path in kept if path}
    for path in {Path(p).resolve() for p in old_paths if p}:
        if str(path) in keep or not path.is_relative_to(root):
            continue
        try:
            path.unlink(missing_ok=True)
        except OSError:
            continue


__all__ = ["store_source_file", "drop_replaced_files"]
