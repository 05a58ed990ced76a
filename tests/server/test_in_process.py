"""The app in process (FastAPI's TestClient) with a fake model loader: galleries, items, search, errors and model
activation in seconds, without ONNX Runtime or a uvicorn process."""

import io
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from fake_models import load_hashing_extractor, write_model
from server.app import create_app
from server.settings import Settings

MODEL = "hash_text"
SWAP_MODEL = "hash_swap"
IMAGE_MODEL = "hash_image"
BROKEN_MODEL = "no_manifest"
MAX_K = 5
TEXTS = {"vim": "Vi IMproved, a text editor", "curl": "transfer data with URLs", "gimp": "an image editor",
         "tar": "an archiving utility"}


def wait_until(predicate: Callable[[], object], what: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def png(color: tuple) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(buffer, format="PNG")
    return buffer.getvalue()


def text_items(texts: dict) -> dict:
    return {"items": [{"key": key, "text": text, "label": key[0], "payload": {"n": i}}
                      for i, (key, text) in enumerate(texts.items())]}


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("in-process") / "models"
    write_model(folder, MODEL, 1)
    write_model(folder, SWAP_MODEL, 1)
    write_model(folder, IMAGE_MODEL, 1, modality="image")
    (folder / BROKEN_MODEL / "1").mkdir(parents=True)  # a version folder without a manifest
    return folder


@pytest.fixture(scope="module")
def client(models_dir) -> Iterator[TestClient]:
    settings = Settings(data_dir=models_dir.parent / "data", models_dir=models_dir, bootstrap_model=None,
                        watch_interval_s=0, max_k=MAX_K, sync_items_limit=4, job_chunk_size=2)
    with TestClient(create_app(settings, loader=load_hashing_extractor)) as client:
        wait_until(lambda: client.get("/ready").status_code == 200, "the fake models to load")
        assert client.post("/galleries", json={"name": "docs", "model": MODEL}).status_code == 201
        assert client.post("/galleries/docs/items", json=text_items(TEXTS)).status_code == 200
        yield client


def test_create_add_search_read_and_delete(client):
    created = client.post("/galleries", json={"name": "notes", "model": MODEL, "index": "Flat"})
    assert created.status_code == 201, created.text
    assert created.json() == {"name": "notes", "model": MODEL, "model_version": 1, "modality": "text",
                              "embedding_size": 8, "index": "Flat", "count": 0, "reranker": None, "backend": "local"}
    added = client.post("/galleries/notes/items", json=text_items(TEXTS)).json()
    assert added == {"gallery": "notes", "indexed": 4, "keys": list(TEXTS), "job_id": None, "count": 4}
    reply = client.post("/galleries/notes/search", json={"texts": [TEXTS["curl"], TEXTS["tar"]], "k": 3})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert (body["gallery"], body["model"], body["model_version"]) == ("notes", MODEL, 1)
    assert [row[0]["key"] for row in body["results"]] == ["curl", "tar"]
    assert body["results"][0][0] == {"key": "curl", "label": "c", "distance": pytest.approx(0, abs=1e-5),
                                     "payload": {"n": 1}}
    assert [len(row) for row in body["results"]] == [3, 3]
    assert client.get("/galleries/notes/items/vim").json() == {"key": "vim", "label": "v", "text": TEXTS["vim"],
                                                              "has_file": False, "payload": {"n": 0}}
    assert "notes" in [g["name"] for g in client.get("/galleries").json()["galleries"]]
    assert client.delete("/galleries/notes/items/vim").json() == {"deleted": "vim"}
    assert client.get("/galleries/notes").json()["count"] == 3
    assert client.delete("/galleries/notes").json() == {"deleted": "notes"}


def test_keys_with_slashes_are_read_and_deleted(client):
    key = "Greek/character05/0398_03"  # what an archive upload makes of a member path
    added = client.post("/galleries/docs/items", json={"items": [{"key": key, "text": "alpha drawing"}]})
    assert added.status_code == 200, added.text
    assert client.get(f"/galleries/docs/items/{key}").json()["key"] == key
    assert client.get(f"/galleries/docs/items/{key}/file").json()["error"] == "no_file"  # a text item
    assert client.delete(f"/galleries/docs/items/{key}").json() == {"deleted": key}
    assert client.get(f"/galleries/docs/items/{key}").status_code == 404


def test_image_upload_and_search_read_rerank_like_the_settings_read_booleans(client):
    client.post("/galleries", json={"name": "pictures", "model": IMAGE_MODEL})
    uploaded = client.post("/galleries/pictures/items", files=[("files", ("red.png", png((255, 0, 0)))),
                                                               ("files", ("blue.png", png((0, 0, 255))))])
    assert uploaded.status_code == 200 and uploaded.json()["keys"] == ["red.png", "blue.png"]
    query = {"image": ("q.png", png((0, 0, 255)))}
    found = client.post("/galleries/pictures/search", data={"k": "1", "rerank": "off"}, files=query)
    assert found.status_code == 200 and found.json()["results"][0][0]["key"] == "blue.png"
    unclear = client.post("/galleries/pictures/search", data={"rerank": "maybe"}, files=query)
    assert (unclear.status_code, unclear.json()["error"]) == (422, "invalid_request")
    assert "rerank must be true or false" in unclear.json()["detail"]
    asked = client.post("/galleries/pictures/search", data={"k": "1", "rerank": "Yes"}, files=query)
    assert (asked.status_code, asked.json()["error"]) == (501, "not_implemented")
    client.delete("/galleries/pictures")


def test_a_large_batch_becomes_a_job(client):
    many = {f"note-{i}": f"note number {i}" for i in range(9)}
    client.post("/galleries", json={"name": "bulk", "model": MODEL})
    reply = client.post("/galleries/bulk/items", json=text_items(many))
    assert reply.status_code == 202 and reply.json()["indexed"] == 0
    job_url = f"/jobs/{reply.json()['job_id']}"
    wait_until(lambda: client.get(job_url).json()["state"] == "done", "the job")
    assert client.get(job_url).json()["done"] == 9 and client.get("/galleries/bulk").json()["count"] == 9
    client.delete("/galleries/bulk")


@pytest.mark.parametrize("method, path, body, status, code", [
    ("get", "/galleries/nowhere", None, 404, "not_found"),
    ("post", "/galleries/nowhere/search", {"text": "a"}, 404, "not_found"),
    ("post", "/galleries/docs/search", {"text": "a", "k": 0}, 422, "invalid_k"),
    ("post", "/galleries/docs/search", {"text": "a", "k": MAX_K + 1}, 422, "invalid_k"),
    ("post", "/galleries/docs/search", {"text": "a", "k": 2, "rerank": True}, 501, "not_implemented"),
    ("post", "/galleries", {"name": "orphan", "model": "no_such_model"}, 404, "not_found"),
    ("post", "/galleries", {"name": "docs", "model": MODEL}, 409, "gallery_exists"),
    ("post", "/galleries", {"name": "odd", "model": MODEL, "index": "Banana42"}, 422, "invalid_index"),
    ("get", "/galleries/docs/items/missing", None, 404, "not_found"),
    ("get", "/jobs/missing", None, 404, "not_found"),
    ("post", "/models/hash_text/activate", {"version": 9}, 404, "not_found"),
])
def test_error_statuses(client, method, path, body, status, code):
    reply = client.request(method, path, json=body)
    assert (reply.status_code, reply.json()["error"]) == (status, code), reply.text


def test_the_same_error_gets_the_same_reply_from_every_route(client):
    gallery_missing = [client.get("/galleries/nowhere"), client.delete("/galleries/nowhere"),
                       client.post("/galleries/nowhere/search", json={"text": "a"}),
                       client.post("/galleries/nowhere/items", json=text_items({"a": "b"}))]
    assert {(r.status_code, r.json()["error"]) for r in gallery_missing} == {(404, "not_found")}
    model_missing = [client.post("/galleries", json={"name": "orphan", "model": "nope"}),
                     client.post("/models/nope/activate", json={"version": 1})]
    assert {(r.status_code, r.json()["error"]) for r in model_missing} == {(404, "not_found")}


def test_activating_a_new_version_reembeds_its_galleries(client, models_dir):
    client.post("/galleries", json={"name": "swapped", "model": SWAP_MODEL})
    client.post("/galleries/swapped/items", json=text_items(TEXTS))
    query = {"text": TEXTS["gimp"], "k": 2}
    before = client.post("/galleries/swapped/search", json=query).json()
    write_model(models_dir, SWAP_MODEL, 2)
    started = client.post(f"/models/{SWAP_MODEL}/activate", json={"version": 2})
    assert started.status_code == 202 and started.json()["state"] == "activating"

    def swapped() -> bool:
        entry = {m["name"]: m for m in client.get("/models").json()["models"]}[SWAP_MODEL]
        return entry["active_version"] == 2 and entry["activating_version"] is None
    wait_until(swapped, "version 2 to become active")
    assert client.get("/galleries/swapped").json()["model_version"] == 2
    after = client.post("/galleries/swapped/search", json=query).json()
    assert (before["model_version"], after["model_version"]) == (1, 2)
    assert after["results"][0][0]["key"] == "gimp" and after["results"][0][0]["distance"] == pytest.approx(0, abs=1e-5)
    assert after["results"][0][1]["distance"] != pytest.approx(before["results"][0][1]["distance"])  # new vectors
    again = client.post(f"/models/{SWAP_MODEL}/activate", json={"version": 2})
    assert again.status_code == 200 and again.json()["state"] == "active"


def test_a_version_without_manifest_is_listed_as_failed_and_others_serve(client):
    entry = {m["name"]: m for m in client.get("/models").json()["models"]}[BROKEN_MODEL]
    assert entry["active_version"] is None
    assert entry["versions"][0]["state"] == "failed" and "manifest" in entry["versions"][0]["error"]
    assert client.get("/ready").json()["ready"] is True
