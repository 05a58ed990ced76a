"""Search filters on local galleries: one syntax checked once, SQLite evaluating it exactly as the Python rule does,
the filter applied inside every index engine's search (k hits whenever k items match), and key-ordered listing."""

import json

import numpy as np
import pytest

from indexing import Gallery, Item
from indexing.filtered_search import FilteredSearcher
from indexing.filters import FilterError, milvus_expression, parse_filter
from oml.artifact import ModelManifest

DIM = 8


def _manifest() -> ModelManifest:
    return ModelManifest(name="demo", version=1, modality="text", embedding_size=DIM,
                         preprocessing={"tokenizer": "tokenizer", "max_length": 8})


def _payload(i: int) -> dict:
    payload = {"n": i, "price": i / 4, "colour": ["red", "green", "blue"][i % 3], "even": i % 2 == 0,
               "size": {"w": i % 10}, "code": str(i % 5)}
    if i % 7 == 0:
        del payload["colour"]  # a missing field never matches, "ne" included
    if i % 11 == 0:
        payload["code"] = i % 5  # the number, not the string
    return payload


ITEMS = [Item(f"item-{i:04d}", label=[1, 2, "a", None][i % 4], payload=_payload(i)) for i in range(600)]
VECTORS = np.random.default_rng(0).normal(size=(len(ITEMS), DIM)).astype(np.float32)
FILTERS = [
    {"label": 1}, {"label": [2, "a"]}, {"label": "1"},
    {"payload": {"colour": "red"}}, {"payload": {"colour": {"ne": "red"}}}, {"payload": {"colour": {"in": ["red", 3]}}},
    {"payload": {"n": {"gte": 100, "lt": 130}}}, {"payload": {"price": {"gt": 140.5}}}, {"payload": {"even": True}},
    {"payload": {"even": 1}}, {"payload": {"even": {"gte": 1}}}, {"payload": {"n": True}},
    {"payload": {"even": {"ne": 1}}}, {"payload": {"size.w": {"lte": 1}}}, {"payload": {"code": "3"}},
    {"payload": {"code": 3}},
    {"payload": {"code": {"in": ["0", 0]}}}, {"payload": {"colour": {"lt": 3}}}, {"payload": {"nothing": {"ne": 1}}},
    {"label": [1, 2], "payload": {"n": {"lt": 300}, "colour": {"in": ["green", "blue"]}, "even": False}},
]


@pytest.fixture(scope="module")
def galleries(tmp_path_factory):
    opened = {}
    for spec in ("exact", "Flat", "HNSW16", "IVF8,Flat"):
        gallery = Gallery.create(tmp_path_factory.mktemp(spec.replace(",", "_")), "g", _manifest(), index_spec=spec)
        gallery.upsert(ITEMS, VECTORS)
        opened[spec] = gallery
    yield opened
    for gallery in opened.values():
        gallery.close()


def _truth(search_filter, queries, k):
    matching = [i for i, item in enumerate(ITEMS) if search_filter.matches(item.label, item.payload)]
    distances = np.linalg.norm(queries[:, None] - VECTORS[matching][None], axis=2)
    return [[ITEMS[matching[j]].key for j in np.argsort(row, kind="stable")[:k]] for row in distances], len(matching)


@pytest.mark.parametrize("raw", FILTERS, ids=[json.dumps(f) for f in FILTERS])
def test_sqlite_selects_exactly_what_the_python_rule_passes(galleries, raw):
    search_filter = parse_filter(raw)
    store = galleries["exact"].store
    expected = {item.key for item in ITEMS if search_filter.matches(item.label, item.payload)}
    assert {item.key for item in store.get_many(store.ids_matching(search_filter).tolist()).values()} == expected


@pytest.mark.parametrize("subset_max", [0, 100_000], ids=["id-selector", "exact-subset"])
@pytest.mark.parametrize("spec", ["exact", "Flat", "HNSW16", "IVF8,Flat"])
def test_k_hits_whenever_k_items_match_inside_every_engine(galleries, spec, subset_max):
    gallery = galleries[spec]
    gallery._filtered = FilteredSearcher(gallery.store, exact_subset_max=subset_max)
    queries = np.random.default_rng(1).normal(size=(4, DIM)).astype(np.float32)
    for raw in FILTERS:
        search_filter = parse_filter(raw)
        truth, n_matching = _truth(search_filter, queries, 10)
        hits = gallery.search(queries, k=10, filter=raw)
        assert [len(row) for row in hits] == [min(10, n_matching)] * 4, raw
        assert all(search_filter.matches(hit.label, hit.payload) for row in hits for hit in row), raw
        if spec in ("exact", "Flat") or subset_max:
            assert [[hit.key for hit in row] for row in hits] == truth, raw


def test_labels_keep_working_and_filters_follow_writes(tmp_path):
    with Gallery.create(tmp_path, "g", _manifest(), index_spec="HNSW16") as gallery:
        gallery.upsert(ITEMS[:40], VECTORS[:40])
        query = VECTORS[:1]
        assert {hit.label for hit in gallery.search(query, k=40, labels=[2])[0]} == {2}
        assert len(gallery.search(query, k=40, filter={"label": 2})[0]) == 10
        gallery.upsert([Item("late", label=2, payload={"n": 1})], VECTORS[:1])  # cached ids must not hide it
        assert gallery.search(query, k=1, filter={"label": 2})[0][0].key == "late"
        gallery.delete("late")
        assert "late" not in [hit.key for hit in gallery.search(query, k=40, filter={"label": 2})[0]]
        with pytest.raises(FilterError, match="not both"):
            gallery.search(query, k=1, labels=[2], filter={"label": 2})


@pytest.mark.parametrize("raw, message", [
    ({}, "filter is empty"), ({"labels": 1}, "unknown fields"), ({"label": []}, "empty list"),
    ({"label": True}, "integer or a string"), ({"label": 1.5}, "integer or a string"),
    ({"payload": {}}, "non-empty object"), ({"payload": {"a b": 1}}, "not a valid field name"),
    ({"payload": {'x"] == 1 or payload["y': 1}}, "not a valid field name"), ({"payload": {"$.x": 1}}, "valid field"),
    ({"payload": {"x": {"like": "a%"}}}, 'unknown operator "like"'), ({"payload": {"x": {}}}, "empty object"),
    ({"payload": {"x": {"lt": "b"}}}, "must be a number"), ({"payload": {"x": {"gte": True}}}, "must be a number"),
    ({"payload": {"x": {"in": []}}}, "non-empty list"), ({"payload": {"x": [1, 2]}}, "a string, a number"),
    ({"payload": {"x": None}}, "a string, a number"), ({"payload": {"x": float("nan")}}, "finite"),
    ({"payload": {"x": 2**70}}, "64-bit"), ("label=1", "JSON object"),
])
def test_bad_filters_are_named(raw, message):
    with pytest.raises(FilterError, match=message):
        parse_filter(raw)


def test_the_milvus_expression_quotes_values_and_only_takes_checked_names():
    search_filter = parse_filter({"label": ["a", 2], "payload": {
        "title": 'say "hi" \\ bye', "size.w": {"gte": 2, "lt": 2.5}, "tag": {"in": ["x", 1, True]}, "ok": False}})
    expression = milvus_expression(search_filter, lambda labels: f"label in {labels!r}")
    assert expression == (
        "(label in ['a', 2]) and (payload[\"title\"] == \"say \\\"hi\\\" \\\\ bye\") and "
        "(payload[\"size\"][\"w\"] >= 2) and (payload[\"size\"][\"w\"] < 2.5) and "
        "((payload[\"tag\"] == \"x\" or payload[\"tag\"] == 1)) and "  # true is 1: one test
        "(payload[\"ok\"] == false)")


def test_listing_pages_by_key_and_counting_labels(tmp_path):
    with Gallery.create(tmp_path, "g", _manifest()) as gallery:
        gallery.upsert(ITEMS[:30], VECTORS[:30])
        seen, after = [], None
        while True:
            page = gallery.list_items(7, after)
            if not page:
                break
            seen.extend(item.key for item in page)
            after = page[-1].key
            gallery.upsert([ITEMS[0]], VECTORS[:1])  # replaced under a new id: it does not move
        assert seen == sorted(item.key for item in ITEMS[:30])
        first_a = [item.key for item in gallery.list_items(3, None, labels=["a"])]
        assert first_a == ["item-0002", "item-0006", "item-0010"]
        counts, unlabelled = gallery.label_counts()
        assert counts == [(1, 8), (2, 8), ("a", 7)] and unlabelled == 7
