"""`oml.client` against the shared live server: every route through `OmlClient`, the async client on a few, errors
as `OmlError` subclasses carrying the server's code. Real MiniLM and tiny image model."""

import asyncio
import hashlib
import io
import tarfile
from typing import Iterator

import pytest

from oml.client import (AsyncOmlClient, AuthenticationError, ConflictError, InvalidRequestError, NotFoundError,
                        OmlClient, Restored, SearchResult, Snapshot)
from server_helpers import items_from


@pytest.fixture(scope="module")
def client(shared_server) -> Iterator[OmlClient]:
    with OmlClient(shared_server.url, api_key=shared_server.api_key, timeout=60) as client:
        yield client


def test_health_models_and_openai_routes(client):
    assert client.health() is True
    assert client.ready().ready is True
    models = {model.name: model for model in client.models()}
    assert models["minilm_l6"].active_version == 1 and models["minilm_l6"].versions[0].state == "ready"
    assert "minilm_l6" in [model.id for model in client.openai_models()]
    assert client.openai_model("minilm_l6").id == "minilm_l6"
    assert client.activate_model("minilm_l6", 1).state == "active"
    assert "oml_" in client.metrics()


def test_a_text_gallery_through_every_route(client, shared_server, package_texts, tmp_path):
    gallery = client.create_gallery("cl_texts", "minilm_l6")
    assert (gallery.name, gallery.count, gallery.embedding_size) == ("cl_texts", 0, 384)
    rows = items_from(package_texts[100:142])
    added = client.add_items("cl_texts", rows[:12])
    assert (added.indexed, added.count) == (12, 12)
    job = client.add_items("cl_texts", rows[12:]).job_id
    finished = client.wait_job(job, progress=True, timeout=120)
    assert (finished.state, finished.done, finished.total) == ("done", 30, 30)
    assert job in [entry.id for entry in client.jobs()] and client.job(job).state == "done"
    with pytest.raises(ConflictError) as caught:
        client.cancel_job(job)
    assert caught.value.status == 409
    assert [g.count for g in client.galleries() if g.name == "cl_texts"] == [42]

    first = rows[0]
    item = client.get_item("cl_texts", first["key"])
    assert (item.key, item.text, item.label, item.payload) == (first["key"], first["text"], first["label"],
                                                               first["payload"])
    by_text = client.search("cl_texts", first["text"], k=3)
    assert isinstance(by_text, SearchResult) and by_text.results[0][0].key == first["key"]
    vector = client.embed_texts(first["text"], "minilm_l6").vectors[0]
    assert len(vector) == 384
    by_vector = client.search("cl_texts", vector=vector, k=3)
    assert [hit.key for hit in by_vector.results[0]] == [hit.key for hit in by_text.results[0]]
    by_key = client.search("cl_texts", key=first["key"], k=3)
    assert first["key"] not in [hit.key for hit in by_key.results[0]]
    assert len(client.search("cl_texts", texts=["editor", "network"], k=2).results) == 2
    filtered = client.search("cl_texts", "library", k=5, filter={"label": first["label"]})
    assert {hit.label for hit in filtered.results[0]} == {first["label"]}

    page = client.list_items("cl_texts", limit=10)
    assert len(page.items) == 10 and page.next_cursor
    listed = [entry.key for entry in client.iter_items("cl_texts", page_size=15, include_embedding=True)]
    assert sorted(listed) == sorted(row["key"] for row in rows)
    labels = client.labels("cl_texts")
    assert sum(entry.count for entry in labels.labels) + labels.unlabelled == 42

    assert client.classify("cl_texts", first["text"], k=3).results[0].label == first["label"]
    evaluation = client.evaluate("cl_texts", [(row["text"], row["label"]) for row in rows[:4]], k=3)
    assert evaluation.n_queries == 4 and "OVERALL" in evaluation.metrics
    assert client.update_gallery("cl_texts", None).reranker is None

    snapshot = client.create_snapshot("cl_texts")
    assert isinstance(snapshot, Snapshot) and snapshot.items == 42 and snapshot.model.name == "minilm_l6"
    assert snapshot.id in [entry.id for entry in client.snapshots("cl_texts")]
    path = client.download_snapshot("cl_texts", snapshot.id, tmp_path / "cl.tar")
    assert hashlib.sha256(path.read_bytes()).hexdigest() == snapshot.sha256
    restored = client.restore("cl_copy", snapshot.id, from_gallery="cl_texts")
    assert isinstance(restored, Restored) and restored.gallery.count == 42 and not restored.replaced
    uploaded = client.restore("cl_copy", archive=path, replace=True)
    assert uploaded.replaced and uploaded.snapshot.id == snapshot.id
    assert client.search("cl_copy", first["text"], k=5).results == client.search("cl_texts", first["text"], k=5).results
    client.delete_snapshot("cl_texts", snapshot.id)

    with pytest.raises(NotFoundError) as caught:
        client.gallery("cl_missing")
    assert (caught.value.status, caught.value.code) == (404, "not_found")
    with pytest.raises(InvalidRequestError) as caught:
        client.search("cl_texts", "x", k=0)
    assert caught.value.code == "invalid_k"
    with pytest.raises(InvalidRequestError):
        client.search("cl_texts", vector=[0.5] * 3)
    with pytest.raises(ConflictError):
        client.create_gallery("cl_texts", "minilm_l6")
    with pytest.raises(InvalidRequestError):
        client.finetune("minilm_l6", "cl_texts", holdout=2.0)
    with OmlClient(shared_server.url) as anonymous, pytest.raises(AuthenticationError):
        anonymous.create_gallery("cl_nokey", "minilm_l6")

    assert client.delete_item("cl_texts", first["key"]).deleted == first["key"]
    for name in ("cl_texts", "cl_copy"):
        client.delete_gallery(name)


def test_an_image_gallery_through_the_client(client, omniglot_files):
    client.create_gallery("cl_glyphs", "tiny_image")
    files = omniglot_files[:4]
    metas = [{"key": path.stem, "label": path.parent.name} for path in files]
    assert client.add_images("cl_glyphs", files[:3], items=metas[:3]).indexed == 3
    assert client.item_file("cl_glyphs", files[0].stem) == files[0].read_bytes()
    assert client.search("cl_glyphs", image=files[0], k=2).results[0][0].key == files[0].stem
    assert len(client.embed_images([files[0], files[1].read_bytes()], "tiny_image").vectors) == 2
    assert client.classify("cl_glyphs", images=[files[1]], k=2).results[0].label == files[1].parent.name
    assert client.evaluate("cl_glyphs", images=[files[2]], labels=[files[2].parent.name], k=2).n_queries == 1
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        archive.add(files[3], arcname=f"{files[3].parent.name}/{files[3].name}")
    upload = client.add_archive("cl_glyphs", ("glyphs.tar", buffer.getvalue()))
    assert client.wait_job(upload.job_id, timeout=60).state == "done"
    assert client.gallery("cl_glyphs").count == 4
    client.delete_gallery("cl_glyphs")


def test_the_async_client(shared_server, package_texts):
    async def run() -> None:
        async with AsyncOmlClient(shared_server.url, api_key=shared_server.api_key) as client:
            assert (await client.ready()).ready
            await client.create_gallery("cl_async", "minilm_l6")
            job = await client.add_items("cl_async", items_from(package_texts[200:220]))
            assert (await client.wait_job(job.job_id, timeout=60)).state == "done"
            results = await asyncio.gather(*[client.search("cl_async", text, k=2)
                                             for text in ("editor", "mail", "network")])
            assert all(len(result.results[0]) == 2 for result in results)
            assert len([item async for item in client.iter_items("cl_async", page_size=7)]) == 20
            snapshot = await client.create_snapshot("cl_async")
            assert [s.id for s in await client.snapshots("cl_async")] == [snapshot.id]
            await client.delete_gallery("cl_async")

    asyncio.run(run())
