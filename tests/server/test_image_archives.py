"""Image galleries end to end over real HTTP: archive uploads as jobs, their safety checks, stored files, bulk
multipart uploads. Real Omniglot drawings, the exported tiny image model, a real uvicorn server."""

import io
import tarfile
import zipfile
from pathlib import Path
from typing import Dict, Iterator, List

import httpx
import pytest

from server_helpers import ServerProcess, models_copy, wait_job

MAX_MEMBERS = 150
ARCHIVE_UPLOAD_BYTES = 4 * 1024 * 1024


@pytest.fixture(scope="module")
def server(exported_models, tmp_path_factory) -> Iterator[ServerProcess]:
    """Small limits: 2 MiB per ordinary request, 4 MiB per archive upload, 150 archive members, jobs of 8."""
    root = tmp_path_factory.mktemp("archive-server")
    process = ServerProcess(root / "data", models_copy(exported_models, root / "models"), root / "server.log",
                            env={"OML_MAX_UPLOAD_BYTES": str(2 * 1024 * 1024), "OML_SYNC_ITEMS_LIMIT": "16",
                                 "OML_JOB_CHUNK_SIZE": "8", "OML_WATCH_INTERVAL_S": "0",
                                 "OML_MAX_ARCHIVE_MEMBERS": str(MAX_MEMBERS),
                                 "OML_MAX_ARCHIVE_UPLOAD_BYTES": str(ARCHIVE_UPLOAD_BYTES)})
    process.start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def client(server) -> Iterator[httpx.Client]:
    with server.client(headers=server.headers) as client:
        yield client


@pytest.fixture(scope="module")
def glyphs(data_dir) -> Dict[str, bytes]:
    """80 real drawings by archive path: Greek and Korean, two characters each, 20 drawings a character."""
    root = data_dir / "omniglot" / "images"
    return {str(path.relative_to(root)): path.read_bytes()
            for alphabet in ("Greek", "Korean") for character in ("character01", "character02")
            for path in sorted((root / alphabet / character).glob("*.png"))}


def zip_bytes(members: Dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def tar_bytes(members: Dict[str, bytes], mode: str = "w:gz", links: Dict[str, str] = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            archive.addfile(info)
    return buffer.getvalue()


def image_gallery(client: httpx.Client, name: str) -> str:
    client.delete(f"/galleries/{name}")
    reply = client.post("/galleries", json={"name": name, "model": "tiny_image", "index": "Flat"})
    assert reply.status_code == 201, reply.text
    return name


def upload(client: httpx.Client, gallery: str, data: bytes, filename: str = "glyphs.zip", **fields) -> httpx.Response:
    return client.post(f"/galleries/{gallery}/items/archive", files={"archive": (filename, data)},
                       data={key: str(value) for key, value in fields.items()})


def spooled_files(server: ServerProcess) -> List[Path]:
    folder = server.data_dir / "uploads"
    return sorted(folder.iterdir()) if folder.is_dir() else []


@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_an_archive_is_indexed_by_a_job_with_labels_search_and_files(server, client, glyphs, kind):
    extras = {"README.txt": b"Omniglot sample", "__MACOSX/Greek/._character01": b"apple", "Greek/.DS_Store": b"x"}
    data = zip_bytes({**glyphs, **extras}) if kind == "zip" else tar_bytes({**glyphs, **extras})
    gallery = image_gallery(client, f"archive-{kind.replace('.', '-')}")
    reply = upload(client, gallery, data, f"glyphs.{kind}", labels="path", payload_from_path="true")
    assert reply.status_code == 202, reply.text
    body = reply.json()
    assert (body["gallery"], body["indexed"], body["accepted"], body["skipped"]) == (gallery, 0, 80, 3)
    record = wait_job(client, body["job_id"])
    assert (record["kind"], record["state"], record["done"], record["total"], record["error"]) == \
        ("archive", "done", 80, 80, None)
    assert any(job["id"] == body["job_id"] and job["kind"] == "archive" for job in client.get("/jobs").json())
    assert client.get(f"/galleries/{gallery}").json()["count"] == 80
    assert spooled_files(server) == []

    path, image = sorted(glyphs.items())[25]
    key = path.rsplit(".", 1)[0]
    stored = client.get(f"/galleries/{gallery}/items/{key}/file")
    assert stored.status_code == 200 and stored.content == image
    assert stored.headers["content-type"] == "image/png" and stored.headers["cache-control"].startswith("private")
    assert client.get(f"/galleries/{gallery}/items/{key}/file",
                      headers={"If-None-Match": stored.headers["etag"]}).status_code == 304
    hits = client.post(f"/galleries/{gallery}/search", files={"image": ("q.png", image, "image/png")},
                       data={"k": "3"}).json()["results"][0]
    assert hits[0]["key"] == key and hits[0]["distance"] == pytest.approx(0.0, abs=1e-4)
    assert hits[0]["label"] == str(Path(path).parent) and hits[0]["payload"] == {"path": path}


def test_folder_labels_and_name_keys(client, glyphs):
    gallery = image_gallery(client, "archive-names")
    korean = {path: data for path, data in glyphs.items() if path.startswith("Korean/character01")}
    reply = upload(client, gallery, tar_bytes(korean, mode="w"), "korean.tar", keys="name")
    assert reply.status_code == 202 and reply.json()["accepted"] == 20
    assert wait_job(client, reply.json()["job_id"])["state"] == "done"
    first = Path(sorted(korean)[0])
    item = client.get(f"/galleries/{gallery}/items/{first.stem}").json()
    assert item["label"] == "character01" and item["has_file"] is True and item["payload"] == {}
    assert client.get(f"/galleries/{gallery}/items/{first.stem}/file").content == korean[str(first)]


def test_a_bad_image_member_is_skipped_and_named_in_the_job(client, glyphs):
    gallery = image_gallery(client, "archive-broken")
    members = dict(list(sorted(glyphs.items()))[:5])
    members["Greek/broken.png"] = b"\x89PNG\r\n\x1a\n but not really an image"
    reply = upload(client, gallery, zip_bytes(members))
    assert reply.status_code == 202 and reply.json()["accepted"] == 6
    record = wait_job(client, reply.json()["job_id"])
    assert record["state"] == "done" and record["done"] == 6 and "Greek/broken.png" in record["error"]
    assert client.get(f"/galleries/{gallery}").json()["count"] == 5


def _bomb() -> bytes:
    return zip_bytes({"Greek/ok.png": b"x", "Greek/bomb.png": bytes(64 * 1024 * 1024)})


@pytest.mark.parametrize("name, make, code, member", [
    ("traversal", lambda g: zip_bytes({**g, "../../etc/evil.png": b"x"}), "unsafe_path", "../../etc/evil.png"),
    ("absolute", lambda g: tar_bytes({**g, "/tmp/evil.png": b"x"}), "unsafe_path", "/tmp/evil.png"),
    ("symlink", lambda g: tar_bytes(g, links={"Greek/link.png": "/etc/passwd"}), "unsafe_member", "Greek/link.png"),
    ("too-many", lambda g: zip_bytes({f"many/{i}.png": b"x" for i in range(MAX_MEMBERS + 1)}), "too_many_members",
     str(MAX_MEMBERS)),
    ("bomb", lambda g: _bomb(), "suspicious_compression", "Greek/bomb.png"),
    ("duplicate", lambda g: zip_bytes({"a/x.png": b"1", "a/x.jpg": b"2"}), "duplicate_key", "a/x.jpg"),
    ("no-images", lambda g: zip_bytes({"README.txt": b"nothing here"}), "no_images", "1 other member"),
])
def test_unsafe_archives_are_400_naming_the_member_and_nothing_is_kept(server, client, glyphs, name, make, code,
                                                                         member):
    gallery = image_gallery(client, "archive-unsafe")
    few = dict(list(sorted(glyphs.items()))[:3])
    reply = upload(client, gallery, make(few), f"{name}.archive")
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"] == code and member in reply.json()["detail"]
    assert client.get(f"/galleries/{gallery}").json()["count"] == 0
    assert spooled_files(server) == []
    assert client.get("/health").status_code == 200


def test_wrong_uploads_get_4xx_json(client, glyphs):
    gallery = image_gallery(client, "archive-wrong")
    url = f"/galleries/{gallery}/items/archive"
    png = next(iter(glyphs.values()))
    cases = [
        (upload(client, gallery, png, "glyph.png"), 415, "unsupported_archive"),
        (upload(client, gallery, b"", "empty.zip"), 415, "unsupported_archive"),
        (client.post(url, json={"archive": "x"}), 415, "unsupported_media_type"),
        (client.post(url, files={"other": ("a.zip", zip_bytes({"a.png": png}))}), 422, "invalid_request"),
        (upload(client, gallery, zip_bytes({"a.png": png}), labels="parent"), 422, "invalid_request"),
        (upload(client, gallery, zip_bytes({"a.png": png}), payload_from_path="perhaps"), 422, "invalid_request"),
        (upload(client, "no-such-gallery", zip_bytes({"a.png": png})), 404, "not_found"),
        (client.post(url, files={"archive": ("a.zip", zip_bytes({"a.png": png}))}, headers={"X-API-Key": "no"}),
         403, "forbidden"),
    ]
    for reply, status, code in cases:
        assert (reply.status_code, reply.json()["error"]) == (status, code), reply.text


def test_the_archive_route_has_its_own_body_limit(client, glyphs):
    gallery = image_gallery(client, "archive-limit")
    padding = {"padding.bin": bytes(range(256)) * (12 * 1024)}  # 3 MiB, skipped; stored uncompressed
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, data in {**dict(list(sorted(glyphs.items()))[:4]), **padding}.items():
            archive.writestr(name, data)
    three_mib = buffer.getvalue()
    reply = upload(client, gallery, three_mib)
    assert reply.status_code == 202, reply.text
    assert wait_job(client, reply.json()["job_id"])["state"] == "done"
    ordinary = client.post(f"/galleries/{gallery}/items", files={"files": ("big.png", three_mib, "image/png")})
    assert ordinary.status_code == 413 and ordinary.json()["error"] == "payload_too_large"
    too_big = upload(client, gallery, three_mib + bytes(2 * 1024 * 1024))
    assert too_big.status_code == 413 and str(ARCHIVE_UPLOAD_BYTES) in too_big.json()["detail"]
    assert client.get("/health").status_code == 200


def test_the_file_of_a_text_item_and_unknown_keys_are_404(client):
    client.delete("/galleries/archive-texts")
    assert client.post("/galleries", json={"name": "archive-texts", "model": "minilm_l6"}).status_code == 201
    client.post("/galleries/archive-texts/items", json={"items": [{"key": "vim", "text": "Vi IMproved editor"}]})
    text = client.get("/galleries/archive-texts/items/vim/file")
    assert text.status_code == 404 and text.json()["error"] == "no_file"
    unknown_key = client.get("/galleries/archive-texts/items/nope/file")
    assert unknown_key.status_code == 404 and unknown_key.json()["error"] == "not_found"
    unknown_gallery = client.get("/galleries/no-such-gallery/items/vim/file")
    assert unknown_gallery.status_code == 404 and unknown_gallery.json()["error"] == "not_found"
    traversal = client.get("/galleries/archive-texts/items/..%2F..%2Fjobs.sqlite3/file")
    assert traversal.status_code == 404
    assert client.post("/galleries/archive-texts/items/archive",
                       files={"archive": ("a.zip", zip_bytes({"a.png": b"x"}))}).json()["error"] == "modality_mismatch"


def test_hundreds_of_files_in_one_request_become_a_job(client, data_dir):
    files = sorted((data_dir / "omniglot" / "images").glob("[GKL]*/character0[1-5]/*.png"))[:300]
    assert len(files) == 300 and len({path.name for path in files}) == 300
    gallery = image_gallery(client, "bulk-files")
    reply = client.post(f"/galleries/{gallery}/items",
                        files=[("files", (path.name, path.read_bytes(), "image/png")) for path in files])
    assert reply.status_code == 202, reply.text
    record = wait_job(client, reply.json()["job_id"])
    assert (record["kind"], record["state"], record["done"], record["total"]) == ("index", "done", 300, 300)
    assert client.get(f"/galleries/{gallery}").json()["count"] == 300
    assert client.get(f"/galleries/{gallery}/items/{files[123].name}/file").content == files[123].read_bytes()
