"""`server.archives`: what an uploaded archive may hold, checked before any member is read (pure, no server)."""

import dataclasses
import io
import tarfile
import zipfile
from pathlib import Path
from typing import Dict

import pytest

from server.archives import (ArchiveLimits, ArchiveOptions, ArchiveRejected, member_parts, plan_archive,
                             read_members, zip_entry_count)
from server.errors import UnsupportedMediaTypeError

LIMITS = ArchiveLimits(max_members=1000, max_total_bytes=50 * 1024 * 1024, max_member_bytes=2 * 1024 * 1024)


@pytest.fixture(scope="module")
def glyphs(data_dir) -> Dict[str, bytes]:
    """Real Omniglot drawings by archive path: two alphabets x two characters x three drawings."""
    root = data_dir / "omniglot" / "images"
    files = [path for alphabet in ("Greek", "Korean") for character in ("character01", "character02")
             for path in sorted((root / alphabet / character).glob("*.png"))[:3]]
    return {str(path.relative_to(root)): path.read_bytes() for path in files}


def write_zip(path: Path, members: Dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression=method) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def write_tar(path: Path, members: Dict[str, bytes], mode: str = "w:gz") -> Path:
    with tarfile.open(path, mode) as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def add_tar_entry(path: Path, name: str, entry_type: bytes, linkname: str = "") -> Path:
    with tarfile.open(path, "w") as archive:
        info = tarfile.TarInfo(name)
        info.type, info.linkname = entry_type, linkname
        archive.addfile(info)
    return path


def rejected(path: Path, limits: ArchiveLimits = LIMITS, **options) -> ArchiveRejected:
    with pytest.raises(ArchiveRejected) as caught:
        plan_archive(path, limits, ArchiveOptions(**options))
    return caught.value


@pytest.mark.parametrize("writer", [write_zip, write_tar], ids=["zip", "tar.gz"])
def test_image_members_become_keys_and_labels_and_the_rest_is_skipped(tmp_path, glyphs, writer):
    extras = {"README.txt": b"about", "__MACOSX/Greek/._x.png": b"meta", "Greek/.DS_Store": b"x", "notes/.hidden.png": b""}
    path = writer(tmp_path / "glyphs.archive", {**glyphs, **extras})
    plan = plan_archive(path, LIMITS)
    assert plan.skipped == 4 and len(plan.members) == len(glyphs) == 12
    first = plan.members[0]
    assert first.key == str(Path(first.path).with_suffix("")) and "/" in first.key
    assert first.label == Path(first.path).parent.name and first.payload == {}
    assert {(member, data) for member, data in ((m.path, d) for m, d in read_members(path, plan))} \
        == set(glyphs.items())


def test_key_and_label_modes_and_the_payload(tmp_path, glyphs):
    path = write_tar(tmp_path / "a.tgz", {f"./{name}": data for name, data in glyphs.items()})
    plan = plan_archive(path, LIMITS, ArchiveOptions(labels="none", keys="name", payload_from_path=True))
    member = plan.members[0]
    assert member.key == Path(member.path).stem and member.label is None
    assert member.payload == {"path": member.path} and not member.path.startswith(".")
    nested = plan_archive(path, LIMITS, ArchiveOptions(labels="path")).members[0]
    assert nested.label == str(Path(nested.path).parent) and nested.label.count("/") == 1
    root = write_zip(tmp_path / "root.zip", {"top.png": next(iter(glyphs.values()))})
    assert plan_archive(root, LIMITS).members[0].label is None
    assert plan_archive(root, LIMITS, ArchiveOptions(labels="path")).members[0].label is None
    with pytest.raises(ValueError, match="labels"):
        ArchiveOptions(labels="parent")


@pytest.mark.parametrize("name, words", [
    ("../evil.png", "'..' component"), ("Greek/../../evil.png", "'..' component"), ("/etc/evil.png", "absolute"),
    ("C:\\evil.png", "absolute"), ("\\\\server\\share\\evil.png", "absolute"), ("a\\..\\..\\evil.png", "'..'"),
])
@pytest.mark.parametrize("writer", [write_zip, write_tar], ids=["zip", "tar.gz"])
def test_unsafe_paths_are_refused_naming_the_member(tmp_path, name, words, writer):
    error = rejected(writer(tmp_path / "evil.archive", {"ok/fine.png": b"x", name: b"payload"}))
    assert error.code == "unsafe_path" and words in error.detail and repr(name) in error.detail


@pytest.mark.parametrize("entry_type, what", [(tarfile.SYMTYPE, "a link"), (tarfile.LNKTYPE, "a link"),
                                              (tarfile.CHRTYPE, "not a regular file"),
                                              (tarfile.FIFOTYPE, "not a regular file")])
def test_tar_links_and_devices_are_refused(tmp_path, entry_type, what):
    error = rejected(add_tar_entry(tmp_path / "links.tar", "Greek/link.png", entry_type, "/etc/passwd"))
    assert error.code == "unsafe_member" and what in error.detail and "Greek/link.png" in error.detail


def test_a_zip_symlink_member_is_refused(tmp_path):
    path = tmp_path / "link.zip"
    with zipfile.ZipFile(path, "w") as archive:
        info = zipfile.ZipInfo("Greek/link.png")
        info.external_attr = (0o120777 << 16)
        archive.writestr(info, "/etc/passwd")
    assert rejected(path).code == "unsafe_member"


@pytest.mark.parametrize("writer", [write_zip, write_tar], ids=["zip", "tar.gz"])
def test_too_many_members(tmp_path, writer):
    path = writer(tmp_path / "many.archive", {f"m/{i}.png": b"x" for i in range(11)})
    error = rejected(path, dataclasses.replace(LIMITS, max_members=10))
    assert error.code == "too_many_members" and "10" in error.detail


def test_the_zip_entry_count_is_read_before_the_central_directory(tmp_path):
    path = write_zip(tmp_path / "count.zip", {f"m/{i}.png": b"x" for i in range(7)})
    assert zip_entry_count(path) == 7


@pytest.mark.parametrize("writer", [write_zip, write_tar], ids=["zip", "tar.gz"])
def test_a_compression_bomb_is_refused_before_it_is_inflated(tmp_path, writer):
    path = writer(tmp_path / "bomb.archive", {"ok.png": b"x", "bomb.png": bytes(40 * 1024 * 1024)})
    assert path.stat().st_size < 200 * 1024
    error = rejected(path)
    assert error.code == "suspicious_compression" and "bomb.png" in error.detail


def test_totals_and_member_sizes_over_the_limits(tmp_path):
    big = bytes(range(256)) * 4096 * 3  # 3 MiB, barely compressible as stored
    stored = write_zip(tmp_path / "big.zip", {"a/big.png": big}, method=zipfile.ZIP_STORED)
    assert rejected(stored).code == "member_too_large"
    many = write_zip(tmp_path / "total.zip", {f"a/{i}.bin": big for i in range(3)}, method=zipfile.ZIP_STORED)
    error = rejected(many, dataclasses.replace(LIMITS, max_total_bytes=8 * 1024 * 1024))
    assert error.code == "archive_too_large" and "a/2.bin" in error.detail


def test_two_members_with_one_key_are_refused(tmp_path):
    same_stem = write_zip(tmp_path / "stem.zip", {"a/x.png": b"1", "a/x.jpg": b"2"})
    assert rejected(same_stem).code == "duplicate_key"
    same_name = write_zip(tmp_path / "name.zip", {"a/x.png": b"1", "b/x.png": b"2"})
    assert plan_archive(same_name, LIMITS).members[1].key == "b/x"
    assert "'a/x.png' and 'b/x.png'" in rejected(same_name, keys="name").detail


def test_not_an_archive_empty_and_truncated(tmp_path, glyphs):
    for name, data in [("plain.txt", b"just some text\n" * 50), ("empty", b""), ("image.png", glyphs[next(iter(glyphs))])]:
        (tmp_path / name).write_bytes(data)
        with pytest.raises(UnsupportedMediaTypeError) as caught:
            plan_archive(tmp_path / name, LIMITS)
        assert caught.value.code == "unsupported_archive"
    whole = write_tar(tmp_path / "whole.tgz", {f"a/{i}.png": bytes(range(256)) * 40 for i in range(20)})
    cut = tmp_path / "cut.tgz"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises((ArchiveRejected, UnsupportedMediaTypeError)):
        plan_archive(cut, LIMITS)


def test_a_member_larger_than_declared_is_not_read_past_its_size(tmp_path, glyphs):
    path = write_zip(tmp_path / "a.zip", glyphs)
    plan = plan_archive(path, LIMITS)
    plan.members[0] = dataclasses.replace(plan.members[0], size=10)
    with pytest.raises(ArchiveRejected, match="more than the 10 bytes"):
        list(read_members(path, plan))


def test_a_tar_ending_in_a_zip_member_is_read_as_a_tar(tmp_path, glyphs):
    inner = write_zip(tmp_path / "inner.zip", glyphs)
    path = write_tar(tmp_path / "outer.tar", {"Greek/a.png": b"x", "z/inner.zip": inner.read_bytes()}, mode="w")
    plan = plan_archive(path, LIMITS)
    assert (plan.kind, [m.name for m in plan.members], plan.skipped) == ("tar", ["Greek/a.png"], 1)


def test_member_parts_drop_dots_and_empty_components():
    assert member_parts("./a//b/./c.png") == ["a", "b", "c.png"]
    for bad in ("a/../b.png", "/a.png", "a\x00.png"):
        with pytest.raises(ArchiveRejected):
            member_parts(bad)


