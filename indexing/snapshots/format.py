"""What a snapshot archive is: its member names, its manifest (`snapshot.json`) and its errors.

```
<id>.tar
    snapshot.json     SnapshotManifest: format version, gallery, model, item count, store revision, and the size and
                      SHA-256 of every other member (written first, so a reader checks members as they stream by)
    manifest.json     the gallery's manifest
    items.sqlite      a consistent copy of the item store (SQLite backup API), embeddings of the current generation
    index.g<N>.*      the index file of that generation (its change log after the file's revision is in the store)
    files/<xx>/<name> the stored files the items point to; their paths in the copy are `files/<xx>/<name>`
```
"""

import json
import re
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Dict, Optional

from indexing.errors import GalleryError, IndexingError

SNAPSHOT_FORMAT_VERSION = 1
SNAPSHOT_MANIFEST = "snapshot.json"
SNAPSHOTS_DIR = "snapshots"
ARCHIVE_SUFFIX = ".tar"
INFO_SUFFIX = ".json"

SNAPSHOT_ID_REGEX = r"^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}$"
_ID_RE = re.compile(SNAPSHOT_ID_REGEX)
# every member an archive may hold: fixed names, one index file, stored files two levels under files/
_MEMBER_RE = re.compile(r"^(manifest\.json|items\.sqlite|index\.g[0-9]{1,9}\.(faiss|exact)|"
                        r"files/[0-9a-f]{2}/[A-Za-z0-9][A-Za-z0-9._-]{0,200})$")


class SnapshotError(IndexingError):
    """Base class of the snapshot errors."""


class SnapshotNotFoundError(SnapshotError):
    """No snapshot with that id for that gallery."""


class InvalidSnapshotError(SnapshotError):
    """An archive that is not a complete, unaltered snapshot this reader understands (truncated, checksum mismatch,
    unknown format version, unsafe or unexpected member); the message names the problem."""


class SnapshotModelError(SnapshotError):
    """A snapshot whose embeddings come from a model (name, version, size) this server cannot serve."""


class SnapshotUnsupportedError(GalleryError):
    """A gallery kept by a backend snapshots do not cover (Milvus)."""


def is_snapshot_id(value: Any) -> bool:
    return isinstance(value, str) and bool(_ID_RE.match(value))


def is_member_name(name: str) -> bool:
    """Whether `name` is a member a snapshot may hold (no absolute paths, `..`, or other folders)."""
    return bool(_MEMBER_RE.match(name)) and ".." not in name.split("/")


@dataclass
class SnapshotManifest:
    """`snapshot.json`: what the archive holds and how to check it."""

    id: str
    gallery: str
    created_at: float
    model: Dict[str, Any]  # name, version, embedding_size, modality
    items: int
    revision: int
    index_file: str
    members: Dict[str, Dict[str, Any]] = field(default_factory=dict)  # name -> {"size", "sha256"}
    format_version: int = SNAPSHOT_FORMAT_VERSION

    def to_json(self) -> bytes:
        return (json.dumps(asdict(self), indent=2, sort_keys=True) + "\n").encode("utf-8")

    @classmethod
    def from_json(cls, raw: bytes) -> "SnapshotManifest":
        """Parse and check `snapshot.json`; `InvalidSnapshotError` names what is wrong."""
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise InvalidSnapshotError(f"{SNAPSHOT_MANIFEST} is not valid JSON: {error}") from None
        if not isinstance(data, dict):
            raise InvalidSnapshotError(f"{SNAPSHOT_MANIFEST} is not a JSON object")
        version = data.get("format_version")
        if not isinstance(version, int) or version > SNAPSHOT_FORMAT_VERSION or version < 1:
            raise InvalidSnapshotError(f"snapshot format version {version!r} is not supported (this server reads "
                                       f"version {SNAPSHOT_FORMAT_VERSION})")
        names = {f.name for f in fields(cls)}
        missing = sorted(names - set(data) - {"format_version", "members"})
        if missing:
            raise InvalidSnapshotError(f"{SNAPSHOT_MANIFEST} lacks {missing}")
        manifest = cls(**{key: value for key, value in data.items() if key in names})
        manifest._check()
        return manifest

    def _check(self) -> None:
        model = self.model if isinstance(self.model, dict) else {}
        if not (isinstance(model.get("name"), str) and isinstance(model.get("version"), int)
                and isinstance(model.get("embedding_size"), int)):
            raise InvalidSnapshotError(f"{SNAPSHOT_MANIFEST}: model must name name, version and embedding_size")
        if not isinstance(self.members, dict) or not isinstance(self.items, int) or self.items < 0:
            raise InvalidSnapshotError(f"{SNAPSHOT_MANIFEST}: members must be an object and items a count")
        for name, entry in self.members.items():
            if not is_member_name(name):
                raise InvalidSnapshotError(f"{SNAPSHOT_MANIFEST} lists an unsafe or unexpected member {name!r}")
            if not (isinstance(entry, dict) and isinstance(entry.get("size"), int) and entry["size"] >= 0
                    and isinstance(entry.get("sha256"), str) and len(entry["sha256"]) == 64):
                raise InvalidSnapshotError(f"{SNAPSHOT_MANIFEST}: member {name!r} lacks its size or sha256")
        for required in ("manifest.json", "items.sqlite", self.index_file):
            if required not in self.members:
                raise InvalidSnapshotError(f"{SNAPSHOT_MANIFEST} does not list the member {required!r}")


@dataclass(frozen=True)
class SnapshotInfo:
    """What listing a snapshot tells: id, gallery, created_at, size and sha256 of the archive, items, model."""

    id: str
    gallery: str
    created_at: float
    size: int
    sha256: str
    items: int
    model: Dict[str, Any]  # {"name", "version"}

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> Optional["SnapshotInfo"]:
        try:
            return cls(**{f.name: data[f.name] for f in fields(cls)})
        except (KeyError, TypeError):
            return None


__all__ = ["SNAPSHOT_FORMAT_VERSION", "SNAPSHOT_MANIFEST", "SNAPSHOTS_DIR", "ARCHIVE_SUFFIX", "INFO_SUFFIX",
           "SNAPSHOT_ID_REGEX", "SnapshotError", "SnapshotNotFoundError", "InvalidSnapshotError", "SnapshotModelError",
           "SnapshotUnsupportedError", "SnapshotManifest", "SnapshotInfo", "is_snapshot_id", "is_member_name"]
