"""Items jobs embed a block of items in one extractor call (batches of similar length, as `oml index` does) and
store them `job_chunk_size` at a time, each chunk one transaction counted by the job's progress."""

import time
from typing import List

import pytest
from fastapi.testclient import TestClient

from fake_models import HashingExtractor, load_hashing_extractor, write_model
from server.app import create_app
from server.settings import Settings

MODEL = "hash_text"


class RecordingExtractor(HashingExtractor):
    calls: List[int] = []

    def embed(self, inputs, batch_size=None):
        RecordingExtractor.calls.append(len(inputs))
        return super().embed(inputs, batch_size)


def load_recording(path, num_threads=None):
    extractor = load_hashing_extractor(path, num_threads)
    extractor.__class__ = RecordingExtractor
    return extractor


def wait_done(client: TestClient, job_id: str) -> dict:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        job = client.get(f"/jobs/{job_id}").json()
        if job["state"] not in ("queued", "running"):
            return job
        time.sleep(0.02)
    raise AssertionError("job did not end")


@pytest.fixture()
def client(tmp_path, monkeypatch):
    write_model(tmp_path / "models", MODEL, 1)
    settings = Settings(data_dir=tmp_path / "data", models_dir=tmp_path / "models", bootstrap_model=None,
                        watch_interval_s=0, sync_items_limit=1, job_chunk_size=2, job_embed_block=4)
    with TestClient(create_app(settings, loader=load_recording)) as client:
        deadline = time.monotonic() + 10
        while client.get("/ready").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert client.post("/galleries", json={"name": "docs", "model": MODEL}).status_code == 201
        RecordingExtractor.calls = []
        yield client


def test_a_job_embeds_blocks_and_stores_chunks(client):
    items = [{"key": f"k{i}", "text": f"text number {i} " * (1 + i % 3)} for i in range(10)]
    reply = client.post("/galleries/docs/items", json={"items": items})
    assert reply.status_code == 202, reply.text
    job = wait_done(client, reply.json()["job_id"])
    assert (job["state"], job["done"], job["total"]) == ("done", 10, 10)
    assert RecordingExtractor.calls == [4, 4, 2]  # blocks of job_embed_block, not chunks of job_chunk_size
    assert client.get("/galleries/docs").json()["count"] == 10
    for item in (items[0], items[5], items[9]):
        hits = client.post("/galleries/docs/search", json={"text": item["text"], "k": 1}).json()["results"][0]
        assert hits[0]["key"] == item["key"]


def test_a_model_swap_in_the_middle_of_a_block_stores_every_item_once(client, monkeypatch):
    """A chunk refused for a model mismatch is embedded again with the rest of its block; nothing is stored twice."""
    from indexing import Gallery
    from indexing.errors import ModelMismatchError

    real_upsert, refused = Gallery.upsert, []

    def flaky_upsert(self, items, embeddings, model=None):
        if not refused and items[0].key == "k2":
            refused.append(items[0].key)
            raise ModelMismatchError("switched meanwhile")
        return real_upsert(self, items, embeddings, model=model)

    monkeypatch.setattr(Gallery, "upsert", flaky_upsert)
    items = [{"key": f"k{i}", "text": f"text {i}"} for i in range(6)]
    job = wait_done(client, client.post("/galleries/docs/items", json={"items": items}).json()["job_id"])
    assert (job["state"], job["done"]) == ("done", 6)
    assert refused == ["k2"]
    assert RecordingExtractor.calls == [4, 2, 2]  # the first block's last chunk embedded again, then the rest
    assert client.get("/galleries/docs").json()["count"] == 6
