"""Milvus galleries over real HTTP: the server embeds milvus-lite (OML_MILVUS_URI=<tmp>/milvus.db); the same calls
as for local galleries: create, add, search with and without a label filter, delete, hot-swap, restart."""

import time
from typing import Iterator

import pytest

pytest.importorskip("pymilvus", reason="the milvus extra (pymilvus, milvus-lite) is not installed")
pytest.importorskip("milvus_lite", reason="the milvus extra (pymilvus, milvus-lite) is not installed")

from server_helpers import (QueryLoad, ServerProcess, drop_in_version, items_from, model_entry,  # noqa: E402
                            models_copy, wait_job)

SEARCH = {"text": "tool to edit text files", "k": 5}


@pytest.fixture(scope="module")
def milvus_server(exported_models, tmp_path_factory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("milvus-server")
    server = ServerProcess(root / "data", models_copy(exported_models, root / "models", names=("minilm_l6",)),
                           root / "server.log", env={"OML_WATCH_INTERVAL_S": "0", "OML_MILVUS_URI":
                                                     str(root / "milvus.db"), "OML_JOB_CHUNK_SIZE": "16", "OML_SYNC_ITEMS_LIMIT": "16"})
    server.start()
    yield server
    server.stop()


def _keys(reply) -> list:
    return [[hit["key"] for hit in row] for row in reply.json()["results"]]


def test_milvus_gallery_answers_like_a_local_one(milvus_server, package_texts):
    items = items_from(package_texts[:60])
    with milvus_server.client(headers=milvus_server.headers) as client:
        created = client.post("/galleries", json={"name": "mv", "model": "minilm_l6", "backend": "milvus"})
        assert created.status_code == 201, created.text
        assert created.json() == {"name": "mv", "model": "minilm_l6", "model_version": 1, "modality": "text",
                                  "embedding_size": 384, "index": "exact", "count": 0, "reranker": None,
                                  "backend": "milvus"}
        assert client.post("/galleries", json={"name": "loc", "model": "minilm_l6"}).status_code == 201
        twice = client.post("/galleries", json={"name": "mv", "model": "minilm_l6"})  # a local one of that name
        assert twice.status_code == 409 and twice.json()["error"] == "gallery_exists"
        for name in ("mv", "loc"):
            assert client.post(f"/galleries/{name}/items", json={"items": items[:16]}).status_code == 200
            job = client.post(f"/galleries/{name}/items", json={"items": items[16:]}).json()["job_id"]
            assert wait_job(client, job)["state"] == "done"
        listed = {g["name"]: g for g in client.get("/galleries").json()["galleries"]}
        assert (listed["mv"]["backend"], listed["mv"]["count"], listed["loc"]["backend"]) == ("milvus", 60, "local")

        label = items[0]["label"]
        queries = {"texts": ["tool to edit text files", "network library", items[3]["text"]], "k": 5}
        mine, theirs = (client.post(f"/galleries/{name}/search", json=queries) for name in ("mv", "loc"))
        assert mine.status_code == 200 and _keys(mine) == _keys(theirs)
        for a, b in zip(mine.json()["results"], theirs.json()["results"]):
            assert [h["distance"] for h in a] == pytest.approx([h["distance"] for h in b], abs=1e-4)
            assert [(h["label"], h["payload"]) for h in a] == [(h["label"], h["payload"]) for h in b]
        assert _keys(mine)[2][0] == items[3]["key"]

        filtered = {**queries, "filter": {"label": label}}
        mine, theirs = (client.post(f"/galleries/{name}/search", json=filtered) for name in ("mv", "loc"))
        assert mine.status_code == 200, mine.text
        assert _keys(mine) == _keys(theirs)
        assert all(hit["label"] == label for row in mine.json()["results"] for hit in row)
        some = sorted({item["label"] for item in items})[:2]
        either = client.post("/galleries/mv/search", json={**queries, "filter": {"label": some}}).json()
        assert {hit["label"] for row in either["results"] for hit in row} <= set(some)
        bad = client.post("/galleries/mv/search", json={**queries, "filter": {"payload": {}}})
        assert bad.status_code == 422

        assert client.get(f"/galleries/mv/items/{items[0]['key']}").json()["text"] == items[0]["text"]
        assert client.delete(f"/galleries/mv/items/{items[0]['key']}").status_code == 200
        assert client.get(f"/galleries/mv/items/{items[0]['key']}").status_code == 404
        assert client.delete(f"/galleries/mv/items/{items[0]['key']}").status_code == 404
        assert client.get("/galleries/mv").json()["count"] == 59


def test_hot_swap_under_queries_then_restart(milvus_server, minilm_int8_v2):
    with milvus_server.client(headers=milvus_server.headers) as client:
        before = client.post("/galleries/mv/search", json=SEARCH).json()
        assert before["model_version"] == 1
        with QueryLoad(milvus_server.url, "/galleries/mv/search", clients=2, json=SEARCH) as load:
            time.sleep(0.5)
            drop_in_version(minilm_int8_v2, milvus_server.models_dir, "minilm_l6", 2)
            assert client.post("/models/minilm_l6/activate", json={"version": 2}).status_code == 202
            milvus_server.wait_for(lambda: model_entry(client, "minilm_l6")["active_version"] == 2, what="v2 active")
            swapped_at = time.monotonic()
            time.sleep(1.0)
        load.assert_swapped(swapped_at)
        assert client.get("/galleries/mv").json()["model_version"] == 2
        after = client.post("/galleries/mv/search", json=SEARCH).json()
        assert after["model_version"] == 2 and [h["key"] for h in after["results"][0]][:3] == \
            [h["key"] for h in before["results"][0]][:3]
        jobs = [job for job in client.get("/jobs").json() if job["kind"] == "reembed" and job["gallery"] == "mv"]
        assert jobs and jobs[0]["state"] == "done" and jobs[0]["done"] == 59

    milvus_server.restart()
    with milvus_server.client(headers=milvus_server.headers) as client:
        info = client.get("/galleries/mv").json()
        assert (info["backend"], info["count"], info["model_version"]) == ("milvus", 59, 2)
        again = client.post("/galleries/mv/search", json=SEARCH).json()
        assert again["model_version"] == 2 and again["results"] == after["results"]
        assert client.delete("/galleries/mv").json() == {"deleted": "mv"}
        assert client.get("/galleries/mv").status_code == 404
        assert "mv" not in [g["name"] for g in client.get("/galleries").json()["galleries"]]


def test_milvus_backend_without_a_uri_names_the_setting(shared_server):
    with shared_server.client(headers=shared_server.headers) as client:
        reply = client.post("/galleries", json={"name": "nowhere", "model": "minilm_l6", "backend": "milvus"})
        assert reply.status_code == 422 and reply.json()["error"] == "milvus_not_configured"
        assert "--milvus-uri" in reply.json()["detail"] and "OML_MILVUS_URI" in reply.json()["detail"]
        assert client.get("/galleries/nowhere").status_code == 404
