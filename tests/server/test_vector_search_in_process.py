"""Search by vector and by stored item, filters and listing in process (TestClient, fake extractor and reranker): the
rules that need no ONNX model: reranking a vector or key query, normalising vectors, cursors bound to their listing."""

from typing import Iterator, List

import numpy as np
import pytest
from fastapi.testclient import TestClient

from fake_models import EMBEDDING_SIZE, load_hashing_extractor, load_reversing_reranker, write_model, write_reranker
from server.app import create_app
from server.settings import Settings
from test_in_process import wait_until

MODEL = "hash_text"
TEXTS = {"vim": "Vi IMproved, a text editor", "curl": "transfer data with URLs", "gimp": "an image editor",
         "tar": "an archiving utility", "emacs": "an extensible editor", "nano": "a small editor"}


@pytest.fixture(scope="module")
def client(tmp_path_factory) -> Iterator[TestClient]:
    folder = tmp_path_factory.mktemp("vector-search") / "models"
    write_model(folder, MODEL, 1)
    write_reranker(folder, "text_pairs", 1, "texts", MODEL, 1, top_n=3)
    write_reranker(folder, "vector_pairs", 1, "embeddings", MODEL, 1, top_n=3)
    settings = Settings(data_dir=folder.parent / "data", models_dir=folder, bootstrap_model=None, watch_interval_s=0)
    app = create_app(settings, loader=load_hashing_extractor, reranker_loader=load_reversing_reranker)
    with TestClient(app) as client:
        wait_until(lambda: client.get("/ready").status_code == 200, "the fake models to load")
        for name, reranker in (("by_text", "text_pairs"), ("by_vector", "vector_pairs")):
            created = client.post("/galleries", json={"name": name, "model": MODEL, "reranker": reranker})
            assert created.status_code == 201
            items = [{"key": key, "text": text, "label": "editors" if "editor" in text else "tools",
                      "payload": {"n": i, "small": i % 2 == 0}} for i, (key, text) in enumerate(TEXTS.items())]
            assert client.post(f"/galleries/{name}/items", json={"items": items}).status_code == 200
        yield client


def _keys(reply) -> List[List[str]]:
    assert reply.status_code == 200, reply.text
    return [[hit["key"] for hit in row] for row in reply.json()["results"]]


def _embedding(client: TestClient, key: str) -> List[float]:
    page = client.get("/galleries/by_text/items", params={"include": "embedding", "limit": 100}).json()
    return next(item["embedding"] for item in page["items"] if item["key"] == key)


def test_a_vector_query_is_normalised_like_the_gallery_and_a_key_query_leaves_its_item_out(client):
    vim = np.asarray(_embedding(client, "vim"))
    assert vim.shape == (EMBEDDING_SIZE,) and np.linalg.norm(vim) == pytest.approx(1, abs=1e-5)
    by_text = client.post("/galleries/by_text/search", json={"text": TEXTS["vim"], "k": 4})
    scaled = client.post("/galleries/by_text/search", json={"vector": (vim * 7.5).tolist(), "k": 4})
    assert _keys(scaled) == _keys(by_text) and _keys(scaled)[0][0] == "vim"
    assert scaled.json()["model_version"] == 1
    assert [h["distance"] for h in scaled.json()["results"][0]] == pytest.approx(
        [h["distance"] for h in by_text.json()["results"][0]], abs=1e-5)
    more_like = client.post("/galleries/by_text/search", json={"keys": ["vim", "tar"], "k": 5})
    assert [row[0] for row in _keys(more_like)] != ["vim", "tar"] and [len(r) for r in _keys(more_like)] == [5, 5]
    assert "vim" not in _keys(more_like)[0] and "tar" not in _keys(more_like)[1]
    assert _keys(more_like)[0] == _keys(by_text)[0][1:] + [k for k in _keys(more_like)[0] if k not in _keys(by_text)[0]]
    zero = client.post("/galleries/by_text/search", json={"vector": [0.0] * EMBEDDING_SIZE})
    assert zero.status_code == 422 and zero.json()["error"] == "zero_vector"


def test_rerank_of_a_vector_query_needs_a_reranker_of_embeddings(client):
    vim = _embedding(client, "vim")
    refused = client.post("/galleries/by_text/search", json={"vector": vim, "rerank": True})
    assert refused.status_code == 422 and refused.json()["error"] == "rerank_needs_query"
    assert "text_pairs" in refused.json()["detail"] and "texts" in refused.json()["detail"]
    plain = _keys(client.post("/galleries/by_vector/search", json={"vector": vim, "k": 4}))[0]
    reranked = client.post("/galleries/by_vector/search", json={"vector": vim, "k": 4, "rerank": True})
    assert reranked.json()["reranker"] == {"name": "vector_pairs", "version": 1}
    assert _keys(reranked)[0] == plain[:3][::-1] + plain[3:]  # the fake reranker reverses its top 3


def test_rerank_of_a_key_query_reads_the_stored_text(client):
    plain = _keys(client.post("/galleries/by_text/search", json={"key": "vim", "k": 4}))[0]
    reranked = client.post("/galleries/by_text/search", json={"key": "vim", "k": 4, "rerank": True})
    assert reranked.json()["reranker"] == {"name": "text_pairs", "version": 1}
    assert _keys(reranked)[0] == plain[:3][::-1] + plain[3:]


def test_filters_batched_with_unfiltered_queries_and_a_cursor_belongs_to_its_listing(client):
    filtered = client.post("/galleries/by_text/search", json={"texts": ["editor", "archive"], "k": 10, "filter": {
        "label": "editors", "payload": {"n": {"gte": 1}, "small": True}}})
    assert [sorted(row) for row in _keys(filtered)] == [["emacs", "gimp"]] * 2  # vim: n=0, nano: not small
    page = client.get("/galleries/by_text/items", params={"limit": 2, "label": "editors"}).json()
    assert [item["key"] for item in page["items"]] == ["emacs", "gimp"] and page["next_cursor"]
    other = client.get("/galleries/by_text/items", params={"limit": 2, "cursor": page["next_cursor"]})
    assert other.status_code == 400 and other.json()["error"] == "invalid_cursor"
    assert "another listing" in other.json()["detail"]
    elsewhere = client.get("/galleries/by_vector/items", params={"label": "editors", "cursor": page["next_cursor"]})
    assert elsewhere.status_code == 400
