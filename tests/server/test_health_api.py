"""Liveness, readiness, models listing and Prometheus metrics over real HTTP."""


def test_health_and_ready(shared_server):
    with shared_server.client() as client:
        assert client.get("/health").json() == {"status": "ok"}
        ready = client.get("/ready")
        assert ready.status_code == 200
        assert ready.json() == {"ready": True, "models": {"minilm_l6": 1, "tiny_image": 1}}


def test_models_lists_versions_modality_and_size(shared_server):
    with shared_server.client() as client:
        models = {m["name"]: m for m in client.get("/models").json()["models"]}
    assert models["minilm_l6"]["active_version"] == 1
    assert models["minilm_l6"]["modality"] == "text" and models["minilm_l6"]["embedding_size"] == 384
    assert models["tiny_image"]["modality"] == "image"
    assert models["minilm_l6"]["versions"][0] == {"version": 1, "state": "ready", "error": None, "modality": "text",
                                                  "embedding_size": 384, "loaded": True, "active": True,
                                                  "finetune": None}


def test_activate_unknown_version_is_404_and_active_version_is_200(shared_server):
    with shared_server.client(headers=shared_server.headers) as client:
        missing = client.post("/models/minilm_l6/activate", json={"version": 9})
        assert missing.status_code == 404 and "no version 9" in missing.json()["detail"]
        assert client.post("/models/nope/activate", json={"version": 1}).status_code == 404
        same = client.post("/models/minilm_l6/activate", json={"version": 1})
        assert same.status_code == 200 and same.json()["state"] == "active"
        assert client.post("/models/minilm_l6/activate", json={"version": 0}).status_code == 422


def test_metrics_count_requests_per_route_and_publish_models_and_galleries(shared_server):
    with shared_server.client(headers=shared_server.headers) as client:
        client.post("/galleries", json={"name": "metrics-g", "model": "minilm_l6", "index": "Flat"})
        client.post("/galleries/metrics-g/items", json={"items": [{"key": "a", "text": "a text editor"}]})
        client.post("/galleries/metrics-g/search", json={"text": "editor"})
        client.get("/galleries/unknown-gallery")
        text = client.get("/metrics").text
        client.delete("/galleries/metrics-g")
    assert 'oml_http_requests_total{method="POST",route="/galleries/{name}/search",status="200"}' in text
    assert 'route="/galleries/{name}",status="404"' in text
    assert 'oml_http_request_duration_seconds_bucket{le="0.005",method="POST",route="/galleries/{name}/search"}' in text
    assert 'oml_batch_size_count{model="minilm_l6:v1"}' in text
    assert 'oml_queue_wait_seconds_count{model="minilm_l6:v1"}' in text
    assert 'oml_gallery_items{gallery="metrics-g"} 1.0' in text
    assert 'oml_model_active_version{model="minilm_l6"} 1.0' in text
