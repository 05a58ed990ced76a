"""Disk full: the data folder on a 20 MiB tmpfs (else a loop device), filled up. Writes answer 507
`insufficient_storage` naming no server path, searches keep answering, nothing stored is damaged, and once space is
freed writes work again and the index file is saved."""

import json

import pytest

from invariants import ItemState, Ledger, check_invariants, read_store
from rel_harness import RelServer, png_bytes, tar_of, write_fake_model
from small_disk import fill_up, small_disk


def _items(prefix, n, size=1):
    return [{"key": f"{prefix}{i}", "text": f"{prefix} item {i} " * size, "label": i % 3} for i in range(n)]


def _states(items):
    return {item["key"]: ItemState.of(item["text"], item["label"]) for item in items}


def _store_revision(path):
    import sqlite3

    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return db.execute("SELECT seq FROM sqlite_sequence WHERE name='changes'").fetchone()[0]
    finally:
        db.close()


def _assert_insufficient_storage(reply, disk):
    assert reply.status_code == 507, reply.text
    body = reply.json()
    assert body["error"] == "insufficient_storage"
    assert str(disk) not in body["detail"] and "/galleries/" not in body["detail"] and ".sqlite" not in body["detail"]


def test_a_full_disk_is_a_clean_507_and_nothing_stored_is_harmed(tmp_path):
    with small_disk(20) as (disk, how):
        if disk is None:
            pytest.skip(how)
        models = tmp_path / "models"
        write_fake_model(models, "text_model", 1)
        write_fake_model(models, "image_model", 1, "image")
        server = RelServer(disk / "data", models, tmp_path / "server.log",
                           env={"OML_SYNC_ITEMS_LIMIT": "8", "OML_JOB_CHUNK_SIZE": "16"})
        ledger = Ledger()
        server.start()
        try:
            with server.client() as client:
                for name, model, modality in (("f", "text_model", "text"), ("p", "image_model", "image")):
                    assert client.post("/galleries", json={"name": name, "model": model,
                                                           "index": "Flat"}).status_code == 201
                    ledger.gallery_created(name, model, modality, 1)
                first = _items("kept", 8)
                assert client.post("/galleries/f/items", json={"items": first}).status_code == 200
                ledger.write("f", _states(first), acked=True)
                image = png_bytes(1)
                assert client.post("/galleries/p/items", files=[("files", ("a.png", image, "image/png"))],
                                   data={"items": json.dumps([{"key": "a", "label": 1}])}).status_code == 200
                ledger.write("p", {"a": ItemState.of(None, 1, None, image)}, acked=True)

                filler = fill_up(disk)
                # SQLite may still fit a few writes into pages it holds already: write until the disk says no
                for batch in range(200):
                    items = _items(f"more{batch}-", 8, size=30)
                    ledger.write("f", _states(items), acked=False)
                    reply = client.post("/galleries/f/items", json={"items": items})
                    if reply.status_code != 200:
                        break
                    ledger.write("f", _states(items), acked=True)
                _assert_insufficient_storage(reply, disk)
                _assert_insufficient_storage(client.post("/galleries/f/items", json={"items": _items("job", 20)}),
                                             disk)
                _assert_insufficient_storage(client.post(
                    "/galleries/p/items", files=[("files", ("b.png", png_bytes(2), "image/png"))]), disk)
                _assert_insufficient_storage(client.post(
                    "/galleries/p/items/archive", files={"archive": ("a.tar", tar_of({"d/c.png": png_bytes(3)}))}),
                    disk)
                _assert_insufficient_storage(client.post("/galleries", json={"name": "g", "model": "text_model"}),
                                             disk)
                delete = client.delete("/galleries/f/items/kept1")
                if delete.status_code == 200:
                    ledger.write("f", {"kept1": None}, acked=True)
                else:
                    _assert_insufficient_storage(delete, disk)
                assert client.get("/jobs").status_code == 200
                hits = client.post("/galleries/f/search", json={"text": first[3]["text"], "k": 1}).json()
                assert hits["results"][0][0]["key"] == "kept3"
                assert check_invariants(server.url, server.data_dir, ledger) == []

            server.stop()  # its index save fails on the full disk: the change log keeps what it would have saved
            server.start()
            assert check_invariants(server.url, server.data_dir, ledger) == []

            filler.unlink()
            with server.client() as client:
                again = _items("again", 8)
                assert client.post("/galleries/f/items", json={"items": again}).status_code == 200
                ledger.write("f", _states(again), acked=True)
                assert client.post("/galleries", json={"name": "g", "model": "text_model"}).status_code == 201
                ledger.gallery_created("g", "text_model", "text", 1)
            assert not list((disk / "data" / "uploads").glob("*.archive")), "a partial upload was left behind"
            assert check_invariants(server.url, server.data_dir, ledger) == []
            server.stop()  # now the index file is saved, reflecting every stored change
            from indexing.factory import load_index

            index = load_index(disk / "data" / "galleries" / "f" / "index.g1.faiss")
            stored, _, problems = read_store(disk / "data", "f")
            assert problems == [] and len(index) == len(stored)
            assert index.metadata["revision"] == _store_revision(disk / "data" / "galleries" / "f" / "items.sqlite")
        finally:
            server.kill()
