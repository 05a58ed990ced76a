"""The seams of a gallery: `ItemStore` is an `IItemStore`, and embeddings are checked against the gallery's model."""

import numpy as np
import pytest

from oml.artifact import ModelManifest

from indexing import Gallery, IItemStore, InvalidGalleryNameError, Item, ModelMismatchError, list_galleries
from indexing.store import ItemStore

STORE_VERBS = {
    "count", "revision", "pruned_through", "get", "get_many", "iter_items", "iter_vectors", "changes_since",
    "item_ids", "ids_with_labels", "ids_missing_generation", "hashes_for_keys", "upsert", "delete_keys",
    "put_embeddings", "drop_generation", "drop_generations_except", "prune_changes", "close", "ids_matching",
    "items_by_key", "label_counts",
}


def _manifest(size: int = 4) -> ModelManifest:
    return ModelManifest(name="demo", version=1, modality="text", embedding_size=size,
                         preprocessing={"tokenizer": "tokenizer", "max_length": 16})


def test_item_store_implements_exactly_the_verbs_the_gallery_uses(tmp_path):
    assert IItemStore.__abstractmethods__ == STORE_VERBS
    with Gallery.create(tmp_path, "g", _manifest()) as gallery:
        assert isinstance(gallery.store, IItemStore) and isinstance(gallery.store, ItemStore)


def test_embeddings_of_another_size_are_a_model_mismatch_other_problems_a_value_error(tmp_path):
    with Gallery.create(tmp_path, "g", _manifest(4)) as gallery:
        with pytest.raises(ModelMismatchError, match="query embeddings have size 3"):
            gallery.search(np.zeros(3, np.float32), k=1)  # one vector of the wrong size
        for bad, message in [(np.full((1, 4), np.nan), "NaN"), (np.zeros((1, 1, 4)), "2-D array")]:
            with pytest.raises(ValueError, match=message) as caught:
                gallery.search(bad, k=1)
            assert not isinstance(caught.value, ModelMismatchError)
        assert gallery.search(np.zeros(4, np.float32), k=1) == [[]]


@pytest.mark.parametrize("name", ["half.tmp", "gone.trash"])
def test_names_of_galleries_being_created_or_deleted_are_refused(tmp_path, name):
    with pytest.raises(InvalidGalleryNameError, match="invalid gallery name .*1-64 letters"):
        Gallery.create(tmp_path, name, _manifest())


def test_info_and_list_galleries_report_the_same_summary(tmp_path):
    with Gallery.create(tmp_path, "g", _manifest(), index_spec="Flat") as gallery:
        gallery.upsert([], np.zeros((0, 4), np.float32))
        info = gallery.info()
    assert list_galleries(tmp_path) == [info]


def test_query_labels_may_be_numpy_scalars(tmp_path):
    pytest.importorskip("oml.retrieval")
    with Gallery.create(tmp_path, "g", _manifest()) as gallery:
        ids = gallery.upsert([Item("a", label=1), Item("b", label=2)], np.eye(2, 4, dtype=np.float32))
        results = gallery.to_retrieval_results(np.eye(2, 4, dtype=np.float32), k=2, query_labels=np.array([2, 1]))
        assert [gt.tolist() for gt in results.gt_ids] == [[ids[1]], [ids[0]]]
