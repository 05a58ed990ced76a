"""The same filters and listings on a Milvus gallery (embedded milvus-lite) as on a local one: one filter syntax, the
same hits, the same pages in key order and the same label counts."""

import numpy as np
import pytest

pytest.importorskip("pymilvus", reason="the milvus extra (pymilvus, milvus-lite) is not installed")
pytest.importorskip("milvus_lite", reason="the milvus extra (pymilvus, milvus-lite) is not installed")

from indexing import Gallery  # noqa: E402
from indexing.milvus_backend import MilvusGallery, MilvusSetup, close_clients  # noqa: E402
from test_filters import FILTERS, ITEMS, VECTORS, _manifest  # noqa: E402

N_ITEMS = 200


def test_milvus_filters_hits_pages_and_labels_match_a_local_gallery(tmp_path):
    uri = str(tmp_path / "milvus.db")
    setup = MilvusSetup(uri=uri)
    remote = MilvusGallery.create(setup, tmp_path, "filtered", _manifest(), index_spec="exact")
    local = Gallery.create(tmp_path / "local", "filtered", _manifest(), index_spec="exact")
    try:
        order = np.random.default_rng(2).permutation(N_ITEMS)  # inserted out of key order, in several segments
        for part in np.array_split(order, 3):
            remote.upsert([ITEMS[i] for i in part], VECTORS[part])
            remote.flush()
        local.upsert(ITEMS[:N_ITEMS], VECTORS[:N_ITEMS])
        queries = np.random.default_rng(3).normal(size=(3, VECTORS.shape[1])).astype(np.float32)
        for raw in FILTERS:
            mine, theirs = remote.search(queries, k=8, filter=raw), local.search(queries, k=8, filter=raw)
            assert [[hit.key for hit in row] for row in mine] == [[hit.key for hit in row] for row in theirs], raw

        for labels in (None, ["a", 2]):
            pages, after = [], None
            while True:
                page = remote.list_items(23, after, labels)
                if not page:
                    break
                pages.extend(item.key for item in page)
                after = page[-1].key
            assert pages == [item.key for item in local.list_items(N_ITEMS, None, labels)]
        assert remote.list_items(2, "item-0100")[1].payload == ITEMS[102].payload
        assert remote.label_counts() == local.label_counts()
    finally:
        local.close()
        remote.drop()
        close_clients()
        from milvus_lite.server_manager import server_manager_instance

        server_manager_instance.release_server(uri)
