"""Reading uploaded image archives (zip, tar, tar.gz/.tgz, tar.bz2, tar.xz) safely, without extracting to disk.

`plan_archive` walks the members' headers once and refuses (`ArchiveRejected`, naming the member) an archive with
too many members, an unsafe path (absolute, drive letter, `..`), a link or device member, encrypted or unknown zip
compression, a member or a total over the size limits, a suspicious compression ratio, a key too long, or two
members with one key. Non-image members (by suffix), dotfiles and `__MACOSX/` are skipped and counted.
`read_members` then streams the planned members' bytes in archive order, never more than each one declared.

Compression ratio rule (zip bombs): a zip member, or the running total of a tar's member sizes against the whole
archive file, that inflates to more than `MAX_COMPRESSION_RATIO` times its compressed size is refused once it
is over `RATIO_FLOOR_BYTES` (small files may compress well). A tar's headers are checked before its data is read,
so listing a tar.gz never inflates more than the ratio allows.
"""

import os
import re
import struct
import tarfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Dict, Iterator, List, Optional, Tuple

from server.errors import ApiError, UnsupportedMediaTypeError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif", ".tiff"})
MAX_COMPRESSION_RATIO = 200.0
RATIO_FLOOR_BYTES = 1024 * 1024
MAX_KEY_CHARS = 512
LABEL_MODES = ("folder", "path", "none")
KEY_MODES = ("path", "name")
_ZIP_METHODS = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}
_DRIVE_RE = re.compile(r"^[A-Za-z]:")
_EOCD = b"PK\x05\x06"
_ZIP64_LOCATOR = b"PK\x06\x07"
_ZIP64_EOCD = b"PK\x06\x06"


class ArchiveRejected(ApiError):
    """An archive that is unsafe, over a limit or unreadable: a 400 whose detail names the member."""


@dataclass(frozen=True)
class ArchiveLimits:
    """What an archive may hold: entries, total declared bytes, bytes per image member, compression ratio."""

    max_members: int = 100_000
    max_total_bytes: int = 2 * 1024 ** 3
    max_member_bytes: int = 10 * 1024 * 1024
    max_ratio: float = MAX_COMPRESSION_RATIO


@dataclass(frozen=True)
class ArchiveOptions:
    """How members become items. `labels`: folder (the parent folder's name), path (the parent folder's path,
    e.g. `Greek/character01`) or none; `keys`: path (member path without extension) or name (file name without
    extension); `payload_from_path`: `{"path": member path}` as payload."""

    labels: str = "folder"
    keys: str = "path"
    payload_from_path: bool = False

    def __post_init__(self) -> None:
        if self.labels not in LABEL_MODES:
            raise ValueError(f"labels must be one of {', '.join(LABEL_MODES)}, got {self.labels!r}")
        if self.keys not in KEY_MODES:
            raise ValueError(f"keys must be one of {', '.join(KEY_MODES)}, got {self.keys!r}")


@dataclass(frozen=True)
class ArchiveMember:
    """An image member to index: its name in the archive, its normalized path, key, label, payload, size."""

    name: str
    path: str
    key: str
    label: Optional[str]
    payload: Dict[str, str]
    size: int


@dataclass
class ArchivePlan:
    """The checked contents of an archive: what to index, in archive order, and how many members were skipped."""

    kind: str  # zip | tar
    members: List[ArchiveMember] = field(default_factory=list)
    skipped: int = 0
    total_bytes: int = 0


@dataclass(frozen=True)
class _Entry:
    """One archive entry as both formats describe it."""

    name: str
    kind: str  # file | dir | link | special
    size: int
    compressed: Optional[int] = None  # zip only
    problem: Optional[str] = None  # a zip member we cannot read safely


def archive_kind(path: Path) -> str:
    """'zip' or 'tar' by content (not by file name); otherwise `UnsupportedMediaTypeError`. Tar is tried first:
    a tar whose last member is a zip would pass `zipfile`'s end-of-archive test."""
    try:
        if tarfile.is_tarfile(path):
            return "tar"
    except (OSError, EOFError, tarfile.TarError, ValueError):
        pass
    if zipfile.is_zipfile(path):
        return "zip"
    raise UnsupportedMediaTypeError("the upload is not a zip or tar archive (.zip, .tar, .tar.gz/.tgz, .tar.bz2, "
                                    ".tar.xz)", code="unsupported_archive")


def member_parts(name: str) -> List[str]:
    """The path components of a member name, '.' and empty ones dropped; `ArchiveRejected` for an absolute path,
    a drive letter, a `..` component or a NUL character."""
    if "\x00" in name:
        raise ArchiveRejected(f"member {name!r} has a NUL character in its name", code="unsafe_path")
    if name.startswith(("/", "\\")) or _DRIVE_RE.match(name):
        raise ArchiveRejected(f"member {name!r} has an absolute path", code="unsafe_path")
    parts = [part for part in re.split(r"[/\\]", name) if part not in ("", ".")]
    if ".." in parts:
        raise ArchiveRejected(f"member {name!r} has a '..' component", code="unsafe_path")
    return parts


def is_skipped(parts: List[str]) -> bool:
    """Not an image to index: a non-image suffix, a dotfile or dot-folder, or macOS's `__MACOSX/` metadata."""
    if any(part.startswith(".") or part == "__MACOSX" for part in parts):
        return True
    return PurePosixPath(parts[-1]).suffix.lower() not in IMAGE_SUFFIXES


def _member(name: str, parts: List[str], size: int, options: ArchiveOptions) -> ArchiveMember:
    path = "/".join(parts)
    stem = str(PurePosixPath(path).with_suffix("")) if options.keys == "path" else PurePosixPath(path).stem
    if len(stem) > MAX_KEY_CHARS:
        raise ArchiveRejected(f"member {name!r} makes a key of {len(stem)} characters, over {MAX_KEY_CHARS}",
                              code="key_too_long")
    folders = parts[:-1] if options.labels != "none" else []
    label = (folders[-1] if options.labels == "folder" else "/".join(folders)) if folders else None
    payload = {"path": path} if options.payload_from_path else {}
    return ArchiveMember(name=name, path=path, key=stem, label=label, payload=payload, size=size)


def plan_archive(path: Path, limits: ArchiveLimits, options: ArchiveOptions = ArchiveOptions()) -> ArchivePlan:
    """Check every entry of the archive at `path` (see the module docstring) and list its image members."""
    path = Path(path)
    plan = ArchivePlan(kind=archive_kind(path))
    archive_bytes = max(os.path.getsize(path), 1)
    keys: Dict[str, str] = {}
    count = 0
    for entry in _entries(path, plan.kind, limits):
        count += 1
        if count > limits.max_members:
            raise ArchiveRejected(f"the archive has more than {limits.max_members} members (at {entry.name!r})",
                                  code="too_many_members")
        parts = member_parts(entry.name)
        if entry.kind in ("link", "special"):
            what = "a link" if entry.kind == "link" else "not a regular file or folder"
            raise ArchiveRejected(f"member {entry.name!r} is {what}; only files and folders are accepted",
                                  code="unsafe_member")
        if entry.problem is not None:
            raise ArchiveRejected(f"member {entry.name!r}: {entry.problem}", code="unreadable_member")
        if entry.kind == "dir" or not parts:
            continue
        plan.total_bytes += entry.size
        _check_sizes(entry, plan.total_bytes, archive_bytes, limits)
        if is_skipped(parts):
            plan.skipped += 1
            continue
        if entry.size > limits.max_member_bytes:
            raise ArchiveRejected(f"member {entry.name!r} is {entry.size} bytes, over the limit of "
                                  f"{limits.max_member_bytes} per image", code="member_too_large")
        member = _member(entry.name, parts, entry.size, options)
        if member.key in keys:
            raise ArchiveRejected(f"members {keys[member.key]!r} and {entry.name!r} make the same key "
                                  f"{member.key!r}", code="duplicate_key")
        keys[member.key] = entry.name
        plan.members.append(member)
    return plan


def _check_sizes(entry: _Entry, total: int, archive_bytes: int, limits: ArchiveLimits) -> None:
    if total > limits.max_total_bytes:
        raise ArchiveRejected(f"the members declare more than {limits.max_total_bytes} bytes in all (at "
                              f"{entry.name!r})", code="archive_too_large")
    if entry.compressed is not None:
        if entry.size > RATIO_FLOOR_BYTES and entry.size > limits.max_ratio * max(entry.compressed, 1):
            raise ArchiveRejected(f"member {entry.name!r} inflates {entry.compressed} bytes to {entry.size} "
                                  f"(over {limits.max_ratio:g} times): a zip bomb?", code="suspicious_compression")
    elif total > RATIO_FLOOR_BYTES and total > limits.max_ratio * archive_bytes:
        raise ArchiveRejected(f"the members up to {entry.name!r} inflate the {archive_bytes}-byte archive to {total} "
                              f"bytes (over {limits.max_ratio:g} times): a compression bomb?",
                              code="suspicious_compression")


def _entries(path: Path, kind: str, limits: ArchiveLimits) -> Iterator[_Entry]:
    return _zip_entries(path, limits) if kind == "zip" else _tar_entries(path)


def zip_entry_count(path: Path) -> int:
    """The entry count a zip's end-of-central-directory record declares (zip64 too), read before `zipfile` parses
    the central directory into memory; `ArchiveRejected` when the record cannot be found."""
    with open(path, "rb") as handle:
        size = handle.seek(0, os.SEEK_END)
        tail_start = max(0, size - (65_535 + 22))
        handle.seek(tail_start)
        tail = handle.read()
        at = tail.rfind(_EOCD)
        if at < 0 or len(tail) - at < 22:
            raise ArchiveRejected("the zip archive has no end-of-central-directory record", code="corrupt_archive")
        count = struct.unpack("<H", tail[at + 10:at + 12])[0]
        if count != 0xFFFF or at < 20 or tail[at - 20:at - 16] != _ZIP64_LOCATOR:
            return count
        record_offset = struct.unpack("<Q", tail[at - 12:at - 4])[0]
        handle.seek(record_offset)
        record = handle.read(56)
        if len(record) < 56 or record[:4] != _ZIP64_EOCD:
            raise ArchiveRejected("the zip64 end-of-central-directory record is broken", code="corrupt_archive")
        return struct.unpack("<Q", record[32:40])[0]


def _zip_entries(path: Path, limits: ArchiveLimits) -> Iterator[_Entry]:
    declared = zip_entry_count(path)
    if declared > limits.max_members:
        raise ArchiveRejected(f"the archive declares {declared} members, over the limit of {limits.max_members}",
                              code="too_many_members")
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as error:
        raise ArchiveRejected(f"the zip archive is corrupt: {error}", code="corrupt_archive") from None
    for info in infos:
        yield _zip_entry(info)


def _zip_entry(info: zipfile.ZipInfo) -> _Entry:
    mode = (info.external_attr >> 16) & 0o170000
    if info.is_dir():
        kind = "dir"
    elif mode in (0, 0o100000):
        kind = "file"
    elif mode == 0o120000:
        kind = "link"
    else:
        kind = "special"
    problem = None
    if info.flag_bits & 0x1:
        problem = "it is encrypted"
    elif info.compress_type not in _ZIP_METHODS:
        problem = f"unsupported compression method {info.compress_type}"
    return _Entry(info.filename, kind, info.file_size, info.compress_size, problem)


def _tar_entries(path: Path) -> Iterator[_Entry]:
    try:
        with tarfile.open(path, mode="r:*") as archive:
            while True:
                info = archive.next()
                if info is None:
                    return
                yield _tar_entry(info)
                archive.members.clear()  # keep memory flat on archives with many members
    except (tarfile.TarError, OSError, EOFError, ValueError) as error:
        raise ArchiveRejected(f"the tar archive is corrupt or truncated: {error}", code="corrupt_archive") from None


def _tar_entry(info: tarfile.TarInfo) -> _Entry:
    if info.isdir():
        kind = "dir"
    elif info.issym() or info.islnk():
        kind = "link"
    elif info.isfile() and not info.issparse():
        kind = "file"
    else:
        kind = "special"
    return _Entry(info.name, kind, info.size)


def read_members(path: Path, plan: ArchivePlan) -> Iterator[Tuple[ArchiveMember, bytes]]:
    """(member, its bytes) for every planned member, in archive order, each read in one piece of at most its
    declared size; `ArchiveRejected` naming the member when one is larger than declared or cannot be read."""
    wanted = {member.name: member for member in plan.members}
    reader = _zip_members if plan.kind == "zip" else _tar_members
    current = "(the archive itself)"
    try:
        for member, handle in reader(path, wanted):
            current = member.name
            yield member, _read_declared(handle, member)
    except ArchiveRejected:
        raise
    except (zipfile.BadZipFile, tarfile.TarError, zlib.error, OSError, EOFError, ValueError,
            NotImplementedError) as error:
        raise ArchiveRejected(f"member {current!r} cannot be read: {error}", code="unreadable_member") from None


def _zip_members(path: Path, wanted: Dict[str, ArchiveMember]) -> Iterator[Tuple[ArchiveMember, BinaryIO]]:
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            member = wanted.get(info.filename)
            if member is not None:
                with archive.open(info) as handle:
                    yield member, handle


def _tar_members(path: Path, wanted: Dict[str, ArchiveMember]) -> Iterator[Tuple[ArchiveMember, BinaryIO]]:
    with tarfile.open(path, mode="r:*") as archive:
        while True:
            info = archive.next()
            if info is None:
                return
            member = wanted.get(info.name)
            if member is not None and info.isfile():
                handle = archive.extractfile(info)
                if handle is None:
                    raise ArchiveRejected(f"member {info.name!r} cannot be read", code="unreadable_member")
                yield member, handle
            archive.members.clear()


def _read_declared(handle: BinaryIO, member: ArchiveMember) -> bytes:
    data = handle.read(member.size + 1)
    if len(data) > member.size:
        raise ArchiveRejected(f"member {member.name!r} holds more than the {member.size} bytes it declares",
                              code="suspicious_compression")
    return data


__all__ = ["ArchiveRejected", "ArchiveLimits", "ArchiveOptions", "ArchiveMember", "ArchivePlan", "IMAGE_SUFFIXES",
           "MAX_COMPRESSION_RATIO", "RATIO_FLOOR_BYTES", "archive_kind", "member_parts", "is_skipped",
           "plan_archive", "read_members", "zip_entry_count"]
