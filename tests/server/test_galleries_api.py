"""Galleries over real HTTP: create, list, describe, delete, API-key checks."""

from server_helpers import API_KEY


def test_create_list_describe_delete_gallery(shared_server):
    with shared_server.client(headers=shared_server.headers) as client:
        created = client.post("/galleries", json={"name": "crud-docs", "model": "minilm_l6", "index": "exact"})
        assert created.status_code == 201, created.text
        assert created.json() == {"name": "crud-docs", "model": "minilm_l6", "model_version": 1, "modality": "text",
                                  "embedding_size": 384, "index": "exact", "count": 0, "reranker": None,
                                  "backend": "local"}
        assert "crud-docs" in [g["name"] for g in client.get("/galleries").json()["galleries"]]
        assert client.get("/galleries/crud-docs").json()["count"] == 0
        assert client.delete("/galleries/crud-docs").json() == {"deleted": "crud-docs"}
        missing = client.get("/galleries/crud-docs")
        assert missing.status_code == 404 and missing.json()["error"] == "not_found"
        assert "crud-docs" not in [g["name"] for g in client.get("/galleries").json()["galleries"]]


def test_faiss_gallery_with_index_spec(shared_server):
    with shared_server.client(headers=shared_server.headers) as client:
        created = client.post("/galleries", json={"name": "crud-hnsw", "model": "minilm_l6", "index": "HNSW16"})
        assert created.status_code == 201, created.text
        assert created.json()["index"] == "HNSW16"
        client.delete("/galleries/crud-hnsw")


def test_duplicate_gallery_is_conflict(shared_server):
    with shared_server.client(headers=shared_server.headers) as client:
        assert client.post("/galleries", json={"name": "crud-twice", "model": "minilm_l6", "index": "Flat"}).status_code == 201
        again = client.post("/galleries", json={"name": "crud-twice", "model": "minilm_l6", "index": "Flat"})
        assert again.status_code == 409 and "already exists" in again.json()["detail"]
        client.delete("/galleries/crud-twice")


def test_unknown_model_bad_index_and_bad_name_are_4xx(shared_server):
    with shared_server.client(headers=shared_server.headers) as client:
        unknown = client.post("/galleries", json={"name": "crud-x", "model": "no_such_model"})
        assert unknown.status_code == 404 and "no_such_model" in unknown.json()["detail"]
        bad_index = client.post("/galleries", json={"name": "crud-x", "model": "minilm_l6", "index": "Banana42"})
        assert bad_index.status_code == 422 and "Banana42" in bad_index.json()["detail"]
        bad_name = client.post("/galleries", json={"name": "../etc", "model": "minilm_l6", "index": "Flat"})
        assert bad_name.status_code == 422 and "name" in bad_name.json()["detail"]
        assert client.delete("/galleries/never-made").status_code == 404


def test_writes_need_the_api_key_and_reads_stay_open(shared_server):
    with shared_server.client() as client:
        no_key = client.post("/galleries", json={"name": "crud-auth", "model": "minilm_l6", "index": "Flat"})
        assert no_key.status_code == 401 and "X-API-Key" in no_key.json()["detail"]
        wrong = client.post("/galleries", json={"name": "crud-auth", "model": "minilm_l6", "index": "Flat"},
                            headers={"X-API-Key": "wrong"})
        assert wrong.status_code == 403 and wrong.json()["error"] == "forbidden"
        bearer = client.post("/galleries", json={"name": "crud-auth", "model": "minilm_l6", "index": "Flat"},
                             headers={"Authorization": f"Bearer {API_KEY}"})
        assert bearer.status_code == 201
        assert client.get("/galleries/crud-auth").status_code == 200
        assert client.post("/galleries/crud-auth/search", json={"text": "anything"}).status_code == 200
        assert client.delete("/galleries/crud-auth").status_code == 401
        assert client.post("/models/minilm_l6/activate", json={"version": 1}).status_code == 401
        assert client.post("/galleries/crud-auth/items", json={"items": [{"key": "a", "text": "b"}]}).status_code == 401
        assert client.delete("/galleries/crud-auth", headers={"X-API-Key": API_KEY}).status_code == 200
