"""Hot-swapping model versions on a live server: watched folder, activate endpoint, refused bad versions."""

import time

import httpx
import pytest

from server_helpers import QueryLoad, ServerProcess, drop_in_version, items_from, model_entry, models_copy

MODEL = "minilm_l6"
SEARCH_PATH = "/galleries/swap/search"
SEARCH = {"text": "tool to edit text files", "k": 3}


@pytest.fixture(scope="module")
def swap_server(exported_models, tmp_path_factory, package_texts):
    root = tmp_path_factory.mktemp("swap-server")
    server = ServerProcess(root / "data", models_copy(exported_models, root / "models", names=("minilm_l6",)),
                           root / "server.log", env={"OML_WATCH_INTERVAL_S": "0.3", "OML_MAX_WAIT_MS": "2"})
    server.start()
    with server.client(headers=server.headers) as client:
        assert client.post("/galleries", json={"name": "swap", "model": "minilm_l6", "index": "Flat"}).status_code == 201
        assert client.post("/galleries", json={"name": "swap-hnsw", "model": "minilm_l6",
                                               "index": "HNSW16"}).status_code == 201
        for start in range(0, 96, 16):
            batch = items_from(package_texts[start:start + 16])
            assert client.post("/galleries/swap/items", json={"items": batch}).status_code == 200
        assert client.post("/galleries/swap-hnsw/items", json={"items": items_from(package_texts[:8])}).status_code == 200
    yield server
    server.stop()


def first_distances(client: httpx.Client) -> list:
    body = client.post(SEARCH_PATH, json=SEARCH).json()
    return [hit["distance"] for hit in body["results"][0]], body["model_version"]


def test_new_version_in_folder_swaps_under_concurrent_queries_without_failures(swap_server, minilm_int8_v2):
    with swap_server.client() as client:
        v1_distances, version = first_distances(client)
        assert version == 1
        with QueryLoad(swap_server.url, SEARCH_PATH, json=SEARCH) as load:
            time.sleep(0.5)
            drop_in_version(minilm_int8_v2, swap_server.models_dir, "minilm_l6", 2)
            swap_server.wait_for(lambda: model_entry(client, MODEL)["active_version"] == 2, what="v2 active")
            swapped_at = time.monotonic()
            assert client.get("/galleries/swap").json()["model_version"] == 2
            assert client.get("/galleries/swap-hnsw").json()["model_version"] == 2
            time.sleep(1.0)
        load.assert_swapped(swapped_at)
        v2_distances, version = first_distances(client)
        assert version == 2
        assert max(abs(a - b) for a, b in zip(v1_distances, v2_distances)) > 1e-4  # int8 embeds differently
        entry = model_entry(client, MODEL)
        assert [v["version"] for v in entry["versions"] if v["loaded"]] == [2]  # v1 unloaded: nothing uses it
        metrics = client.get("/metrics").text
        assert 'oml_model_active_version{model="minilm_l6"} 2.0' in metrics


def test_corrupt_version_is_refused_and_the_old_one_keeps_serving(swap_server, corrupt_minilm_v3):
    with swap_server.client() as client:
        assert model_entry(client, MODEL)["active_version"] == 2
        with QueryLoad(swap_server.url, SEARCH_PATH, clients=2, json=SEARCH) as load:
            drop_in_version(corrupt_minilm_v3, swap_server.models_dir, "minilm_l6", 3)
            v3 = swap_server.wait_for(
                lambda: next((v for v in model_entry(client, MODEL)["versions"]
                              if v["version"] == 3 and v["state"] == "failed"), None), what="v3 refused")
            time.sleep(0.3)
        assert load.errors == []
        assert "model.onnx" in v3["error"] or "ONNX" in v3["error"]
        assert model_entry(client, MODEL)["active_version"] == 2
        assert client.get("/galleries/swap").json()["model_version"] == 2
        assert "refused" in swap_server.log_tail(50_000)
        # asking for it explicitly fails the same way, and still nothing breaks
        assert client.post("/models/minilm_l6/activate", json={"version": 3},
                           headers=swap_server.headers).status_code == 202
        swap_server.wait_for(lambda: model_entry(client, MODEL)["activating_version"] is None,
                             what="v3 retry finished")
        assert model_entry(client, MODEL)["active_version"] == 2
        assert first_distances(client)[1] == 2


def test_activate_endpoint_swaps_back_to_version_1(swap_server):
    with swap_server.client(headers=swap_server.headers) as client:
        reply = client.post("/models/minilm_l6/activate", json={"version": 1})
        assert reply.status_code == 202 and reply.json() == {"name": "minilm_l6", "version": 1, "state": "activating"}
        swap_server.wait_for(lambda: model_entry(client, MODEL)["active_version"] == 1, what="v1 active again")
        assert client.get("/galleries/swap").json()["model_version"] == 1
        distances, version = first_distances(client)
        assert version == 1
        created = client.post("/galleries", json={"name": "after-swap", "model": "minilm_l6", "index": "Flat"})
        assert created.json()["model_version"] == 1
