"""A gallery names its reranker in its manifest; stored embeddings and labels are read back in bulk for reranking
and evaluation."""

import json

import numpy as np
import pytest

from indexing import Gallery, Item
from indexing.manifest import MANIFEST_FILE, GalleryManifest
from oml.artifact import ModelManifest


def _model(version: int = 1) -> ModelManifest:
    return ModelManifest(name="demo", version=version, modality="text", embedding_size=4,
                         preprocessing={"tokenizer": "tokenizer", "max_length": 16})


class _ShiftingExtractor:
    """Embeds text i as the unit vector on axis i % 4, for re-embedding without ONNX."""

    def __init__(self, version: int):
        self.manifest = _model(version)
        self.modality = "text"
        self.embedding_size = 4

    def embed(self, texts, batch_size=None) -> np.ndarray:
        return np.eye(4, dtype=np.float32)[[len(text) % 4 for text in texts]]

    embed_texts = embed


@pytest.fixture
def gallery(tmp_path):
    gallery = Gallery.create(tmp_path, "docs", _model())
    gallery.upsert([Item(f"k{i}", label=i % 2, text="x" * i) for i in range(4)], np.eye(4, dtype=np.float32))
    yield gallery
    gallery.close()


def test_the_reranker_is_written_to_the_manifest_and_survives_reopening(tmp_path, gallery):
    assert gallery.manifest.reranker is None
    assert gallery.set_reranker("pairs").reranker == "pairs"
    on_disk = json.loads((gallery.folder / MANIFEST_FILE).read_text())
    assert on_disk["reranker"] == "pairs"
    gallery.close()
    with Gallery.open(tmp_path, "docs") as reopened:
        assert reopened.manifest.reranker == "pairs"
        reopened.set_reranker(None)
    with Gallery.open(tmp_path, "docs") as reopened:
        assert reopened.manifest.reranker is None


def test_a_manifest_written_before_rerankers_loads_without_one(tmp_path, gallery):
    path = gallery.folder / MANIFEST_FILE
    data = json.loads(path.read_text())
    del data["reranker"]
    path.write_text(json.dumps(data))
    assert GalleryManifest.load(gallery.folder).reranker is None


def test_a_blank_reranker_name_is_refused(gallery):
    with pytest.raises(ValueError, match="reranker must be"):
        gallery.set_reranker("  ")
    assert gallery.manifest.reranker is None


def test_reembedding_keeps_the_reranker_even_one_set_while_it_ran(gallery):
    gallery.set_reranker("first")
    gallery.reembed(_ShiftingExtractor(2), batch_size=2, on_batch=lambda done: gallery.set_reranker("second"))
    assert (gallery.manifest.model_version, gallery.manifest.reranker) == (2, "second")
    assert GalleryManifest.load(gallery.folder).reranker == "second"


def test_embeddings_and_labelled_ids_come_back_in_bulk(gallery):
    ids = [row[0].item_id for row in gallery.search(np.eye(4, dtype=np.float32), k=1)]
    found = gallery.get_embeddings(ids + [999])
    assert sorted(found) == sorted(ids)
    for position, item_id in enumerate(ids):
        np.testing.assert_array_equal(found[item_id], np.eye(4, dtype=np.float32)[position])
    assert gallery.ids_with_labels([1, 0, 7, None]) == {1: [ids[1], ids[3]], 0: [ids[0], ids[2]], 7: [], None: []}
