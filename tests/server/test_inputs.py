"""Image uploads: real Omniglot PNGs index and search; corrupt files, non-images, bombs and oversize bodies are 4xx."""

import io
import json

import pytest
from PIL import Image

from server.errors import InvalidInputError
from server.inputs import check_text, decode_image


def bomb_png(width: int = 3000, height: int = 3000) -> bytes:
    """A tiny file that declares a huge image (one bit per pixel, all zero: compresses to almost nothing)."""
    buffer = io.BytesIO()
    Image.new("1", (width, height)).save(buffer, format="PNG")
    return buffer.getvalue()


def truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


def test_decode_image_accepts_real_png_and_names_bad_files(omniglot_files):
    good = decode_image(omniglot_files[0].read_bytes(), "a.png", max_pixels=10_000_000)
    assert good.image.mode == "RGB" and good.suffix == ".png"
    with pytest.raises(InvalidInputError, match="'notes.txt' is not an image"):
        decode_image(b"just some text, not pixels", "notes.txt", max_pixels=10_000_000)
    with pytest.raises(InvalidInputError, match="'half.png' is a corrupt or truncated image"):
        decode_image(truncated(omniglot_files[0].read_bytes()), "half.png", max_pixels=10_000_000)
    with pytest.raises(InvalidInputError, match="decompression bomb"):
        decode_image(bomb_png(), "bomb.png", max_pixels=4_000_000)
    with pytest.raises(InvalidInputError, match="empty"):
        decode_image(b"", "empty.png", max_pixels=10)


def test_check_text_limits():
    assert check_text("fine", 10) == "fine"
    with pytest.raises(InvalidInputError, match="empty"):
        check_text(" \n", 10)
    with pytest.raises(InvalidInputError, match="11 characters, over the limit of 10"):
        check_text("x" * 11, 10)


@pytest.fixture(scope="module")
def image_gallery(shared_server, omniglot_files):
    files = omniglot_files[:6]
    meta = [{"key": f"img-{i}", "label": path.parent.name, "payload": {"file": path.name}}
            for i, path in enumerate(files)]
    with shared_server.client(headers=shared_server.headers) as client:
        assert client.post("/galleries", json={"name": "inputs-images", "model": "tiny_image", "index": "Flat"}).status_code == 201
        reply = client.post("/galleries/inputs-images/items", data={"items": json.dumps(meta)},
                            files=[("files", (p.name, p.read_bytes(), "image/png")) for p in files])
        assert reply.status_code == 200, reply.text
        assert reply.json()["indexed"] == 6
        yield files, meta
        client.delete("/galleries/inputs-images")


def test_image_search_finds_the_same_image_first(shared_server, image_gallery):
    files, meta = image_gallery
    with shared_server.client() as client:
        reply = client.post("/galleries/inputs-images/search", data={"k": "3"},
                            files={"image": ("q.png", files[4].read_bytes(), "image/png")})
        assert reply.status_code == 200, reply.text
        hits = reply.json()["results"][0]
        assert len(hits) == 3 and hits[0]["key"] == "img-4" and hits[0]["distance"] == pytest.approx(0, abs=1e-3)
        assert hits[0]["payload"] == meta[4]["payload"] and hits[0]["label"] == meta[4]["label"]
        assert client.get("/galleries/inputs-images/items/img-4").json()["has_file"] is True


def test_image_upload_without_items_part_uses_file_names_as_keys(shared_server, image_gallery, omniglot_files):
    extra = omniglot_files[8]
    with shared_server.client(headers=shared_server.headers) as client:
        reply = client.post("/galleries/inputs-images/items",
                            files=[("files", ("by-name.png", extra.read_bytes(), "image/png"))])
        assert reply.status_code == 200 and reply.json()["keys"] == ["by-name.png"]
        assert client.delete("/galleries/inputs-images/items/by-name.png").status_code == 200


@pytest.mark.parametrize("make, status, words", [
    (lambda good: truncated(good), 422, "corrupt or truncated"),
    (lambda good: b"%PDF-1.4 definitely not an image", 422, "not an image"),
    (lambda good: bomb_png(), 422, "decompression bomb"),
    (lambda good: b"", 422, "empty"),
])
def test_bad_uploads_are_refused_and_the_server_keeps_serving(shared_server, image_gallery, make, status, words):
    files, _ = image_gallery
    bad = make(files[0].read_bytes())
    with shared_server.client(headers=shared_server.headers) as client:
        search = client.post("/galleries/inputs-images/search", files={"image": ("bad.png", bad, "image/png")})
        assert search.status_code == status and words in search.json()["detail"], search.text
        add = client.post("/galleries/inputs-images/items", data={"items": json.dumps([{"key": "bad"}])},
                          files=[("files", ("bad.png", bad, "image/png"))])
        assert add.status_code == status and "bad.png" in add.json()["detail"]
        assert client.get("/galleries/inputs-images/items/bad").status_code == 404
        good = client.post("/galleries/inputs-images/search", files={"image": ("ok.png", files[1].read_bytes())})
        assert good.status_code == 200


def test_upload_over_the_size_limit_is_413(shared_server, image_gallery):
    too_big = b"\x89PNG" + b"\0" * (3 * 1024 * 1024)
    with shared_server.client(headers=shared_server.headers) as client:
        reply = client.post("/galleries/inputs-images/search", files={"image": ("big.png", too_big, "image/png")})
        assert reply.status_code == 413 and "over the limit" in reply.json()["detail"]

        def chunks():
            for _ in range(30):
                yield b"x" * (100 * 1024)
        streamed = client.post("/galleries/inputs-images/search", content=chunks(),
                               headers={"Content-Type": "application/json"})
        assert streamed.status_code == 413
    with shared_server.client() as client:
        assert client.get("/health").status_code == 200


def test_text_sent_to_an_image_gallery_is_422(shared_server, image_gallery):
    with shared_server.client(headers=shared_server.headers) as client:
        search = client.post("/galleries/inputs-images/search", json={"text": "a character"})
        assert search.status_code == 422 and search.json()["error"] == "modality_mismatch"
        add = client.post("/galleries/inputs-images/items", json={"items": [{"key": "t", "text": "words"}]})
        assert add.status_code == 422 and add.json()["error"] == "modality_mismatch"


def test_multipart_search_with_bad_k_or_two_images(shared_server, image_gallery):
    files, _ = image_gallery
    data = files[0].read_bytes()
    with shared_server.client() as client:
        assert client.post("/galleries/inputs-images/search", data={"k": "0"},
                           files={"image": ("q.png", data)}).status_code == 422
        assert client.post("/galleries/inputs-images/search", data={"k": "many"},
                           files={"image": ("q.png", data)}).status_code == 422
        two = client.post("/galleries/inputs-images/search", files=[("image", ("a.png", data)), ("image", ("b.png", data))])
        assert two.status_code == 422 and "exactly one file" in two.json()["detail"]
