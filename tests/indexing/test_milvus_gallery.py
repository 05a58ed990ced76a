"""Milvus galleries on an embedded milvus-lite per test: the same verbs and answers as local galleries."""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pymilvus", reason="the milvus extra (pymilvus, milvus-lite) is not installed")
pytest.importorskip("milvus_lite", reason="the milvus extra (pymilvus, milvus-lite) is not installed")

from indexing import Gallery, GalleryExistsError, GalleryNotFoundError, IndexSpecError, Item  # noqa: E402
from indexing.milvus_backend import (MilvusGallery, MilvusSetup, close_clients, delete_count,  # noqa: E402
                                     key_item_id, list_milvus_galleries, milvus_index_params)
from oml.inference import OnnxExtractor  # noqa: E402


@pytest.fixture
def setup(tmp_path):
    uri = str(tmp_path / "milvus.db")
    yield MilvusSetup(uri=uri)
    close_clients()
    from milvus_lite.server_manager import server_manager_instance

    server_manager_instance.release_server(uri)


@pytest.fixture(scope="module")
def tiny(tiny_text_model):
    return OnnxExtractor.load(tiny_text_model, device="cpu", num_threads=1)


@pytest.fixture(scope="module")
def other(other_text_model):
    return OnnxExtractor.load(other_text_model, device="cpu", num_threads=1)


def _items(rows, n):
    return [Item(key=package, text=description, label=section, payload={"source": source})
            for package, section, source, description in rows[:n]]


def test_same_hits_and_distances_as_a_local_exact_gallery(setup, tmp_path, tiny, debian_rows):
    items = _items(debian_rows, 300)
    vectors = tiny.embed_texts([item.text for item in items])
    remote = MilvusGallery.create(setup, tmp_path, "docs", tiny.manifest, index_spec="exact")
    local = Gallery.create(tmp_path / "local", "docs", tiny.manifest, index_spec="exact")
    remote.upsert(items, vectors, model=tiny)
    local.upsert(items, vectors, model=tiny)
    queries = tiny.embed_texts(["text editor", "web browser", "python library"])
    for mine, theirs in zip(remote.search(queries, k=10), local.search(queries, k=10)):
        assert [hit.key for hit in mine] == [hit.key for hit in theirs]
        np.testing.assert_allclose([h.distance for h in mine], [h.distance for h in theirs], atol=1e-4)
        assert [(h.label, h.payload, h.text) for h in mine] == [(h.label, h.payload, h.text) for h in theirs]
    assert len(remote) == 300 and remote.info()["backend"] == "milvus" and remote.info()["count"] == 300
    first = items[0]
    stored = remote.get(first.key)
    assert (stored.key, stored.label, stored.text, stored.payload, stored.item_id) == \
        (first.key, first.label, first.text, first.payload, key_item_id(first.key))
    np.testing.assert_allclose(remote.get_embedding(first.key), vectors[0], atol=1e-6)
    assert set(remote.get_embeddings([stored.item_id, 12345])) == {stored.item_id}
    local.close()


def test_label_filter_integer_and_string_labels_and_deletes(setup, tmp_path, tiny):
    gallery = MilvusGallery.create(setup, tmp_path, "mixed", tiny.manifest)
    texts = ["red apple", "green apple", "blue sky", "grey sky", "unlabelled note"]
    labels = ["fruit", "fruit", 7, "7", None]
    items = [Item(key=f"k{i}", text=text, label=label) for i, (text, label) in enumerate(zip(texts, labels))]
    gallery.upsert(items, tiny.embed_texts(texts))
    query = tiny.embed_texts(["apple"])
    assert {hit.key for hit in gallery.search(query, k=5, labels=["fruit"])[0]} == {"k0", "k1"}
    assert [hit.key for hit in gallery.search(query, k=5, labels=[7])[0]] == ["k2"]  # 7 is not "7"
    assert {hit.key for hit in gallery.search(query, k=5, labels=[7, "7"])[0]} == {"k2", "k3"}
    assert gallery.search(query, k=5, labels=["nothing"]) == [[]]
    assert [hit.label for hit in gallery.search(query, k=5, labels=[7])[0]] == [7]
    assert gallery.ids_with_labels(["fruit", 7, None]) == {
        "fruit": sorted([key_item_id("k0"), key_item_id("k1")]), 7: [key_item_id("k2")], None: []}
    assert gallery.delete_many(["k0", "k0", "missing"]) == 1  # milvus-lite answers the keys asked: normalised
    assert gallery.delete("missing") is False and gallery.delete("k1") is True
    assert len(gallery) == 3 and gallery.get("k1") is None
    assert delete_count({"delete_count": 2}, 1) == 1 and delete_count(["a", "b"], 2) == 2


def test_replacing_a_key_keeps_one_row_and_reopen_sees_everything(setup, tmp_path, tiny):
    gallery = MilvusGallery.create(setup, tmp_path, "notes-1", tiny.manifest, index_spec="HNSW8",
                                   index_options={"ef": 32})
    gallery.upsert([Item(key="a", text="first"), Item(key="b", text="second")], tiny.embed_texts(["first", "second"]))
    gallery.upsert([Item(key="a", text="changed", label=1)], tiny.embed_texts(["changed"]))
    gallery.close()
    again = MilvusGallery.open(setup, tmp_path, "notes-1")
    assert len(again) == 2 and again.get("a").text == "changed" and again.get("a").label == 1
    assert again.manifest.index_spec == "HNSW8" and again.manifest.index_options == {"ef": 32}
    assert again.hashes_for_keys(["a", "zz"]) == {"a": Item(key="a", text="changed", label=1).content_hash}
    assert [entry["name"] for entry in list_milvus_galleries(setup)] == ["notes-1"]
    with pytest.raises(GalleryExistsError):
        MilvusGallery.create(setup, tmp_path, "notes-1", tiny.manifest)
    again.drop()
    with pytest.raises(GalleryNotFoundError):
        MilvusGallery.open(setup, tmp_path, "notes-1")
    assert list_milvus_galleries(setup) == []


def test_index_specs():
    setup = MilvusSetup(uri="unused.db", hnsw_m=12, ef_construction=100, ef=40)
    assert milvus_index_params("exact", {}, setup)["index_type"] == "FLAT"
    assert milvus_index_params("HNSW", {}, setup) == {"index_type": "HNSW", "params": {"M": 12, "efConstruction": 100},
                                                      "ef": 40}
    assert milvus_index_params("HNSW32", {"efConstruction": 64, "ef": 16}, setup)["params"] == {
        "M": 32, "efConstruction": 64}
    for spec, options in (("IVF1024,PQ32", {}), ("HNSW", {"nprobe": 4}), ("HNSW1", {})):
        with pytest.raises(IndexSpecError):
            milvus_index_params(spec, options, setup)


def test_reembed_writes_a_shadow_collection_and_switches_the_alias(setup, tmp_path, tiny, other, debian_rows):
    gallery = MilvusGallery.create(setup, tmp_path, "swap", tiny.manifest)
    items = _items(debian_rows, 120)
    gallery.upsert(items, tiny.embed_texts([item.text for item in items]))
    client = setup.client()
    assert client.describe_alias(gallery.alias)["collection_name"] == setup.collection("swap", 1)
    late = Item(key="late-item", text="an item written while re-embedding", label="late")

    def write_meanwhile(done: int) -> None:
        if done == 64:  # another writer during the re-embedding: one add, one delete
            gallery.upsert([late], tiny.embed_texts([late.text]))
            gallery.delete(items[5].key)
            assert gallery.search(tiny.embed_texts(["editor"]), k=1)[0]  # the old collection still answers

    report = gallery.reembed(other, batch_size=64, on_batch=write_meanwhile)
    assert report["items"] >= 120 and report["late_items"] >= 1 and report["deleted_meanwhile"] == 1
    assert gallery.manifest.model_name == "other_text" and gallery.manifest.embedding_size == 48
    assert gallery.manifest.generation == 2
    assert client.describe_alias(gallery.alias)["collection_name"] == setup.collection("swap", 2)
    assert not client.has_collection(setup.collection("swap", 1))
    assert len(gallery) == 120 and gallery.get(items[5].key) is None
    query = other.embed_texts([late.text])
    top = gallery.search(query, k=1)[0][0]
    assert top.key == "late-item" and top.distance == pytest.approx(0.0, abs=1e-3)
    reopened = MilvusGallery.open(setup, tmp_path, "swap")
    assert reopened.manifest.model_name == "other_text" and reopened.manifest.generation == 2


def test_interrupted_swap_after_the_alias_switch_completes_on_open(setup, tmp_path, tiny, other):
    gallery = MilvusGallery.create(setup, tmp_path, "half", tiny.manifest)
    gallery.upsert([Item(key="a", text="alpha")], tiny.embed_texts(["alpha"]))
    new_manifest = gallery.manifest.next_generation(other)
    new_manifest.backend = "milvus"
    shadow = setup.collection("half", 2)
    gallery._create_collection(shadow, new_manifest)
    gallery._embed_into(shadow, other, next(gallery.iter_items()), new_manifest.model_version)
    gallery.catalog.put("half@g2", new_manifest)
    setup.client().alter_alias(shadow, gallery.alias)  # ... and the process dies here
    reopened = MilvusGallery.open(setup, tmp_path, "half")
    assert reopened.manifest.generation == 2 and reopened.manifest.model_name == "other_text"
    assert reopened.search(other.embed_texts(["alpha"]), k=1)[0][0].key == "a"


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_milvus_lite_server_process(tmp_path, tiny):
    command = shutil.which("milvus-lite", path=str(Path(sys.executable).parent)) or shutil.which("milvus-lite")
    if command is None:
        pytest.skip("this milvus-lite has no `milvus-lite` command")
    port = _free_port()
    log = open(tmp_path / "milvus-lite.log", "wb")
    server = subprocess.Popen([command, "server", "--data-dir", str(tmp_path / "served"), "--host", "127.0.0.1",
                               "--port", str(port)], stdout=log, stderr=subprocess.STDOUT,
                              env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        setup = MilvusSetup(uri=f"http://127.0.0.1:{port}")
        deadline = time.monotonic() + 60
        while True:
            try:
                gallery = MilvusGallery.create(setup, tmp_path, "served", tiny.manifest)
                break
            except Exception:
                close_clients()
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.5)
        texts = ["vim text editor", "firefox web browser", "curl downloads files"]
        gallery.upsert([Item(key=f"k{i}", text=t, label=i % 2) for i, t in enumerate(texts)], tiny.embed_texts(texts))
        assert [hit.key for hit in gallery.search(tiny.embed_texts(texts[1:2]), k=1)[0]] == ["k1"]
        assert [hit.key for hit in gallery.search(tiny.embed_texts(texts[1:2]), k=3, labels=[0])[0]] == ["k0", "k2"]
        assert gallery.delete_many(["k0", "nope"]) == 1 and len(gallery) == 2
        gallery.drop()
    finally:
        close_clients()
        server.terminate()
        server.wait(timeout=30)
        log.close()


def test_replaced_and_deleted_items_take_their_stored_files_with_them(setup, tmp_path, tiny):
    """As in a local gallery: a new upload for a key, or a delete, removes the file the old item pointed to (only
    files under this gallery's files/ folder)."""
    gallery = MilvusGallery.create(setup, tmp_path, "photos", tiny.manifest)
    vectors = tiny.embed_texts(["a cat", "a dog", "far away"])
    cat, dog = gallery.store_file("cat", b"cat 1", ".png"), gallery.store_file("dog", b"dog", ".png")
    outside = tmp_path / "elsewhere.png"
    outside.write_bytes(b"not ours")
    gallery.upsert([Item(key="cat", text="a cat", path=str(cat)), Item(key="dog", text="a dog", path=str(dog)),
                    Item(key="far", text="far away", path=str(outside))], vectors)

    new_cat = gallery.store_file("cat", b"cat 2", ".png")
    gallery.upsert([Item(key="cat", text="a cat", path=str(new_cat))], vectors[:1])
    assert not cat.exists() and new_cat.exists() and dog.exists()
    assert gallery.get("cat").path == str(new_cat)
    gallery.upsert([Item(key="cat", text="a cat", path=str(new_cat))], vectors[:1])  # the same file again: kept
    assert new_cat.exists()

    assert gallery.delete_many(["cat", "far", "missing"]) == 2
    assert not new_cat.exists() and dog.exists() and outside.exists()
    assert [path.name for path in (tmp_path / "milvus" / "photos" / "files").rglob("*.png")] == [dog.name]
    gallery.close()
