"""Reading a snapshot archive back: every member checked (name, type, size, SHA-256) as it is extracted into a
staging folder, so nothing of an archive that is truncated, altered, unsafe or of another format is ever used."""

import hashlib
import tarfile
import zlib
from pathlib import Path
from typing import Set

from indexing.errors import storage_full_cause
from indexing.snapshots.format import (SNAPSHOT_MANIFEST, InvalidSnapshotError, SnapshotManifest, is_member_name)

CHUNK = 1024 * 1024
MAX_MANIFEST_BYTES = 64 * 1024 * 1024
_READ_ERRORS = (tarfile.TarError, EOFError, zlib.error, OSError)


def _reading_error(error: BaseException) -> InvalidSnapshotError:
    if storage_full_cause(error) is not None:
        raise error
    return InvalidSnapshotError(f"the archive is truncated or damaged ({type(error).__name__}: {error})")


def extract_verified(archive: Path, target: Path) -> SnapshotManifest:
    """Extract the snapshot `archive` into the existing empty folder `target`, checking every member against
    `snapshot.json`; returns that manifest. `InvalidSnapshotError` names the first problem found."""
    try:
        tar = tarfile.open(archive, mode="r:*")
    except _READ_ERRORS as error:
        raise InvalidSnapshotError(f"not a snapshot archive: cannot read it as tar ({error})") from None
    with tar:
        try:
            manifest = _read_manifest(tar)
            seen = _extract_members(tar, manifest, target)
        except _READ_ERRORS as error:
            raise _reading_error(error) from None
    missing = sorted(set(manifest.members) - seen)
    if missing:
        raise InvalidSnapshotError(f"the archive is truncated or incomplete: {len(missing)} member(s) listed in "
                                   f"{SNAPSHOT_MANIFEST} are missing, e.g. {missing[0]!r}")
    return manifest


def _read_manifest(tar: tarfile.TarFile) -> SnapshotManifest:
    first = tar.next()
    if first is None or first.name != SNAPSHOT_MANIFEST or not first.isreg():
        found = "nothing" if first is None else repr(first.name)
        raise InvalidSnapshotError(f"not a snapshot archive: its first member must be {SNAPSHOT_MANIFEST}, found {found}")
    if first.size > MAX_MANIFEST_BYTES:
        raise InvalidSnapshotError(f"{SNAPSHOT_MANIFEST} is implausibly large ({first.size} bytes)")
    handle = tar.extractfile(first)
    raw = handle.read() if handle is not None else b""
    if len(raw) != first.size:
        raise InvalidSnapshotError(f"the archive is truncated inside {SNAPSHOT_MANIFEST}")
    return SnapshotManifest.from_json(raw)


def _extract_members(tar: tarfile.TarFile, manifest: SnapshotManifest, target: Path) -> Set[str]:
    seen: Set[str] = set()
    while True:
        member = tar.next()
        if member is None:
            return seen
        name = member.name
        if not is_member_name(name):
            raise InvalidSnapshotError(f"unsafe or unexpected member {name!r} (absolute path, '..', or outside the "
                                       "snapshot layout): refused")
        if not member.isreg():
            raise InvalidSnapshotError(f"member {name!r} is a link or a special file: refused")
        expected = manifest.members.get(name)
        if expected is None:
            raise InvalidSnapshotError(f"member {name!r} is not listed in {SNAPSHOT_MANIFEST}")
        if name in seen:
            raise InvalidSnapshotError(f"member {name!r} appears twice")
        if member.size != expected["size"]:
            raise InvalidSnapshotError(f"member {name!r} has {member.size} bytes, {SNAPSHOT_MANIFEST} says "
                                       f"{expected['size']}")
        _copy_checked(tar, member, target / name, expected["sha256"])
        seen.add(name)


def _copy_checked(tar: tarfile.TarFile, member: tarfile.TarInfo, path: Path, sha256: str) -> None:
    source = tar.extractfile(member)
    if source is None:
        raise InvalidSnapshotError(f"member {member.name!r} cannot be read")
    path.parent.mkdir(parents=True, exist_ok=True)
    digest, written = hashlib.sha256(), 0
    with open(path, "wb") as handle:
        for chunk in iter(lambda: source.read(CHUNK), b""):
            digest.update(chunk)
            written += len(chunk)
            handle.write(chunk)
    if written != member.size:
        raise InvalidSnapshotError(f"the archive is truncated inside member {member.name!r}")
    if digest.hexdigest() != sha256:
        raise InvalidSnapshotError(f"checksum mismatch in member {member.name!r}: the archive was altered or damaged")


__all__ = ["extract_verified"]
