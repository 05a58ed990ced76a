"""Rerankers in process (TestClient, fake extractor and reranker loaders): model listing and hot-loading, a gallery's
reranker binding and its refusals, reranked search, micro-batched scoring and the evaluate endpoint."""

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator, List

import pytest
from fastapi.testclient import TestClient

from fake_models import ReversingReranker, load_hashing_extractor, load_reversing_reranker, write_model, write_reranker
from server.app import create_app
from server.settings import Settings
from test_in_process import png, text_items, wait_until

KEY = {"X-API-Key": "secret"}
MODEL, IMAGE_MODEL, SWAP_MODEL = "hash_text", "hash_image", "hash_swap"
TEXTS = {"vim": "Vi IMproved, a text editor", "curl": "transfer data with URLs", "gimp": "an image editor",
         "tar": "an archiving utility", "emacs": "an extensible editor"}
MAX_EVALUATE_QUERIES = 3


# name: (input, extractor, extractor version, top_n, modality), each version 1
RERANKERS = {"text_pairs": ("texts", MODEL, 1, 3, "text"), "vector_pairs": ("embeddings", MODEL, 1, 2, "text"),
             "swap_pairs": ("embeddings", SWAP_MODEL, 1, 2, "text"),
             "image_pairs": ("images", IMAGE_MODEL, 1, 2, "image"),
             "foreign_pairs": ("texts", "another_model", 1, 2, "text"),  # reranks another extractor
             "later_pairs": ("embeddings", MODEL, 2, 2, "text"),  # scores embeddings of a version to come
             "short_pairs": ("texts", MODEL, 1, 2, "text")}  # fails its probe (see fake_models)


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("rerank-in-process") / "models"
    for name, modality in ((MODEL, "text"), (SWAP_MODEL, "text"), (IMAGE_MODEL, "image"), ("mixed", "text")):
        write_model(folder, name, 1, modality=modality)
    for name, (input_kind, extractor, version, top_n, modality) in RERANKERS.items():
        write_reranker(folder, name, 1, input_kind, extractor, version, top_n=top_n, modality=modality)
    write_reranker(folder, "mixed", 2, "texts", "mixed", 1, top_n=2)  # a reranker version of an extractor model
    return folder


@pytest.fixture(scope="module")
def client(models_dir) -> Iterator[TestClient]:
    settings = Settings(data_dir=models_dir.parent / "data", models_dir=models_dir, bootstrap_model=None,
                        watch_interval_s=0, api_key="secret", max_evaluate_queries=MAX_EVALUATE_QUERIES)
    app = create_app(settings, loader=load_hashing_extractor, reranker_loader=load_reversing_reranker)
    with TestClient(app, headers=KEY) as client:
        wait_until(lambda: client.get("/ready").status_code == 200, "the fake models to load")
        created = client.post("/galleries", json={"name": "docs", "model": MODEL, "reranker": "text_pairs"})
        assert created.status_code == 201, created.text
        assert client.post("/galleries/docs/items", json=text_items(TEXTS)).status_code == 200
        yield client


def keys(reply) -> List[List[str]]:
    assert reply.status_code == 200, reply.text
    return [[hit["key"] for hit in row] for row in reply.json()["results"]]


def models(client) -> dict:
    return {entry["name"]: entry for entry in client.get("/models").json()["models"]}


def test_models_lists_both_kinds_and_refuses_a_reranker_that_fails_its_probe(client):
    listed = models(client)
    assert listed[MODEL]["kind"] == "extractor" and listed[MODEL]["reranker"] is None
    assert listed["text_pairs"]["kind"] == "reranker" and listed["text_pairs"]["active_version"] == 1
    assert listed["text_pairs"]["reranker"] == {"input": "texts", "extractor": {"name": MODEL, "version": 1},
                                                "top_n": 3}
    assert listed["text_pairs"]["versions"][0]["loaded"] is True
    short = listed["short_pairs"]
    assert short["active_version"] is None and "shape (0,)" in short["versions"][0]["error"]
    mixed = {v["version"]: v for v in listed["mixed"]["versions"]}
    assert listed["mixed"]["kind"] == "extractor" and mixed[2]["state"] == "failed"
    assert "is a reranker but model 'mixed' is an extractor" in mixed[2]["error"]
    assert client.get("/ready").json()["ready"] is True


def test_a_gallery_names_its_reranker_and_drops_it(client):
    assert client.get("/galleries/docs").json()["reranker"] == "text_pairs"
    client.post("/galleries", json={"name": "plain", "model": MODEL})
    assert client.get("/galleries/plain").json()["reranker"] is None
    named = client.patch("/galleries/plain", json={"reranker": "vector_pairs"})
    assert named.status_code == 200 and named.json()["reranker"] == "vector_pairs"
    listed = {g["name"]: g.get("reranker") for g in client.get("/galleries").json()["galleries"]}
    assert listed["plain"] == "vector_pairs"
    dropped = client.patch("/galleries/plain", json={"reranker": None})
    assert dropped.status_code == 200 and dropped.json()["reranker"] is None
    client.delete("/galleries/plain")


@pytest.mark.parametrize("reranker, status, code, detail", [
    ("nowhere", 404, "not_found", "unknown model 'nowhere'"),
    (MODEL, 404, "not_found", "is an extractor, not a reranker"),
    ("short_pairs", 404, "not_found", "has no usable version"),
    ("image_pairs", 422, "reranker_mismatch", "reranks image items"),
    ("foreign_pairs", 422, "reranker_mismatch", "reranks the retrieval of another_model"),
    ("later_pairs", 422, "reranker_mismatch", f"scores embeddings of {MODEL} v2"),
    ("Bad Name", 422, "invalid_request", "reranker"),
])
def test_a_reranker_that_does_not_fit_is_refused_and_nothing_changes(client, reranker, status, code, detail):
    patched = client.patch("/galleries/docs", json={"reranker": reranker})
    created = client.post("/galleries", json={"name": "refused", "model": MODEL, "reranker": reranker})
    for reply in (patched, created):
        assert (reply.status_code, reply.json()["error"]) == (status, code), reply.text
        assert detail in reply.json()["detail"]
    assert client.get("/galleries/refused").status_code == 404
    assert client.get("/galleries/docs").json()["reranker"] == "text_pairs"


def test_naming_a_reranker_needs_the_api_key(client):
    reply = client.patch("/galleries/docs", json={"reranker": None}, headers={"X-API-Key": ""})
    assert (reply.status_code, reply.json()["error"]) == (401, "unauthorized")
    assert client.get("/galleries/docs").json()["reranker"] == "text_pairs"


def test_rerank_reorders_only_the_top_n_and_names_the_reranker(client):
    query = {"text": TEXTS["vim"], "k": 5}
    plain = client.post("/galleries/docs/search", json=query)
    assert plain.json()["reranked"] is False and plain.json()["reranker"] is None
    order = keys(plain)[0]
    reply = client.post("/galleries/docs/search", json={**query, "rerank": True})
    assert keys(reply)[0] == order[:3][::-1] + order[3:]  # the reranker's top_n is 3
    assert reply.json()["reranked"] is True and reply.json()["reranker"] == {"name": "text_pairs", "version": 1}
    distances = [hit["distance"] for hit in reply.json()["results"][0]]
    assert distances == sorted(distances)
    two = client.post("/galleries/docs/search", json={**query, "rerank": True, "rerank_top_n": 2})
    assert keys(two)[0] == order[:2][::-1] + order[2:]
    clipped = client.post("/galleries/docs/search", json={**query, "k": 4, "rerank": True, "rerank_top_n": 50})
    assert keys(clipped)[0] == order[:4][::-1]


def test_a_reranker_of_embeddings_scores_the_stored_vectors(client):
    client.post("/galleries", json={"name": "vectors", "model": MODEL, "reranker": "vector_pairs"})
    client.post("/galleries/vectors/items", json=text_items(TEXTS))
    queries = {"texts": [TEXTS["gimp"], TEXTS["tar"]], "k": 4}
    order = keys(client.post("/galleries/vectors/search", json=queries))
    reranked = client.post("/galleries/vectors/search", json={**queries, "rerank": True})
    assert keys(reranked) == [row[:2][::-1] + row[2:] for row in order]
    client.delete("/galleries/vectors")


@pytest.mark.parametrize("body", [{"text": "editor", "rerank": True, "rerank_top_n": 0},
                                  {"text": "editor", "rerank": True, "rerank_top_n": -3},
                                  {"text": "editor", "rerank": True, "rerank_top_n": "two"}])
def test_rerank_top_n_below_one_is_refused(client, body):
    reply = client.post("/galleries/docs/search", json=body)
    assert (reply.status_code, reply.json()["error"]) == (422, "invalid_request")
    assert "rerank_top_n" in reply.json()["detail"]


def test_image_search_reranks_with_the_form_fields(client):
    client.post("/galleries", json={"name": "pictures", "model": IMAGE_MODEL, "reranker": "image_pairs"})
    colours = {"red.png": (255, 0, 0), "blue.png": (0, 0, 255), "navy.png": (0, 0, 120), "teal.png": (0, 128, 128)}
    client.post("/galleries/pictures/items", files=[("files", (name, png(c))) for name, c in colours.items()])
    query = {"image": ("q.png", png((0, 0, 255)))}
    order = keys(client.post("/galleries/pictures/search", data={"k": "4"}, files=query))[0]
    assert order[0] == "blue.png"
    reply = client.post("/galleries/pictures/search", data={"k": "4", "rerank": "on", "rerank_top_n": "3"},
                        files=query)
    assert keys(reply)[0] == order[:3][::-1] + order[3:]
    assert reply.json()["reranker"] == {"name": "image_pairs", "version": 1}
    refused = client.post("/galleries/pictures/search", data={"rerank": "on", "rerank_top_n": "0"}, files=query)
    assert (refused.status_code, refused.json()["error"]) == (422, "invalid_request")
    client.delete("/galleries/pictures")


def test_501_only_for_a_gallery_without_reranker_and_503_for_one_that_cannot_serve(client):
    client.post("/galleries", json={"name": "bare", "model": MODEL})
    client.post("/galleries/bare/items", json=text_items(TEXTS))
    bare = client.post("/galleries/bare/search", json={"text": "editor", "rerank": True})
    assert (bare.status_code, bare.json()["error"]) == (501, "not_implemented")
    client.app.state.services.galleries.gallery("bare").set_reranker("ghost_pairs")  # e.g. its folder was removed
    ghost = client.post("/galleries/bare/search", json={"text": "editor", "rerank": True})
    assert (ghost.status_code, ghost.json()["error"]) == (503, "model_unavailable")
    assert "ghost_pairs" in ghost.json()["detail"]
    assert keys(client.post("/galleries/bare/search", json={"text": "editor"}))  # plain search still serves
    client.delete("/galleries/bare")


def test_a_reranker_of_embeddings_stops_serving_once_the_gallery_moves_to_another_version(client, models_dir):
    client.post("/galleries", json={"name": "moving", "model": SWAP_MODEL, "reranker": "swap_pairs"})
    client.post("/galleries/moving/items", json=text_items(TEXTS))
    assert client.post("/galleries/moving/search", json={"text": "editor", "rerank": True}).status_code == 200
    write_model(models_dir, SWAP_MODEL, 2)
    assert client.post(f"/models/{SWAP_MODEL}/activate", json={"version": 2}).status_code == 202
    wait_until(lambda: client.get("/galleries/moving").json()["model_version"] == 2, "the re-embedding")
    stale = client.post("/galleries/moving/search", json={"text": "editor", "rerank": True})
    assert (stale.status_code, stale.json()["error"]) == (503, "model_unavailable")
    assert f"scores embeddings of {SWAP_MODEL} v1" in stale.json()["detail"]
    write_reranker(models_dir, "swap_pairs", 2, "embeddings", SWAP_MODEL, 2, top_n=2)
    client.app.state.services.registry.poll_once()  # what the models watcher does every watch_interval_s
    wait_until(lambda: models(client)["swap_pairs"]["active_version"] == 2, "the new reranker version")
    fresh = client.post("/galleries/moving/search", json={"text": "editor", "rerank": True})
    assert fresh.status_code == 200 and fresh.json()["reranker"] == {"name": "swap_pairs", "version": 2}
    client.delete("/galleries/moving")


def test_a_reranker_version_is_activated_without_reembedding(client, models_dir):
    write_reranker(models_dir, "text_pairs", 2, "texts", MODEL, 1, top_n=2)
    started = client.post("/models/text_pairs/activate", json={"version": 2})
    assert started.status_code == 202
    wait_until(lambda: models(client)["text_pairs"]["active_version"] == 2, "version 2")
    query = {"text": TEXTS["curl"], "k": 5}
    order = keys(client.post("/galleries/docs/search", json=query))[0]
    reply = client.post("/galleries/docs/search", json={**query, "rerank": True})
    assert reply.json()["reranker"] == {"name": "text_pairs", "version": 2}
    assert keys(reply)[0] == order[:2][::-1] + order[2:]  # version 2's top_n
    # version 1 is unloaded just after version 2 becomes active, in the same background activation
    wait_until(lambda: [v["loaded"] for v in models(client)["text_pairs"]["versions"]] == [False, True],
               "version 1 unloaded")
    assert client.get("/galleries/docs").json()["model_version"] == 1
    back = client.post("/models/text_pairs/activate", json={"version": 1})
    assert back.status_code == 202
    wait_until(lambda: models(client)["text_pairs"]["active_version"] == 1, "version 1 again")


def test_concurrent_reranked_searches_share_score_calls(client):
    ReversingReranker.calls.clear()
    ReversingReranker.delay_s = 0.3
    try:
        body = {"text": TEXTS["tar"], "k": 3, "rerank": True}
        with ThreadPoolExecutor(max_workers=6) as pool:
            replies = list(pool.map(lambda _: client.post("/galleries/docs/search", json=body), range(6)))
    finally:
        ReversingReranker.delay_s = 0.0
    assert {reply.status_code for reply in replies} == {200}
    assert sum(ReversingReranker.calls) == 6 * 3
    assert len(ReversingReranker.calls) < 6 and max(ReversingReranker.calls) > 3


def labelled_gallery(client, name: str) -> None:
    items = [{"key": "a1", "text": "alpha one", "label": "a"}, {"key": "a2", "text": "alpha two", "label": "a"},
             {"key": "b1", "text": "beta one", "label": "b"}, {"key": "b2", "text": "beta two", "label": "b"},
             {"key": "c1", "text": "gamma", "label": 7}]
    client.post("/galleries", json={"name": name, "model": MODEL, "reranker": "text_pairs"})
    assert client.post(f"/galleries/{name}/items", json={"items": items}).status_code == 200


def test_evaluate_reports_oml_metrics_against_the_gallery_labels(client):
    labelled_gallery(client, "labelled")
    queries = [{"text": "alpha one", "label": "a"}, {"text": "beta one", "label": "a"}, {"text": "gamma", "label": 7}]
    reply = client.post("/galleries/labelled/evaluate", json={"queries": queries, "k": 4})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert {key: body[key] for key in ("gallery", "model", "model_version", "reranked", "reranker", "n_queries", "k")} \
        == {"gallery": "labelled", "model": MODEL, "model_version": 1, "reranked": False, "reranker": None,
            "n_queries": 3, "k": 4}
    overall = body["metrics"]["OVERALL"]
    assert overall["cmc"]["1"] == pytest.approx(2 / 3)  # each text finds itself first: right, wrong, right
    assert sorted(overall["cmc"]) == ["1", "3", "4"] and set(overall) == {"cmc", "precision", "map", "fnmr@fmr"}

    def expected_cmc_at_1(rerank: bool, excluded: list) -> float:
        labels = {"a1": "a", "a2": "a", "b1": "b", "b2": "b", "c1": 7}
        rows = keys(client.post("/galleries/labelled/search", json={"texts": [q["text"] for q in queries], "k": 5,
                                                                    "rerank": rerank}))
        firsts = [[key for key in row if key != skip][0] for row, skip in zip(rows, excluded)]
        return sum(labels[first] == q["label"] for first, q in zip(firsts, queries)) / len(queries)

    excluded = ["a1", None, None]
    leave_out = client.post("/galleries/labelled/evaluate", json={"queries": queries, "k": 4,
                                                                  "exclude_keys": excluded}).json()
    assert leave_out["metrics"]["OVERALL"]["cmc"]["1"] == pytest.approx(expected_cmc_at_1(False, excluded))
    reranked = client.post("/galleries/labelled/evaluate", json={"queries": queries, "k": 3, "rerank": True}).json()
    assert (reranked["reranked"], reranked["reranker"]) == (True, {"name": "text_pairs", "version": 1})
    assert reranked["metrics"]["OVERALL"]["cmc"]["1"] == pytest.approx(expected_cmc_at_1(True, [None] * 3))


@pytest.mark.parametrize("body, code, detail", [
    ({"queries": [{"text": "alpha"}]}, "invalid_request", "label"),
    ({"queries": [{"text": "alpha", "label": None}]}, "invalid_request", "label"),
    ({"queries": [{"text": "alpha", "label": "a"}] * (MAX_EVALUATE_QUERIES + 1)}, "too_many_queries", "over the limit"),
    ({"queries": [{"text": "alpha", "label": "a"}], "exclude_keys": ["a1", "a2"]}, "invalid_request", "exclude_keys"),
    ({"queries": [{"text": "alpha", "label": "a"}], "k": 0}, "invalid_k", "k must be"),
    ({"queries": [{"text": "alpha", "label": "a"}], "rerank": True, "rerank_top_n": 0}, "invalid_request",
     "rerank_top_n"),
])
def test_evaluate_refuses_bad_requests(client, body, code, detail):
    labelled_gallery(client, "judged")
    reply = client.post("/galleries/judged/evaluate", json=body)
    assert (reply.status_code, reply.json()["error"]) == (422, code), reply.text
    assert detail in reply.json()["detail"]
    client.delete("/galleries/judged")


def test_evaluate_image_galleries_with_multipart(client):
    client.post("/galleries", json={"name": "shades", "model": IMAGE_MODEL})
    colours = {"red.png": ((255, 0, 0), "warm"), "rose.png": ((250, 0, 10), "warm"), "blue.png": ((0, 0, 255), "cold")}
    metas = json.dumps([{"key": key, "label": label} for key, (_, label) in colours.items()])
    client.post("/galleries/shades/items", data={"items": metas},
                files=[("files", (name, png(c))) for name, (c, _) in colours.items()])
    images = [("images", ("q1.png", png((255, 0, 0)))), ("images", ("q2.png", png((0, 0, 255))))]
    reply = client.post("/galleries/shades/evaluate", data={"labels": '["warm", "warm"]', "k": "2"}, files=images)
    assert reply.status_code == 200, reply.text
    assert reply.json()["metrics"]["OVERALL"]["cmc"]["1"] == pytest.approx(0.5)
    missing = client.post("/galleries/shades/evaluate", data={"labels": '["warm"]'}, files=images)
    assert (missing.status_code, missing.json()["error"]) == (422, "invalid_request")
    texts = client.post("/galleries/shades/evaluate", json={"queries": [{"text": "red", "label": "warm"}]})
    assert (texts.status_code, texts.json()["error"]) == (422, "modality_mismatch")
    client.delete("/galleries/shades")
