"""Regression tests of the bugs the reliability runs found (each failed before its fix)."""

import numpy as np
import pytest

from indexing import Gallery, Item
from indexing.errors import InsufficientStorageError
from oml.artifact import ModelManifest
from server.errors import without_server_paths


def _image_gallery(tmp_path):
    model = ModelManifest(name="m", version=1, modality="image", embedding_size=2,
                          preprocessing={"image_size": [8, 8], "mean": [0.5] * 3, "std": [0.5] * 3})
    return Gallery.create(tmp_path, "g", model, index_spec="Flat")


def test_an_unacknowledged_image_upload_leaves_the_stored_items_file_alone(tmp_path):
    # found by kill -9 during image upserts: the new upload overwrote the file of the stored item before the
    # write committed, so a crash left the acknowledged item pointing at the unacknowledged image
    with _image_gallery(tmp_path) as gallery:
        first = gallery.store_file("k", b"first image", ".png")
        gallery.upsert([Item("k", path=str(first))], np.array([[0.0, 1.0]], np.float32))
        gallery.store_file("k", b"second image", ".png")  # its write never commits (killed, or it failed)
        with open(gallery.get("k").path, "rb") as handle:
            assert handle.read() == b"first image"


def test_a_committed_replace_or_delete_removes_the_old_file(tmp_path):
    with _image_gallery(tmp_path) as gallery:
        first = gallery.store_file("k", b"first image", ".png")
        gallery.upsert([Item("k", path=str(first))], np.array([[0.0, 1.0]], np.float32))
        second = gallery.store_file("k", b"second image", ".png")
        gallery.upsert([Item("k", path=str(second))], np.array([[1.0, 0.0]], np.float32))
        assert not first.exists() and second.read_bytes() == b"second image"
        gallery.delete("k")
        assert not second.exists()


def test_a_full_disk_in_the_item_store_is_insufficient_storage_and_the_store_stays_usable(tmp_path, monkeypatch):
    # found by the disk-full run: SQLITE_FULL surfaced as GalleryCorruptError (409 naming items.sqlite's path)
    with _image_gallery(tmp_path) as gallery:
        store = gallery.store
        store._conn.execute("PRAGMA max_page_count=" + str(store._conn.execute("PRAGMA page_count").fetchone()[0]))
        with pytest.raises(InsufficientStorageError) as raised:
            for i in range(200):
                gallery.upsert([Item(f"k{i}", text="x" * 4000)], np.array([[0.0, 1.0]], np.float32))
        assert str(tmp_path) not in str(raised.value) and "items.sqlite" not in str(raised.value)
        assert not store._conn.in_transaction
        stored = store.count()
        assert len(gallery) == stored
        store._conn.execute("PRAGMA max_page_count=1073741823")
        gallery.upsert([Item("after", text="fits again")], np.array([[1.0, 1.0]], np.float32))
        assert store.count() == stored + 1 and len(gallery) == stored + 1


def test_error_details_name_no_server_path():
    detail = "/srv/oml/data/galleries/f/items.sqlite: item store error: database or disk is full"
    assert without_server_paths(detail, ["/srv/oml/data"]) == "items.sqlite: item store error: database or disk is full"
    assert without_server_paths("metadata and /srv/oml/database", ["/srv/oml/data"]) == "metadata and /srv/oml/database"
