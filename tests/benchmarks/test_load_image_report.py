"""benchmarks/load.py helpers of the image section: the multipart bodies it sends and the report section it splices."""

import asyncio
import importlib.util
from pathlib import Path

import pytest
from starlette.requests import Request

LOAD_PY = Path(__file__).resolve().parents[2] / "benchmarks" / "load.py"


@pytest.fixture(scope="module")
def load():
    spec = importlib.util.spec_from_file_location("load_benchmark", LOAD_PY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parse_form(body: bytes, content_type: str) -> dict:
    """The form as the server reads it (Starlette's multipart parser)."""
    async def read() -> dict:
        async def receive() -> dict:
            return {"type": "http.request", "body": body, "more_body": False}

        scope = {"type": "http", "method": "POST", "path": "/", "headers": [(b"content-type", content_type.encode())]}
        form = await Request(scope, receive).form()
        image = form["image"]
        return {"k": form["k"], "filename": image.filename, "type": image.content_type, "data": await image.read()}

    return asyncio.run(read())


def test_multipart_body_is_read_back_by_the_server_parser(load):
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) + b"\r\n--not-the-boundary\r\n"
    target = load.MultipartTarget("/galleries/g/search", [load.multipart_body(
        "b0und", {"k": "7"}, "image", "0879_02.png", png, "image/png")], "b0und", lambda reply: True)
    form = parse_form(target.bodies[0], target.post_args(target.bodies[0])["headers"]["Content-Type"])
    assert form == {"k": "7", "filename": "0879_02.png", "type": "image/png", "data": png}


def test_framed_bodies_file_holds_each_body_after_its_length(load, tmp_path):
    bodies = [b"first\nbody", b"", b"\x00\xff"]
    target = load.MultipartTarget("/p", bodies, "b", lambda reply: True)
    args = target.write_bodies(tmp_path / "bodies.bin")
    assert args == [str(tmp_path / "bodies.bin"), "/p", "multipart/form-data; boundary=b"]
    assert (tmp_path / "bodies.bin").read_bytes() == b"10\nfirst\nbody0\n2\n\x00\xff"


def test_image_section_is_inserted_before_goals_then_replaced(load):
    report = "# Load\n\n| text rows |\n\n## Goals\n\n| goal |\n\n## Where the time goes\n\nkept by hand\n"
    first = load.splice_image_section(report, f"{load.IMAGE_BEGIN}\nold rows\n{load.IMAGE_END}")
    assert first.index("old rows") < first.index("## Goals") and first.endswith("kept by hand\n")
    second = load.splice_image_section(first, f"{load.IMAGE_BEGIN}\nnew rows\n{load.IMAGE_END}")
    assert "old rows" not in second and second.count(load.IMAGE_BEGIN) == 1
    assert second.replace("new rows", "old rows") == first
    assert load.splice_image_section("# Load\n", "S") == "# Load\n\nS\n"
