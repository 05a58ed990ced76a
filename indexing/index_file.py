"""The on-disk container of an index: header, JSON description, named array sections, SHA-256 trailer.

Layout: MAGIC (8 bytes) | format version (u32) | JSON length (u64) | JSON | sections | sha256 of all before (32 bytes).
The trailer makes truncation and bit rot detectable before any engine parses the bytes.
"""

import hashlib
import json
import struct
from pathlib import Path
from typing import Any, Dict, Tuple

import numpy as np

from indexing.errors import IndexCorruptError
from oml.const import TPath
from oml.utils.atomic import atomic_writer

MAGIC = b"OMLINDEX"
FORMAT_VERSION = 1
_HEAD = struct.Struct("<8sIQ")
_DIGEST_SIZE = 32


def write_index_file(path: TPath, description: Dict[str, Any], sections: Dict[str, np.ndarray]) -> None:
    """Write `description` (JSON-able) and the arrays in `sections` to `path` atomically."""
    layout = []
    offset = 0
    for name, array in sections.items():
        array = np.ascontiguousarray(array)
        layout.append({"name": name, "dtype": array.dtype.str, "shape": list(array.shape), "offset": offset})
        offset += array.nbytes
    meta = json.dumps({"description": description, "sections": layout}).encode("utf-8")
    digest = hashlib.sha256()
    with atomic_writer(path) as handle:
        for chunk in (_HEAD.pack(MAGIC, FORMAT_VERSION, len(meta)), meta):
            digest.update(chunk)
            handle.write(chunk)
        for array in sections.values():
            data = memoryview(np.ascontiguousarray(array).reshape(-1).view(np.uint8))
            digest.update(data)
            handle.write(data)
        handle.write(digest.digest())


def read_index_file(path: TPath) -> Tuple[Dict[str, Any], Dict[str, np.ndarray]]:
    """Read a file written by `write_index_file`; raise `IndexCorruptError` naming the file if it is damaged."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise
    except OSError as error:
        raise IndexCorruptError(path, f"cannot read index file: {error}") from error
    if len(raw) < _HEAD.size + _DIGEST_SIZE or raw[:8] != MAGIC:
        raise IndexCorruptError(path, "not an oml-server index file (bad header or truncated)")
    body, trailer = memoryview(raw)[:-_DIGEST_SIZE], raw[-_DIGEST_SIZE:]
    if hashlib.sha256(body).digest() != trailer:
        raise IndexCorruptError(path, "checksum mismatch: the index file is truncated or corrupt")
    _, version, meta_len = _HEAD.unpack_from(raw, 0)
    if version != FORMAT_VERSION:
        raise IndexCorruptError(path, f"unsupported index file format version {version}")
    meta_end = _HEAD.size + meta_len
    try:
        meta = json.loads(bytes(body[_HEAD.size : meta_end]).decode("utf-8"))
        sections = {}
        for item in meta["sections"]:
            dtype = np.dtype(item["dtype"])
            count = int(np.prod(item["shape"], dtype=np.int64))
            start = meta_end + item["offset"]
            array = np.frombuffer(body, dtype=dtype, count=count, offset=start).reshape(item["shape"])
            sections[item["name"]] = array.copy()
        return meta["description"], sections
    except (ValueError, KeyError, TypeError) as error:
        raise IndexCorruptError(path, f"cannot parse index file: {error}") from error


class StoredInIndexFile:
    """What `ExactIndex` and `FaissIndex` share about their file: `load` reads it and `from_file_parts` (each engine's
    own) builds the index from its description and sections, after `check_kind` made sure it is the engine's file."""

    file_kind: str
    file_kind_name: str

    @classmethod
    def load(cls, path: TPath) -> Any:
        return cls.from_file_parts(path, *read_index_file(path))  # type: ignore[attr-defined]

    @classmethod
    def check_kind(cls, path: TPath, description: Dict[str, Any]) -> None:
        """Raise `IndexCorruptError` unless the file holds an index of this engine."""
        if description.get("kind") != cls.file_kind:
            raise IndexCorruptError(Path(path), f"expected {cls.file_kind_name}, the file holds "
                                                f"{description.get('kind')!r}")


__all__ = ["write_index_file", "read_index_file", "StoredInIndexFile"]
