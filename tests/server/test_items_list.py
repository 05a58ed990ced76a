"""Listing items page by page over real HTTP: key order, a signed cursor that survives concurrent writes without
skipping or repeating an item, label filters, embeddings on request, label counts, and tampered cursors refused."""

import base64
import json
from collections import Counter

import pytest

from server_helpers import items_from

N_ITEMS = 30


@pytest.fixture(scope="module")
def listed(shared_server, package_texts):
    items = items_from(package_texts[300:300 + N_ITEMS])
    items[0]["key"] = "dir/with/slashes"
    items[1]["label"], items[2]["label"], items[3]["label"] = 7, "7", None
    with shared_server.client(headers=shared_server.headers) as client:
        assert client.post("/galleries", json={"name": "listed", "model": "minilm_l6"}).status_code == 201
        for start in (0, 16):
            reply = client.post("/galleries/listed/items", json={"items": items[start:start + 16]})
            assert reply.status_code == 200, reply.text
        yield items
        client.delete("/galleries/listed")


def test_pages_in_key_order_survive_concurrent_writes(shared_server, listed):
    original = sorted(item["key"] for item in listed)
    seen, cursor, pages = [], None, 0
    with shared_server.client(headers=shared_server.headers) as client:
        while True:
            params = {"limit": 7, **({"cursor": cursor} if cursor else {})}
            reply = client.get("/galleries/listed/items", params=params)
            assert reply.status_code == 200, reply.text
            page = reply.json()
            assert page["gallery"] == "listed" and all(item["embedding"] is None for item in page["items"])
            seen.extend(item["key"] for item in page["items"])
            cursor, pages = page["next_cursor"], pages + 1
            if cursor is None:
                break
            # between pages: replace an item already seen and one still ahead, add one before and one after the
            # cursor, delete one item that was added meanwhile
            ahead = original[min(len(original) - 1, len(seen) + 2)]
            changed = [{**item, "text": item["text"] + " (changed)"} for item in listed
                       if item["key"] in (seen[0], ahead)]
            new = [{"key": "!early-" + str(pages), "text": "added before the cursor"},
                   {"key": "~late-" + str(pages), "text": "added after the cursor"}]
            assert client.post("/galleries/listed/items", json={"items": changed + new}).status_code == 200
            assert client.delete(f"/galleries/listed/items/~late-{pages - 1}").status_code in (200, 404)
    late = [key for key in seen if key.startswith("~late-")]
    assert [key for key in seen if key in original] == original  # every item there throughout, once, in order
    assert len(seen) == len(set(seen)) and seen == sorted(seen) and not any(k.startswith("!early") for k in seen)
    assert late and pages == 5


def test_label_filter_embeddings_and_label_counts(shared_server, listed):
    with shared_server.client() as client:
        sevens = client.get("/galleries/listed/items", params={"label": "7"}).json()["items"]
        assert sorted(item["key"] for item in sevens) == sorted([listed[1]["key"], listed[2]["key"]])  # 7 and "7"
        label = listed[10]["label"]
        page = client.get("/galleries/listed/items", params={"label": label, "include": "embedding", "limit": 1})
        first = page.json()["items"][0]
        assert first["label"] == label and len(first["embedding"]) == 384
        stored = client.get(f"/galleries/listed/items/{first['key']}").json()
        assert first == {**stored, "embedding": first["embedding"]}
        assert client.get("/galleries/listed/items/dir/with/slashes").json()["key"] == "dir/with/slashes"
        everything = client.get("/galleries/listed/items", params={"limit": 1000}).json()["items"]
        counts = client.get("/galleries/listed/labels").json()
        assert counts["unlabelled"] == sum(item["label"] is None for item in everything) >= 1
        by_label = {(type(entry["label"]).__name__, entry["label"]): entry["count"] for entry in counts["labels"]}
        expected = Counter((type(item["label"]).__name__, item["label"]) for item in everything
                           if item["label"] is not None)
        assert by_label == expected and by_label[("int", 7)] == 1 and by_label[("str", "7")] == 1
        assert [entry["count"] for entry in counts["labels"]] == sorted(by_label.values(), reverse=True)


@pytest.mark.parametrize("path, params, status, code", [
    ("/galleries/listed/items", {"limit": 0}, 422, "invalid_request"),
    ("/galleries/listed/items", {"limit": 1001}, 422, "invalid_request"),
    ("/galleries/listed/items", {"include": "vectors"}, 422, "invalid_request"),
    ("/galleries/listed/items", {"cursor": "not-a-cursor"}, 400, "invalid_cursor"),
    ("/galleries/listed/items", {"cursor": "é.x"}, 400, "invalid_cursor"),
    ("/galleries/nowhere/items", {}, 404, "not_found"),
    ("/galleries/nowhere/labels", {}, 404, "not_found"),
])
def test_bad_listing_requests_are_named(shared_server, listed, path, params, status, code):
    with shared_server.client() as client:
        reply = client.get(path, params=params)
    assert (reply.status_code, reply.json()["error"]) == (status, code), reply.text


def test_a_tampered_cursor_is_refused(shared_server, listed):
    with shared_server.client() as client:
        cursor = client.get("/galleries/listed/items", params={"limit": 2}).json()["next_cursor"]
        body, mac = cursor.split(".")
        state = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        forged = base64.urlsafe_b64encode(json.dumps({**state, "k": "a"}).encode()).rstrip(b"=").decode()
        for bad in (f"{forged}.{mac}", cursor[:-2], cursor[:-1] + ("A" if cursor[-1] != "A" else "B")):
            reply = client.get("/galleries/listed/items", params={"limit": 2, "cursor": bad})
            assert (reply.status_code, reply.json()["error"]) == (400, "invalid_cursor"), bad
            assert "cursor" in reply.json()["detail"]
        assert client.get("/galleries/listed/items", params={"limit": 2, "cursor": cursor}).status_code == 200
