import numpy as np
import pytest

from indexing import GalleryCorruptError, Item
from indexing.store import ItemStore


def _store(tmp_path) -> ItemStore:
    return ItemStore(tmp_path / "items.sqlite", create=True)


def test_change_log_gives_the_net_effect_after_a_revision(tmp_path):
    store = _store(tmp_path)
    vectors = np.ones((3, 4), np.float32)
    ids, replaced = store.upsert([Item("a"), Item("b"), Item("c")], vectors, generation=1)
    assert replaced == [] and store.revision() == 3
    new_ids, replaced = store.upsert([Item("b", text="changed")], vectors[:1], generation=1)
    assert replaced == [ids[1]] and new_ids[0] > max(ids)  # ids are never reused
    store.delete_keys(["c", "missing"])
    added, deleted = store.changes_since(3)
    assert added.tolist() == new_ids and sorted(deleted.tolist()) == [ids[1], ids[2]]
    added, deleted = store.changes_since(0)
    assert sorted(added.tolist()) == [ids[0], new_ids[0]]
    store.prune_changes(4)
    assert store.pruned_through() == 4 and store.revision() == 6
    assert store.changes_since(4)[1].tolist() == [ids[2]]
    store.close()


def test_labels_keep_their_type_and_embeddings_roundtrip(tmp_path):
    store = _store(tmp_path)
    vectors = np.arange(12, dtype=np.float32).reshape(3, 4)
    ids, _ = store.upsert([Item("a", label=7), Item("b", label="7"), Item("c", label=7)], vectors, generation=1)
    assert store.ids_with_labels([7, "7", 8]) == {7: [ids[0], ids[2]], "7": [ids[1]], 8: []}
    got_ids, got = next(store.iter_vectors(1, 4))
    np.testing.assert_array_equal(got, vectors)
    assert store.get("b").label == "7" and store.get("a").label == 7
    assert store.hashes_for_keys(["a", "zzz"]) == {"a": Item("a", label=7).content_hash}
    store.close()


def test_store_of_wrong_schema_or_not_sqlite_is_refused(tmp_path):
    import sqlite3

    other = tmp_path / "other.sqlite"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.commit()
    with pytest.raises(GalleryCorruptError, match="lacks tables"):
        ItemStore(other)
    text = tmp_path / "text.sqlite"
    text.write_text("hello " * 100)
    with pytest.raises(GalleryCorruptError, match="not a SQLite database"):
        ItemStore(text)
    with pytest.raises(GalleryCorruptError, match="missing"):
        ItemStore(tmp_path / "absent.sqlite")


def test_quick_check_finds_damaged_pages(tmp_path):
    store = _store(tmp_path)
    store.upsert([Item(f"k{i}", text="x" * 200) for i in range(500)], np.ones((500, 64), np.float32), generation=1)
    store.close()
    path = tmp_path / "items.sqlite"
    data = bytearray(path.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 4096] = b"\xff" * 4096
    path.write_bytes(bytes(data))
    damaged = ItemStore(path)  # header and length are intact: only the page check notices
    with pytest.raises(GalleryCorruptError, match="items.sqlite"):
        damaged.quick_check()
