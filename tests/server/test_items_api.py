"""Adding, reading and deleting items over real HTTP: synchronous batches, background jobs, bad input."""

import pytest

from server_helpers import items_from, wait_job


@pytest.fixture(scope="module")
def text_gallery(shared_server):
    with shared_server.client(headers=shared_server.headers) as client:
        assert client.post("/galleries", json={"name": "items-text", "model": "minilm_l6", "index": "Flat"}).status_code == 201
        yield "items-text"
        client.delete("/galleries/items-text")


def test_small_batch_is_indexed_before_the_reply(shared_server, text_gallery, package_texts):
    items = items_from(package_texts[:5], prefix="sync-")
    with shared_server.client(headers=shared_server.headers) as client:
        reply = client.post(f"/galleries/{text_gallery}/items", json={"items": items})
        assert reply.status_code == 200, reply.text
        body = reply.json()
        assert body["indexed"] == 5 and body["job_id"] is None and body["keys"] == [i["key"] for i in items]
        stored = client.get(f"/galleries/{text_gallery}/items/{items[0]['key']}").json()
        assert stored == {"key": items[0]["key"], "label": items[0]["label"], "text": items[0]["text"],
                          "has_file": False, "payload": items[0]["payload"]}
        hits = client.post(f"/galleries/{text_gallery}/search", json={"text": items[2]["text"], "k": 1}).json()
        assert hits["results"][0][0]["key"] == items[2]["key"]
        assert hits["results"][0][0]["distance"] == pytest.approx(0.0, abs=1e-3)


def test_large_batch_becomes_a_job_with_progress(shared_server, text_gallery, package_texts):
    items = items_from(package_texts[100:140], prefix="job-")
    with shared_server.client(headers=shared_server.headers) as client:
        before = client.get(f"/galleries/{text_gallery}").json()["count"]
        reply = client.post(f"/galleries/{text_gallery}/items", json={"items": items})
        assert reply.status_code == 202, reply.text
        job_id = reply.json()["job_id"]
        record = wait_job(client, job_id)
        assert record["state"] == "done" and record["done"] == record["total"] == 40 and record["progress"] == 1.0
        assert client.get(f"/galleries/{text_gallery}").json()["count"] == before + 40
        assert job_id in [job["id"] for job in client.get("/jobs").json()]
        assert client.get("/jobs/not-a-job").status_code == 404


def test_resending_a_key_replaces_the_item_and_delete_removes_it(shared_server, text_gallery):
    with shared_server.client(headers=shared_server.headers) as client:
        url = f"/galleries/{text_gallery}/items"
        client.post(url, json={"items": [{"key": "replace-me", "text": "old text about cooking", "label": 1}]})
        count = client.get(f"/galleries/{text_gallery}").json()["count"]
        client.post(url, json={"items": [{"key": "replace-me", "text": "new text about astronomy", "label": 2}]})
        assert client.get(f"/galleries/{text_gallery}").json()["count"] == count
        assert client.get(f"{url}/replace-me").json()["text"] == "new text about astronomy"
        assert client.delete(f"{url}/replace-me").json() == {"deleted": "replace-me"}
        assert client.get(f"{url}/replace-me").status_code == 404
        assert client.delete(f"{url}/replace-me").status_code == 404


@pytest.mark.parametrize("body, status, words", [
    ({"items": [{"key": "e", "text": "   "}]}, 422, "empty"),
    ({"items": [{"key": "l", "text": "x" * 501}]}, 422, "over the limit of 500"),
    ({"items": [{"key": "n"}]}, 422, "empty"),
    ({"items": []}, 422, "items"),
    ({"items": [{"key": "d", "text": "a"}, {"key": "d", "text": "b"}]}, 422, "twice"),
    ({"items": [{"key": "p", "text": "a", "payload": [1, 2]}]}, 422, "payload"),
    ({"items": [{"key": "", "text": "a"}]}, 422, "key"),
    ({"things": []}, 422, "items"),
])
def test_bad_items_are_refused_with_a_named_problem(shared_server, text_gallery, body, status, words):
    with shared_server.client(headers=shared_server.headers) as client:
        reply = client.post(f"/galleries/{text_gallery}/items", json=body)
    assert reply.status_code == status, reply.text
    assert words in reply.json()["detail"]


def test_malformed_json_and_wrong_content_type(shared_server, text_gallery):
    with shared_server.client(headers=shared_server.headers) as client:
        url = f"/galleries/{text_gallery}/items"
        broken = client.post(url, content=b'{"items": [', headers={"Content-Type": "application/json"})
        assert broken.status_code == 400 and broken.json()["error"] == "malformed_json"
        plain = client.post(url, content=b"key=a", headers={"Content-Type": "text/plain"})
        assert plain.status_code == 415 and "application/json" in plain.json()["detail"]
        assert client.post("/galleries/no-such-gallery/items",
                           json={"items": [{"key": "a", "text": "b"}]}).status_code == 404
        # the server keeps serving after all of that
        assert client.get("/health").status_code == 200


def test_images_sent_to_a_text_gallery_are_422(shared_server, text_gallery, omniglot_files):
    with shared_server.client(headers=shared_server.headers) as client:
        reply = client.post(f"/galleries/{text_gallery}/items",
                            files=[("files", ("a.png", omniglot_files[0].read_bytes(), "image/png"))])
    assert reply.status_code == 422 and reply.json()["error"] == "modality_mismatch"
