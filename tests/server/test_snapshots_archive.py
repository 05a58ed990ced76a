"""Snapshot archives without a server: consistent while writes go on, restored byte for byte (items, embeddings,
stored files, search results), and every kind of bad archive refused before anything is replaced."""

import hashlib
import io
import json
import tarfile
import threading
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest

from indexing import Gallery, GalleryExistsError, Item
from indexing.snapshots import (InvalidSnapshotError, SnapshotModelError, archive_path, create_snapshot,
                                delete_snapshot, export_snapshot, list_snapshots, restore_snapshot)
from oml.artifact import ModelManifest

DIM = 8
MODEL = ModelManifest(name="demo", version=1, modality="image", embedding_size=DIM, preprocessing={})


def _items(start: int, count: int, rng: np.random.Generator):
    items = [Item(f"k{i}", label=i % 5, text=f"text {i}", payload={"n": i, "tag": "x" * (i % 3)})
             for i in range(start, start + count)]
    return items, rng.standard_normal((count, DIM)).astype(np.float32)


def _rows(gallery: Gallery) -> Dict[str, tuple]:
    """key -> (label, text, payload, content hash, embedding bytes, stored file bytes)."""
    rows = {}
    for batch in gallery.iter_items():
        vectors = gallery.get_embeddings([item.item_id for item in batch])
        for item in batch:
            data = Path(item.path).read_bytes() if item.path else None
            rows[item.key] = (item.label, item.text, json.dumps(item.payload, sort_keys=True), item.content_hash,
                              vectors[item.item_id].tobytes(), data)
    return rows


@pytest.fixture()
def source(tmp_path):
    rng = np.random.default_rng(7)
    gallery = Gallery.create(tmp_path, "src", MODEL, index_spec="HNSW32")
    items, vectors = _items(0, 300, rng)
    for i in range(0, 300, 100):
        gallery.upsert(items[i:i + 100], vectors[i:i + 100])
    for key in ("k1", "k2"):
        path = gallery.store_file(key, hashlib.sha256(key.encode()).digest() * 10, "png")
        gallery.upsert([Item(key, label=9, path=str(path))], rng.standard_normal((1, DIM)).astype(np.float32))
    gallery.delete("k3")
    yield gallery
    gallery.close()


def test_a_restored_gallery_holds_the_same_items_embeddings_files_and_answers_the_same(source, tmp_path):
    info = create_snapshot(source, tmp_path)
    assert (info.items, info.model) == (299, {"name": "demo", "version": 1})
    assert info.sha256 == hashlib.sha256(archive_path(tmp_path, "src", info.id).read_bytes()).hexdigest()
    assert [s.id for s in list_snapshots(tmp_path, "src")] == [info.id]
    restored = restore_snapshot(archive_path(tmp_path, "src", info.id), tmp_path, "copy")
    assert (restored.gallery, restored.replaced) == ("copy", False)
    with Gallery.open(tmp_path, "copy") as copy:
        assert _rows(copy) == _rows(source)
        assert copy.info() == {**source.info(), "name": "copy"}
        queries = np.random.default_rng(1).standard_normal((20, DIM)).astype(np.float32)
        assert [[(h.key, h.distance) for h in row] for row in copy.search(queries, k=10)] == \
               [[(h.key, h.distance) for h in row] for row in source.search(queries, k=10)]
        assert all(Path(copy.get(key).path).is_relative_to(copy.folder / "files") for key in ("k1", "k2"))
    delete_snapshot(tmp_path, "src", info.id)
    assert list_snapshots(tmp_path, "src") == []


def test_a_snapshot_taken_while_writes_go_on_is_one_consistent_state(source, tmp_path):
    stop, written = threading.Event(), []

    def write() -> None:
        rng, start = np.random.default_rng(3), 1000
        while not stop.is_set():
            items, vectors = _items(start, 20, rng)
            source.upsert(items, vectors)
            source.delete(f"k{start - 10}")
            written.append(start)
            start += 20

    writer = threading.Thread(target=write)
    writer.start()
    try:
        infos = [create_snapshot(source, tmp_path) for _ in range(3)]
    finally:
        stop.set()
        writer.join()
    assert written, "the writer never ran"
    final = _rows(source)
    for info in infos:
        restore_snapshot(archive_path(tmp_path, "src", info.id), tmp_path, "copy", replace_existing=True)
        with Gallery.open(tmp_path, "copy") as copy:
            rows = _rows(copy)
            assert len(rows) == len(copy) == info.items
            # each upsert of 20 keys is one transaction, then the key 10 below it is deleted: a chunk is all there,
            # absent, or all there but its middle key, and then the next chunk is there
            for start in written:
                chunk = {f"k{i}" for i in range(start, start + 20)}
                present = chunk & set(rows)
                assert present in (set(), chunk, chunk - {f"k{start + 10}"}), start
                if present == chunk - {f"k{start + 10}"}:
                    assert f"k{start + 20}" in rows
            for key in set(rows) & set(final):
                assert rows[key] == final[key]


def _members(archive: Path) -> List[tarfile.TarInfo]:
    with tarfile.open(archive) as tar:
        return tar.getmembers()


def _rewrite(archive: Path, target: Path, edit) -> Path:
    """Copy `archive` member by member through `edit(info, data) -> [(info, data)]`."""
    with tarfile.open(archive) as source, tarfile.open(target, "w") as out:
        for info in source.getmembers():
            data = source.extractfile(info).read() if info.isreg() else b""
            for new_info, new_data in edit(info, data):
                new_info.size = len(new_data)
                out.addfile(new_info, io.BytesIO(new_data))
    return target


def _resign(snapshot: bytes, name: str, data: bytes) -> bytes:
    manifest = json.loads(snapshot)
    manifest["members"][name] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    return json.dumps(manifest).encode()


@pytest.fixture()
def exported(source, tmp_path) -> Path:
    return export_snapshot(source, tmp_path, tmp_path / "src.tar") and tmp_path / "src.tar"


def _bad_archives(exported: Path, tmp_path: Path) -> Dict[str, tuple]:
    raw = exported.read_bytes()
    store_offset = next(m.offset_data for m in _members(exported) if m.name == "items.sqlite")

    def flip(info, data):
        return [(info, data[:100] + bytes([data[100] ^ 1]) + data[101:] if info.name == "items.sqlite" else data)]

    def version(info, data):
        if info.name == "snapshot.json":
            data = json.dumps({**json.loads(data), "format_version": 99}).encode()
        return [(info, data)]

    def traversal(info, data):
        extra = tarfile.TarInfo("../../evil.txt")
        return [(info, data)] + ([(extra, b"x")] if info.name == "manifest.json" else [])

    def symlink(info, data):
        if info.name.startswith("files/"):
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            return [(info, b"")]
        return [(info, data)]

    def disagreeing(info, data):
        if info.name == "manifest.json":
            return [(info, other_manifest)]
        return [(info, _resign(data, "manifest.json", other_manifest) if info.name == "snapshot.json" else data)]

    other_manifest = json.dumps({**json.loads(tarfile.open(exported).extractfile("manifest.json").read()),
                                 "model_name": "other"}).encode()
    cases = {
        "truncated-inside-store": (raw[:store_offset + 500], "truncated"),
        "truncated-at-a-member": (raw[:store_offset - 512], "truncated"),
        "truncated-inside-manifest": (raw[:700], "truncated"),
        "checksum": (_rewrite(exported, tmp_path / "c.tar", flip).read_bytes(), "checksum mismatch in member "
                                                                               "'items.sqlite'"),
        "format-version": (_rewrite(exported, tmp_path / "v.tar", version).read_bytes(), "format version 99"),
        "traversal": (_rewrite(exported, tmp_path / "t.tar", traversal).read_bytes(), "'../../evil.txt'"),
        "symlink": (_rewrite(exported, tmp_path / "s.tar", symlink).read_bytes(), "link"),
        "manifest-disagrees": (_rewrite(exported, tmp_path / "m.tar", disagreeing).read_bytes(),
                               "disagrees with snapshot.json"),
        "not-a-tar": (b"hello" * 100, "not a snapshot archive"),
    }
    return cases


def test_bad_archives_are_refused_naming_the_problem_and_nothing_is_replaced(source, exported, tmp_path):
    restore_snapshot(exported, tmp_path, "target")
    with Gallery.open(tmp_path, "target") as target:
        before = _rows(target)
    for case, (data, problem) in _bad_archives(exported, tmp_path).items():
        bad = tmp_path / f"{case}.tar"
        bad.write_bytes(data)
        with pytest.raises(InvalidSnapshotError) as caught:
            restore_snapshot(bad, tmp_path, "target", replace_existing=True)
        assert problem in str(caught.value), (case, str(caught.value))
    leftovers = [p.name for p in (tmp_path / "galleries").iterdir() if p.name.startswith(".")]
    assert leftovers == []
    with Gallery.open(tmp_path, "target") as target:
        assert _rows(target) == before


def test_the_model_check_and_the_name_rule_come_before_any_replacement(exported, tmp_path):
    def refuse(model):
        raise SnapshotModelError(f"no {model['name']} v{model['version']} size {model['embedding_size']} here")

    with pytest.raises(SnapshotModelError, match="no demo v1 size 8 here"):
        restore_snapshot(exported, tmp_path, "fresh", check_model=refuse)
    assert not (tmp_path / "galleries" / "fresh").exists()
    restore_snapshot(exported, tmp_path, "fresh")
    with pytest.raises(GalleryExistsError, match="replace=true"):
        restore_snapshot(exported, tmp_path, "fresh")
    assert restore_snapshot(exported, tmp_path, "fresh", replace_existing=True).replaced


def test_a_milvus_gallery_is_refused_naming_its_backend(tmp_path):
    from types import SimpleNamespace

    from indexing.snapshots import SnapshotUnsupportedError

    milvus = SimpleNamespace(name="vectors", manifest=SimpleNamespace(backend="milvus"))
    with pytest.raises(SnapshotUnsupportedError, match="'milvus' backend"):
        create_snapshot(milvus, tmp_path)
    assert not (tmp_path / "snapshots").exists()
