import logging
import threading

import numpy as np
import pytest

from oml.artifact import ModelManifest
from oml.inference import OnnxExtractor

from indexing import (
    Gallery,
    GalleryCorruptError,
    GalleryExistsError,
    GalleryNotFoundError,
    IndexCorruptError,
    InvalidGalleryNameError,
    Item,
    ModelMismatchError,
    delete_gallery,
    list_galleries,
)


def _manifest(size: int = 8, name: str = "demo", version: int = 1) -> ModelManifest:
    return ModelManifest(name=name, version=version, modality="text", embedding_size=size,
                         preprocessing={"tokenizer": "tokenizer", "max_length": 16})


def _vectors(n: int, dim: int = 8, seed: int = 0) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _items(n: int, start: int = 0):
    return [Item(f"k{i}", label=i % 5, text=f"text {i}", payload={"i": i}) for i in range(start, start + n)]


def test_create_open_list_info_and_delete(tmp_path):
    gallery = Gallery.create(tmp_path, "docs", _manifest(), index_spec="HNSW16")
    gallery.upsert(_items(10), _vectors(10))
    gallery.close()
    with pytest.raises(GalleryExistsError, match="'docs' already exists"):
        Gallery.create(tmp_path, "docs", _manifest())
    listed = list_galleries(tmp_path)
    assert listed == [{"name": "docs", "count": 10, "model": "demo", "model_version": 1, "modality": "text",
                       "embedding_size": 8, "index": "HNSW16", "distance": "euclidean", "generation": 1,
                       "backend": "local"}]
    with Gallery.open(tmp_path, "docs") as reopened:
        assert len(reopened) == 10 and reopened.info()["count"] == 10
    delete_gallery(tmp_path, "docs")
    assert list_galleries(tmp_path) == []
    with pytest.raises(GalleryNotFoundError, match="'docs' not found"):
        Gallery.open(tmp_path, "docs")


@pytest.mark.parametrize("name", ["../escape", "", ".hidden", "a/b", "x" * 65, "with space"])
def test_unsafe_gallery_names_are_refused(tmp_path, name):
    with pytest.raises(InvalidGalleryNameError, match="invalid gallery name"):
        Gallery.create(tmp_path, name, _manifest())


@pytest.mark.parametrize("spec", ["exact", "Flat", "HNSW16", "IVF4,Flat"])
def test_upsert_replaces_by_key_delete_and_search_hits_carry_payloads(tmp_path, spec):
    gallery = Gallery.create(tmp_path, "g", _manifest(), index_spec=spec, index_options={"train_size": 100} if "IVF" in spec else None)
    vectors = _vectors(200)
    ids = gallery.upsert(_items(200), vectors)
    assert len(set(ids)) == 200 and len(gallery) == 200
    hits = gallery.search(vectors[7], k=3, **({"nprobe": 4} if "IVF" in spec else {}))[0]
    assert hits[0].key == "k7" and hits[0].payload == {"i": 7} and hits[0].label == 2 and hits[0].text == "text 7"
    assert hits[0].distance == pytest.approx(0.0, abs=1e-3)
    assert [h.distance for h in hits] == sorted(h.distance for h in hits)
    new_vector = _vectors(1, seed=99)
    gallery.upsert([Item("k7", label=2, text="changed", payload={"i": -7})], new_vector)
    assert len(gallery) == 200
    assert gallery.get("k7").text == "changed"
    np.testing.assert_allclose(gallery.get_embedding("k7"), new_vector[0])
    assert gallery.search(new_vector, k=1)[0][0].key == "k7"
    assert all(hit.key != "k7" for hit in gallery.search(vectors[7], k=5)[0] if hit.distance < 1e-3)
    assert gallery.delete("k8") is True and gallery.delete("k8") is False
    assert len(gallery) == 199 and gallery.get("k8") is None
    assert all(hit.key != "k8" for hit in gallery.search(vectors[8], k=10)[0])
    gallery.close()
    with Gallery.open(tmp_path, "g") as reopened:
        assert len(reopened) == 199
        assert reopened.search(new_vector, k=1)[0][0].key == "k7"


def test_repeated_key_within_one_upsert_keeps_the_last(tmp_path):
    with Gallery.create(tmp_path, "g", _manifest(), index_spec="Flat") as gallery:
        vectors = _vectors(2)
        ids = gallery.upsert([Item("same", text="first"), Item("same", text="second")], vectors)
        assert ids[0] == ids[1] and len(gallery) == 1 and gallery.get("same").text == "second"


def test_index_file_behind_the_store_is_caught_up_on_open(tmp_path):
    gallery = Gallery.create(tmp_path, "g", _manifest(), index_spec="HNSW16", autosave_changes=10**9)
    gallery.upsert(_items(50), _vectors(50))
    gallery.save_index()
    gallery.upsert(_items(30, start=50), _vectors(30, seed=1))
    gallery.delete_many(["k0", "k1"])
    # the process "dies" here: no close, so the index file on disk still reflects only the first 50 items
    reopened = Gallery.open(tmp_path, "g")
    assert len(reopened) == 78 == reopened.store.count()
    assert reopened.search(_vectors(30, seed=1)[5], k=1)[0][0].key == "k55"
    assert all(hit.key not in ("k0", "k1") for hit in reopened.search(_vectors(50)[:2], k=5)[0])
    reopened.close()


def test_corrupt_index_file_is_rebuilt_with_a_warning_or_raises_when_asked(tmp_path, caplog):
    with Gallery.create(tmp_path, "g", _manifest(), index_spec="Flat") as gallery:
        gallery.upsert(_items(40), _vectors(40))
    index_path = tmp_path / "galleries" / "g" / "index.g1.faiss"
    index_path.write_bytes(index_path.read_bytes()[:-10])
    with pytest.raises(IndexCorruptError, match="index.g1.faiss"):
        Gallery.open(tmp_path, "g", on_corrupt_index="raise")
    with caplog.at_level(logging.WARNING, logger="indexing.gallery"):
        with Gallery.open(tmp_path, "g") as gallery:
            assert len(gallery) == 40
            assert gallery.search(_vectors(40)[3], k=1)[0][0].key == "k3"
    assert "rebuilding the index from the item store" in caplog.text
    index_path.unlink()
    with Gallery.open(tmp_path, "g") as gallery:
        assert len(gallery) == 40
    assert index_path.exists()


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupt_item_store_is_a_clear_error(tmp_path, damage):
    with Gallery.create(tmp_path, "g", _manifest(), index_spec="exact") as gallery:
        gallery.upsert(_items(300, start=0), _vectors(300))
    store = tmp_path / "galleries" / "g" / "items.sqlite"
    for leftover in store.parent.glob("items.sqlite-*"):
        leftover.unlink()  # closed cleanly, the WAL is checkpointed already
    data = store.read_bytes()
    store.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"\x00garbage" * 1000)
    with pytest.raises(GalleryCorruptError, match="items.sqlite"):
        Gallery.open(tmp_path, "g")
    assert list_galleries(tmp_path)[0]["error"].startswith(str(store))


def test_embeddings_of_another_size_or_model_are_refused(tmp_path):
    with Gallery.create(tmp_path, "g", _manifest(8)) as gallery:
        with pytest.raises(ModelMismatchError, match="size 16.*size 8 from demo v1"):
            gallery.upsert(_items(2), _vectors(2, dim=16))
        with pytest.raises(ModelMismatchError, match="size 4"):
            gallery.search(np.zeros((1, 4), np.float32), k=1)
        with pytest.raises(ModelMismatchError, match="holds embeddings of demo v1 .*not of demo v2"):
            gallery.upsert(_items(1), _vectors(1), model=_manifest(8, version=2))
        with pytest.raises(ModelMismatchError, match="not of other v1"):
            gallery.check_model(_manifest(8, name="other"))
        with pytest.raises(ValueError, match="2 items but 3 embeddings"):
            gallery.upsert(_items(2), _vectors(3))


def test_concurrent_searches_and_upserts_from_threads(tmp_path):
    gallery = Gallery.create(tmp_path, "g", _manifest(), index_spec="HNSW16")
    gallery.upsert(_items(100), _vectors(100))
    errors = []
    stop = threading.Event()

    def searcher():
        queries = _vectors(4, seed=5)
        try:
            while not stop.is_set():
                for hits in gallery.search(queries, k=5):
                    assert len(hits) >= 1
        except Exception as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=searcher) for _ in range(3)]
    for thread in threads:
        thread.start()
    for start in range(100, 600, 50):
        gallery.upsert(_items(50, start=start), _vectors(50, seed=start))
        gallery.delete(f"k{start - 100}")
    stop.set()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(gallery) == gallery.store.count() == 590
    gallery.close()


def test_store_file_keeps_a_copy_under_files(tmp_path):
    with Gallery.create(tmp_path, "g", _manifest()) as gallery:
        path = gallery.store_file("photo/1", b"\x89PNG fake", ".png")
        assert path.read_bytes() == b"\x89PNG fake"
        assert path.is_relative_to(tmp_path / "galleries" / "g" / "files")
        with pytest.raises(ValueError, match="suffix"):
            gallery.store_file("x", b"", "../../evil")


def test_to_retrieval_results_gives_item_ids_and_ground_truth_from_labels(tmp_path):
    pytest.importorskip("oml.retrieval")
    with Gallery.create(tmp_path, "g", _manifest(), index_spec="exact") as gallery:
        vectors = _vectors(30)
        ids = gallery.upsert(_items(30), vectors)
        results = gallery.to_retrieval_results(vectors[:3], k=4, query_labels=[0, 1, 2])
        assert results.retrieved_ids[0][0].item() == ids[0]
        assert sorted(results.gt_ids[1].tolist()) == [ids[i] for i in range(30) if i % 5 == 1]
        assert len(results.distances[2]) == 4


def test_reembed_swaps_model_and_index_while_searches_keep_working(tmp_path, tiny_text_model, other_text_model):
    old = OnnxExtractor.load(tiny_text_model, num_threads=1)
    new = OnnxExtractor.load(other_text_model, num_threads=1)
    texts = [f"package number {i} does thing {i % 7}" for i in range(120)]
    gallery = Gallery.create(tmp_path, "texts", old.manifest, index_spec="HNSW16")
    gallery.upsert([Item(f"t{i}", text=t) for i, t in enumerate(texts)], old.embed_texts(texts))
    seen_during = []

    def during(done: int) -> None:
        # old model still serving, and a write arriving mid-way is carried over to the new model
        seen_during.append(gallery.search(old.embed_texts([texts[3]]), k=1)[0][0].key)
        if done == 40:
            gallery.upsert([Item("late", text="a late arrival")], old.embed_texts(["a late arrival"]))
        if done == 80:
            gallery.delete("t0")  # already re-embedded: must leave the shadow index too
            gallery.upsert([Item("t0", text=texts[0])], old.embed_texts([texts[0]]))

    report = gallery.reembed(new, batch_size=40, on_batch=during)
    assert set(seen_during) == {"t3"} and report["items"] == 121
    assert gallery.info()["model"] == "other_text" and gallery.info()["embedding_size"] == 48
    assert gallery.search(new.embed_texts([texts[9]]), k=1)[0][0].key == "t9"
    assert gallery.search(new.embed_texts(["a late arrival"]), k=1)[0][0].key == "late"
    with pytest.raises(ModelMismatchError):
        gallery.search(old.embed_texts([texts[3]]), k=1)
    gallery.close()
    folder = tmp_path / "galleries" / "texts"
    assert sorted(p.name for p in folder.glob("index.*")) == ["index.g2.faiss"]
    with Gallery.open(tmp_path, "texts") as reopened:
        assert len(reopened) == 121 and reopened.manifest.generation == 2
        np.testing.assert_allclose(reopened.get_embedding("t9"), new.embed_texts([texts[9]])[0], atol=1e-5)
