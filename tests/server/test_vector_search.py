"""Search by vector, by stored item and with filters over real HTTP (MiniLM and a tiny image model on the shared
server): the hits, the model version in the reply, and a 4xx naming every bad vector, key or filter."""

import json

import numpy as np
import pytest

from server_helpers import items_from

N_ITEMS = 32


@pytest.fixture(scope="module")
def gallery(shared_server, package_texts):
    """32 packages in an HNSW gallery; payload: section, n (0..31), even."""
    items = items_from(package_texts[100:100 + N_ITEMS])
    for i, item in enumerate(items):
        item["payload"] = {**item["payload"], "n": i, "even": i % 2 == 0}
    with shared_server.client(headers=shared_server.headers) as client:
        assert client.post("/galleries", json={"name": "by-vector", "model": "minilm_l6", "index": "HNSW16"}
                           ).status_code == 201
        for start in (0, 16):
            reply = client.post("/galleries/by-vector/items", json={"items": items[start:start + 16]})
            assert reply.status_code == 200, reply.text
        page = client.get("/galleries/by-vector/items", params={"include": "embedding", "limit": 100}).json()
        embeddings = {item["key"]: item["embedding"] for item in page["items"]}
        yield items, embeddings
        client.delete("/galleries/by-vector")


def _keys(reply):
    assert reply.status_code == 200, reply.text
    return [[hit["key"] for hit in row] for row in reply.json()["results"]]


def test_vectors_and_keys_find_what_the_text_finds(shared_server, gallery):
    items, embeddings = gallery
    first, second = items[3], items[20]
    with shared_server.client() as client:
        by_text = client.post("/galleries/by-vector/search", json={"text": first["text"], "k": 5})
        by_vector = client.post("/galleries/by-vector/search", json={"vector": embeddings[first["key"]], "k": 5})
        assert _keys(by_vector) == _keys(by_text) and _keys(by_vector)[0][0] == first["key"]
        assert by_vector.json()["model"] == "minilm_l6" and by_vector.json()["model_version"] == 1
        assert by_vector.json()["results"][0][0]["distance"] == pytest.approx(0, abs=1e-3)
        twice = client.post("/galleries/by-vector/search", json={
            "vectors": [(np.asarray(embeddings[k]) * 3).tolist() for k in (first["key"], second["key"])], "k": 3})
        assert [row[0] for row in _keys(twice)] == [first["key"], second["key"]]  # normalised like the gallery
        by_keys = client.post("/galleries/by-vector/search", json={"keys": [first["key"], second["key"]], "k": 4})
        assert _keys(by_keys)[0] == _keys(by_text)[0][1:5] and second["key"] not in _keys(by_keys)[1]
        assert [len(row) for row in _keys(by_keys)] == [4, 4]
        one = client.post("/galleries/by-vector/search", json={"key": first["key"], "k": N_ITEMS})
        assert len(_keys(one)[0]) == N_ITEMS - 1  # every other item


@pytest.mark.parametrize("body, status, code, words", [
    ({"vector": [0.1] * 10}, 422, "wrong_vector_size",
     "has 10 numbers; gallery 'by-vector' holds embeddings of size 384"),
    ({"vectors": [[0.1] * 384, [0.1] * 383]}, 422, "wrong_vector_size", "vectors[1] has 383 numbers"),
    ('{"vector": [NaN' + ", 0.1" * 383 + "]}", 422, "non_finite_vector", "vector[0] is nan"),
    ('{"vectors": [[0.1' + ", 0.1" * 383 + "], [0.1, Infinity" + ", 0.1" * 382 + "]]}", 422, "non_finite_vector",
     "vectors[1][1] is inf"),
    ({"vector": [1e39] + [0.1] * 383}, 422, "non_finite_vector", "finite float32"),
    ({"vector": [0.0] * 384}, 422, "zero_vector", "all zeros"),
    ({"vector": []}, 422, "invalid_request", "vector"),
    ({"key": "no-such-package"}, 404, "not_found", "no item with key 'no-such-package'"),
    ({"keys": ["apt", "no-such-package"]}, 404, "not_found", "'no-such-package'"),
    ({"key": "x", "text": "y"}, 422, "invalid_request", "exactly one of 'text' or 'texts', 'vector'"),
    ({"vector": [0.1] * 384, "rerank": True}, 501, "not_implemented", "rerank"),
])
def test_bad_vectors_and_keys_are_named(shared_server, gallery, body, status, code, words):
    items, _ = gallery
    if isinstance(body, dict) and body.get("keys"):
        body = {**body, "keys": [items[0]["key"], body["keys"][1]]}
    with shared_server.client() as client:
        if isinstance(body, str):
            reply = client.post("/galleries/by-vector/search", content=body,
                                headers={"content-type": "application/json"})
        else:
            reply = client.post("/galleries/by-vector/search", json=body)
    assert (reply.status_code, reply.json()["error"]) == (status, code), reply.text
    assert words in reply.json()["detail"]


def test_filters_return_k_matching_hits_and_bad_filters_are_named(shared_server, gallery):
    items, embeddings = gallery
    query = {"vector": embeddings[items[5]["key"]]}
    with shared_server.client() as client:
        small = client.post("/galleries/by-vector/search", json={
            **query, "k": 10, "filter": {"payload": {"n": {"lt": 12}, "even": True}}})
        assert sorted(_keys(small)[0]) == sorted(items[i]["key"] for i in range(0, 12, 2))  # all 6 that match
        three = client.post("/galleries/by-vector/search", json={
            **query, "k": 3, "filter": {"payload": {"n": {"in": [1, 2, 3, 30, 31]}}}})
        assert len(_keys(three)[0]) == 3
        assert {h["payload"]["n"] for h in three.json()["results"][0]} <= {1, 2, 3, 30, 31}
        label = items[0]["label"]
        by_label = client.post("/galleries/by-vector/search", json={"texts": ["editor", "library"], "k": 50,
                                                                    "filter": {"label": label}})
        expected = sorted(item["key"] for item in items if item["label"] == label)
        assert [sorted(row) for row in _keys(by_label)] == [expected, expected]
        by_key = client.post("/galleries/by-vector/search", json={"key": items[0]["key"], "k": 50,
                                                                  "filter": {"label": label}})
        assert sorted(_keys(by_key)[0]) == [key for key in expected if key != items[0]["key"]]
        for bad, words in [({"payload": {"n;drop": 1}}, "not a valid field name"),
                           ({"payload": {"n": {"like": 1}}}, "unknown operator"),
                           ({"payload": {"n": {"gt": "5"}}}, "must be a number"), ({}, "filter is empty")]:
            reply = client.post("/galleries/by-vector/search", json={**query, "filter": bad})
            assert (reply.status_code, reply.json()["error"]) == (422, "invalid_filter"), reply.text
            assert words in reply.json()["detail"]


def test_image_search_takes_a_filter_form_field(shared_server, omniglot_files):
    labels = [path.parent.name for path in omniglot_files]
    with shared_server.client(headers=shared_server.headers) as client:
        assert client.post("/galleries", json={"name": "glyph-filter", "model": "tiny_image"}).status_code == 201
        try:
            meta = [{"key": f"g{i}", "label": label, "payload": {"i": i}} for i, label in enumerate(labels)]
            added = client.post("/galleries/glyph-filter/items", data={"items": json.dumps(meta)},
                                files=[("files", (p.name, p.read_bytes(), "image/png")) for p in omniglot_files])
            assert added.status_code == 200, added.text
            image = {"image": ("q.png", omniglot_files[0].read_bytes(), "image/png")}
            reply = client.post("/galleries/glyph-filter/search", files=image,
                                data={"k": "20", "filter": json.dumps({"label": labels[-1],
                                                                       "payload": {"i": {"gte": 1}}})})
            expected = sorted(f"g{i}" for i, label in enumerate(labels) if label == labels[-1] and i >= 1)
            assert sorted(_keys(reply)[0]) == expected
            bad = client.post("/galleries/glyph-filter/search", files=image, data={"filter": "{label"})
            assert (bad.status_code, bad.json()["error"]) == (400, "malformed_json")
            assert "filter" in bad.json()["detail"]
            wrong = client.post("/galleries/glyph-filter/search", files=image, data={"filter": '{"colour": 1}'})
            assert wrong.status_code == 422 and "colour" in wrong.json()["detail"]
            by_vector = client.post("/galleries/glyph-filter/search", json={"key": "g0", "k": 3})
            assert len(_keys(by_vector)[0]) == 3 and "g0" not in _keys(by_vector)[0]
        finally:
            client.delete("/galleries/glyph-filter")
