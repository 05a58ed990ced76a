"""A real reranker on a live server: an exported `EmbeddingPairsMLP` over MiniLM embeddings, loaded by ONNX Runtime,
reranks a gallery's searches and its evaluation."""

import numpy as np
import pytest

from server_helpers import ServerProcess, items_from, models_copy

RERANKER = "minilm_pairs"
TOP_N = 3


@pytest.fixture(scope="module")
def rerank_server(exported_models, tmp_path_factory, package_texts):
    import torch

    from oml.export import export_reranker
    from oml.models import EmbeddingPairsMLP

    root = tmp_path_factory.mktemp("rerank-live")
    models_dir = models_copy(exported_models, root / "models", names=("minilm_l6",))
    torch.manual_seed(0)
    export_reranker(EmbeddingPairsMLP(384, hidden_dims=(16,), distance_weight=0.5), models_dir, name=RERANKER,
                    version=1, input_kind="embeddings", extractor_name="minilm_l6", extractor_version=1, top_n=TOP_N,
                    modality="text", embedding_size=384)
    server = ServerProcess(root / "data", models_dir, root / "server.log", env={"OML_WATCH_INTERVAL_S": "0"})
    server.start()
    with server.client(headers=server.headers) as client:
        created = client.post("/galleries", json={"name": "ranked", "model": "minilm_l6", "reranker": RERANKER})
        assert created.status_code == 201, created.text
        items = client.post("/galleries/ranked/items", json={"items": items_from(package_texts[:24])})
        assert items.status_code == 200, items.text
    yield server
    server.stop()


def test_the_exported_reranker_reorders_the_top_n_by_its_own_scores(rerank_server, package_texts):
    from oml.inference import OnnxExtractor, OnnxReranker

    query = {"text": package_texts[5]["description"], "k": 6}
    with rerank_server.client() as client:
        entry = {m["name"]: m for m in client.get("/models").json()["models"]}[RERANKER]
        plain = client.post("/galleries/ranked/search", json=query).json()["results"][0]
        reply = client.post("/galleries/ranked/search", json={**query, "rerank": True})
    assert entry["kind"] == "reranker" and entry["versions"][0]["state"] == "ready"
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert (body["reranked"], body["reranker"]) == (True, {"name": RERANKER, "version": 1})
    hits = body["results"][0]
    assert [h["key"] for h in hits[TOP_N:]] == [h["key"] for h in plain[TOP_N:]]

    extractor = OnnxExtractor.load(rerank_server.models_dir / "minilm_l6" / "1", num_threads=1)
    reranker = OnnxReranker.load(rerank_server.models_dir / RERANKER / "1", num_threads=1)
    texts = {row["package"]: row["description"] for row in package_texts[:24]}
    head = [h["key"] for h in plain[:TOP_N]]
    scores = reranker.score(np.repeat(extractor.embed_texts([query["text"]]), TOP_N, axis=0),
                            extractor.embed_texts([texts[key] for key in head]))
    assert [h["key"] for h in hits[:TOP_N]] == [head[i] for i in np.argsort(scores, kind="stable")]
    assert [h["distance"] for h in hits[:TOP_N]] == pytest.approx(sorted(scores.tolist()), abs=1e-4)


def test_evaluate_with_and_without_the_reranker(rerank_server, package_texts):
    queries = [{"text": row["description"], "label": row["source"]} for row in package_texts[:6]]
    keys = [row["package"] for row in package_texts[:6]]
    with rerank_server.client() as client:
        replies = [client.post("/galleries/ranked/evaluate", json={"queries": queries, "k": 5, "rerank": rerank,
                                                                    "exclude_keys": keys})
                   for rerank in (False, True)]
    for reply, rerank in zip(replies, (False, True)):
        assert reply.status_code == 200, reply.text
        body = reply.json()
        assert (body["reranked"], body["n_queries"], body["k"]) == (rerank, 6, 5)
        assert sorted(body["metrics"]["OVERALL"]["cmc"]) == ["1", "3", "5"]
    assert replies[1].json()["reranker"] == {"name": RERANKER, "version": 1}
