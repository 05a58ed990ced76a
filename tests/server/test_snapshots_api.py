"""Snapshots over real HTTP: take, list, download, restore (stored or uploaded) byte for byte, and refuse bad
archives with a 4xx naming the problem while the gallery in place stays as it was. Real MiniLM and tiny image model,
the shared uvicorn server."""

import hashlib
import io
import json
import tarfile
from typing import Callable, Iterator, List, Tuple

import httpx
import pytest

from server_helpers import items_from

Edit = Callable[[tarfile.TarInfo, bytes], List[Tuple[tarfile.TarInfo, bytes]]]


@pytest.fixture(scope="module")
def client(shared_server) -> Iterator[httpx.Client]:
    with shared_server.client(headers=shared_server.headers) as client:
        yield client


@pytest.fixture(scope="module")
def source(client, package_texts) -> str:
    """A text gallery of 40 Debian descriptions with labels and payloads."""
    assert client.post("/galleries", json={"name": "snap_src", "model": "minilm_l6", "index": "HNSW32"}).status_code \
        == 201
    for start in (0, 16, 32):
        reply = client.post("/galleries/snap_src/items", json={"items": items_from(package_texts[start:start + 16 if
                                                                                                  start < 32 else 40])})
        assert reply.status_code == 200, reply.text
    return "snap_src"


@pytest.fixture(scope="module")
def snapshot(client, source) -> dict:
    reply = client.post(f"/galleries/{source}/snapshots")
    assert reply.status_code == 201, reply.text
    return reply.json()


@pytest.fixture(scope="module")
def archive(client, snapshot) -> bytes:
    reply = client.get(f"/galleries/snap_src/snapshots/{snapshot['id']}")
    assert reply.status_code == 200 and reply.headers["content-type"] == "application/x-tar"
    return reply.content


def _search(client: httpx.Client, gallery: str) -> list:
    reply = client.post(f"/galleries/{gallery}/search", json={"texts": ["text editor", "web server", "compression"],
                                                               "k": 10})
    assert reply.status_code == 200, reply.text
    return [[(hit["key"], hit["label"], hit["distance"], hit["payload"]) for hit in row] for row in reply.json()["results"]]


def rewrite(archive: bytes, edit: Edit) -> bytes:
    """The archive with every member passed through `edit(info, data) -> [(info, data)]`."""
    out = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(archive)) as source, tarfile.open(fileobj=out, mode="w") as target:
        for info in source.getmembers():
            data = source.extractfile(info).read()
            for new_info, new_data in edit(info, data):
                new_info.size = len(new_data)
                target.addfile(new_info, io.BytesIO(new_data))
    return out.getvalue()


def with_model(archive: bytes, **model: object) -> bytes:
    """The archive re-signed for another model: manifest.json and snapshot.json agree, checksums match."""
    members = {}
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        for name in ("manifest.json", "snapshot.json"):
            members[name] = json.loads(tar.extractfile(name).read())
    manifest = json.dumps({**members["manifest.json"], **{f"model_{k}" if k != "embedding_size" else k: v
                                                          for k, v in model.items()}}).encode()
    snapshot = members["snapshot.json"]
    snapshot["model"].update(model)
    snapshot["members"]["manifest.json"] = {"size": len(manifest), "sha256": hashlib.sha256(manifest).hexdigest()}
    replaced = {"manifest.json": manifest, "snapshot.json": json.dumps(snapshot).encode()}
    return rewrite(archive, lambda info, data: [(info, replaced.get(info.name, data))])


def upload(client: httpx.Client, gallery: str, data: bytes, replace: bool = False) -> httpx.Response:
    return client.post(f"/galleries/{gallery}/restore", files={"archive": ("snap.tar", data, "application/x-tar")},
                       data={"replace": "true" if replace else "false"})


def test_a_snapshot_is_listed_downloadable_and_restores_byte_for_byte(client, source, snapshot, archive):
    assert set(snapshot) == {"id", "gallery", "created_at", "size", "sha256", "items", "model"}
    assert (snapshot["gallery"], snapshot["items"], snapshot["model"]) == ("snap_src", 40,
                                                                            {"name": "minilm_l6", "version": 1})
    assert (len(archive), hashlib.sha256(archive).hexdigest()) == (snapshot["size"], snapshot["sha256"])
    assert snapshot in client.get(f"/galleries/{source}/snapshots").json()["snapshots"]

    reply = client.post("/galleries/snap_copy/restore", json={"snapshot": snapshot["id"], "from": source})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert (body["replaced"], body["gallery"]["count"], body["gallery"]["index"]) == (False, 40, "HNSW32")
    assert body["snapshot"]["id"] == snapshot["id"]
    assert _search(client, "snap_copy") == _search(client, source)
    key = _search(client, source)[0][0][0]
    assert client.get(f"/galleries/snap_copy/items/{key}").json() == client.get(f"/galleries/{source}/items/{key}").json()

    conflict = client.post("/galleries/snap_copy/restore", json={"snapshot": snapshot["id"], "from": source})
    assert (conflict.status_code, conflict.json()["error"]) == (409, "gallery_exists")
    assert "replace=true" in conflict.json()["detail"]
    again = client.post("/galleries/snap_copy/restore", json={"snapshot": snapshot["id"], "from": source,
                                                               "replace": True})
    assert again.status_code == 200 and again.json()["replaced"] is True


def test_an_image_gallery_comes_back_with_its_stored_files(client, omniglot_files):
    assert client.post("/galleries", json={"name": "snap_glyphs", "model": "tiny_image"}).status_code == 201
    files = [("files", (path.name, path.read_bytes(), "image/png")) for path in omniglot_files[:4]]
    assert client.post("/galleries/snap_glyphs/items", files=files).status_code == 200
    taken = client.post("/galleries/snap_glyphs/snapshots").json()
    data = client.get(f"/galleries/snap_glyphs/snapshots/{taken['id']}").content
    reply = upload(client, "snap_glyphs_copy", data)
    assert reply.status_code == 200, reply.text
    for path in omniglot_files[:4]:
        copy = client.get(f"/galleries/snap_glyphs_copy/items/{path.name}/file")
        assert copy.status_code == 200 and copy.content == path.read_bytes()
    query = {"image": (omniglot_files[0].name, omniglot_files[0].read_bytes(), "image/png")}
    assert client.post("/galleries/snap_glyphs_copy/search", files=query, data={"k": "4"}).json()["results"] == \
        client.post("/galleries/snap_glyphs/search", files=query, data={"k": "4"}).json()["results"]


def test_bad_archives_get_a_4xx_naming_the_problem_and_replace_nothing(client, shared_server, source, snapshot,
                                                                       archive):
    before = _search(client, source)
    offset = archive.index(b"SQLite format 3")
    flipped = rewrite(archive, lambda info, data: [(info, data[:200] + bytes([data[200] ^ 1]) + data[201:]
                                                    if info.name == "items.sqlite" else data)])
    traversal = rewrite(archive, lambda info, data: [(info, data)] + (
        [(tarfile.TarInfo("../outside.txt"), b"x")] if info.name == "snapshot.json" else []))
    cases = [
        (archive[:offset + 1000], 400, "invalid_snapshot", "truncated"),
        (flipped, 400, "invalid_snapshot", "checksum mismatch in member 'items.sqlite'"),
        (traversal, 400, "invalid_snapshot", "'../outside.txt'"),
        (with_model(archive, name="ghost_model"), 422, "snapshot_model_mismatch", "ghost_model v1"),
        (with_model(archive, embedding_size=999), 422, "snapshot_model_mismatch", "size 999"),
        (with_model(archive, version=7), 422, "snapshot_model_mismatch", "no version 7"),
        (b"not a tar at all" * 64, 400, "invalid_snapshot", "not a snapshot archive"),
    ]
    for data, status, code, words in cases:
        reply = upload(client, source, data, replace=True)
        assert (reply.status_code, reply.json()["error"]) == (status, code), reply.text
        assert words in reply.json()["detail"], reply.json()
        assert str(shared_server.data_dir) not in reply.json()["detail"]
    assert _search(client, source) == before
    assert client.get(f"/galleries/{source}").json()["count"] == 40


def test_unknown_and_deleted_snapshots_and_auth(client, shared_server, source):
    taken = client.post(f"/galleries/{source}/snapshots").json()
    assert client.delete(f"/galleries/{source}/snapshots/{taken['id']}").json() == {"deleted": taken["id"]}
    for reply in (client.get(f"/galleries/{source}/snapshots/{taken['id']}"),
                  client.delete(f"/galleries/{source}/snapshots/{taken['id']}"),
                  client.post("/galleries/x_new/restore", json={"snapshot": taken["id"], "from": source})):
        assert (reply.status_code, reply.json()["error"]) == (404, "not_found")
    assert client.get(f"/galleries/{source}/snapshots/not-an-id").status_code == 422
    assert client.post("/galleries/nope_nope/snapshots").status_code == 404
    with shared_server.client() as anonymous:
        assert anonymous.post(f"/galleries/{source}/snapshots").status_code == 401
        assert anonymous.get(f"/galleries/{source}/snapshots").status_code == 401
