"""Text search over real HTTP: single and batched queries, k limits, rerank, bad input."""

import pytest

from server_helpers import items_from


@pytest.fixture(scope="module")
def packages(shared_server, package_texts):
    items = items_from(package_texts[:16])
    with shared_server.client(headers=shared_server.headers) as client:
        assert client.post("/galleries", json={"name": "search-text", "model": "minilm_l6", "index": "Flat"}).status_code == 201
        assert client.post("/galleries/search-text/items", json={"items": items}).status_code == 200
        yield items
        client.delete("/galleries/search-text")


def test_search_returns_nearest_items_with_labels_payloads_and_model_version(shared_server, packages):
    with shared_server.client() as client:
        reply = client.post("/galleries/search-text/search", json={"text": packages[3]["text"], "k": 4})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["model"] == "minilm_l6" and body["model_version"] == 1 and body["gallery"] == "search-text"
    hits = body["results"][0]
    assert len(hits) == 4
    assert hits[0]["key"] == packages[3]["key"] and hits[0]["label"] == packages[3]["label"]
    assert hits[0]["payload"] == packages[3]["payload"]
    assert [h["distance"] for h in hits] == sorted(h["distance"] for h in hits)


def test_several_texts_get_one_result_list_each(shared_server, packages):
    with shared_server.client() as client:
        reply = client.post("/galleries/search-text/search",
                            json={"texts": [packages[0]["text"], packages[7]["text"]], "k": 2})
    results = reply.json()["results"]
    assert [row[0]["key"] for row in results] == [packages[0]["key"], packages[7]["key"]]


def test_k_larger_than_gallery_returns_all_items(shared_server, packages):
    with shared_server.client() as client:
        reply = client.post("/galleries/search-text/search", json={"text": "library", "k": 50})
    assert len(reply.json()["results"][0]) == len(packages)


def test_rerank_answers_501_until_a_reranker_is_configured(shared_server, packages):
    with shared_server.client() as client:
        reply = client.post("/galleries/search-text/search", json={"text": "editor", "rerank": True})
    assert reply.status_code == 501 and "rerank" in reply.json()["detail"]


@pytest.mark.parametrize("body, words", [
    ({"text": "x", "k": 0}, "k must be between 1 and 50"),
    ({"text": "x", "k": 51}, "k must be between 1 and 50"),
    ({"text": "x", "k": -3}, "k must be between 1 and 50"),
    ({"text": ""}, "empty"),
    ({"text": "x" * 501}, "over the limit of 500"),
    ({"texts": ["fine", " "]}, "texts[1] is empty"),
    ({"k": 3}, "exactly one of 'text' or 'texts'"),
    ({"text": "a", "texts": ["b"]}, "exactly one of 'text' or 'texts'"),
    ({"text": "a", "k": "ten"}, "k"),
    ({"text": 5}, "text"),
])
def test_bad_queries_are_422_naming_the_problem(shared_server, packages, body, words):
    with shared_server.client() as client:
        reply = client.post("/galleries/search-text/search", json=body)
    assert reply.status_code == 422, reply.text
    assert words in reply.json()["detail"]


def test_malformed_json_unknown_gallery_and_image_to_text_gallery(shared_server, packages, omniglot_files):
    with shared_server.client() as client:
        broken = client.post("/galleries/search-text/search", content=b'{"text": "a",',
                             headers={"Content-Type": "application/json"})
        assert broken.status_code == 400 and "malformed JSON" in broken.json()["detail"]
        unknown = client.post("/galleries/nowhere/search", json={"text": "a"})
        assert unknown.status_code == 404 and "nowhere" in unknown.json()["detail"]
        image = client.post("/galleries/search-text/search",
                            files={"image": ("q.png", omniglot_files[0].read_bytes(), "image/png")})
        assert image.status_code == 422 and image.json()["error"] == "modality_mismatch"
        assert client.post("/galleries/search-text/search", json={"text": "still serving"}).status_code == 200
