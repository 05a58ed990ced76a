"""Restart survival and crash safety of a real server process: SIGTERM restart, SIGKILL during a bulk job."""

import time

import pytest

from server_helpers import ServerProcess, drop_in_version, items_from, models_copy, wait_job


@pytest.fixture(scope="module")
def restart_server(exported_models, tmp_path_factory):
    root = tmp_path_factory.mktemp("restart-server")
    server = ServerProcess(root / "data", models_copy(exported_models, root / "models"), root / "server.log",
                           env={"OML_WATCH_INTERVAL_S": "0", "OML_SYNC_ITEMS_LIMIT": "8",
                                "OML_JOB_CHUNK_SIZE": "16", "OML_JOB_EMBED_BLOCK": "64"})
    server.start()
    yield server
    server.kill()


def test_galleries_items_and_active_version_survive_a_restart(restart_server, package_texts, minilm_int8_v2,
                                                              omniglot_files):
    server = restart_server
    items = items_from(package_texts[:8])
    with server.client(headers=server.headers) as client:
        assert client.post("/galleries", json={"name": "kept", "model": "minilm_l6", "index": "Flat"}).status_code == 201
        assert client.post("/galleries/kept/items", json={"items": items}).status_code == 200
        assert client.post("/galleries", json={"name": "kept-images", "model": "tiny_image",
                                               "index": "Flat"}).status_code == 201
        assert client.post("/galleries/kept-images/items",
                           files=[("files", (p.name, p.read_bytes(), "image/png")) for p in omniglot_files[:3]]
                           ).status_code == 200
        drop_in_version(minilm_int8_v2, server.models_dir, "minilm_l6", 2)
        assert client.post("/models/minilm_l6/activate", json={"version": 2}).status_code == 202
        server.wait_for(lambda: client.get("/galleries/kept").json()["model_version"] == 2 and
                        client.get("/models").json()["models"][0]["active_version"] == 2, what="v2 active")
        before = client.post("/galleries/kept/search", json={"text": items[5]["text"], "k": 3}).json()

    server.restart()

    with server.client(headers=server.headers) as client:
        models = {m["name"]: m for m in client.get("/models").json()["models"]}
        assert models["minilm_l6"]["active_version"] == 2
        kept = client.get("/galleries/kept").json()
        assert kept["count"] == 8 and kept["model_version"] == 2
        after = client.post("/galleries/kept/search", json={"text": items[5]["text"], "k": 3}).json()
        assert after == before
        assert client.get(f"/galleries/kept/items/{items[2]['key']}").json()["text"] == items[2]["text"]
        assert client.get("/galleries/kept-images").json()["count"] == 3
        image_hits = client.post("/galleries/kept-images/search",
                                 files={"image": ("q.png", omniglot_files[1].read_bytes())}).json()
        assert image_hits["results"][0][0]["key"] == omniglot_files[1].name


def test_sigkill_during_bulk_indexing_loses_no_acknowledged_item(restart_server, package_texts):
    server = restart_server
    items = items_from(package_texts[:1200], prefix="bulk-")
    with server.client(headers=server.headers) as client:
        assert client.post("/galleries", json={"name": "bulk", "model": "minilm_l6", "index": "Flat"}).status_code == 201
        reply = client.post("/galleries/bulk/items", json={"items": items})
        assert reply.status_code == 202
        job_id = reply.json()["job_id"]
        acknowledged = server.wait_for(lambda: (lambda r: r["done"] if r["done"] >= 64 else 0)(
            client.get(f"/jobs/{job_id}").json()), interval_s=0.05, what="first chunks stored")
    server.kill()
    assert acknowledged < len(items), "the job finished before the kill; the test needs a larger batch"

    server.start()
    with server.client(headers=server.headers) as client:
        record = client.get(f"/jobs/{job_id}").json()
        assert record["state"] == "interrupted" and "server stopped" in record["error"]
        assert record["done"] >= acknowledged
        count = client.get("/galleries/bulk").json()["count"]
        assert count >= record["done"]
        for item in items[:record["done"]]:
            stored = client.get(f"/galleries/bulk/items/{item['key']}")
            assert stored.status_code == 200, f"acknowledged item {item['key']} lost"
            assert stored.json()["text"] == item["text"]
        hits = client.post("/galleries/bulk/search", json={"text": items[10]["text"], "k": 1}).json()
        assert hits["results"][0][0]["key"] == items[10]["key"]
        # the gallery still takes writes after the crash
        resumed = client.post("/galleries/bulk/items", json={"items": items[record["done"]:record["done"] + 40]})
        assert wait_job(client, resumed.json()["job_id"])["state"] == "done"


def test_sigterm_during_a_job_stops_promptly_and_keeps_what_was_reported(restart_server, package_texts):
    server = restart_server
    items = items_from(package_texts[:900], prefix="term-")
    with server.client(headers=server.headers) as client:
        assert client.post("/galleries", json={"name": "term", "model": "minilm_l6", "index": "Flat"}).status_code == 201
        job_id = client.post("/galleries/term/items", json={"items": items}).json()["job_id"]
        server.wait_for(lambda: client.get(f"/jobs/{job_id}").json()["done"] >= 32, interval_s=0.05,
                        what="first chunks stored")
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 20
    server.start()
    with server.client() as client:
        record = client.get(f"/jobs/{job_id}").json()
        assert record["state"] == "interrupted" and 32 <= record["done"] < len(items)
        assert client.get("/galleries/term").json()["count"] == record["done"]
        last = items[record["done"] - 1]["key"]
        assert client.get(f"/galleries/term/items/{last}").status_code == 200
