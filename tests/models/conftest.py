"""Real parts for the model tests: the bundled MiniLM, its tokenizer, a checkpoint server on 127.0.0.1."""

import socket
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator, Tuple

import pytest

from oml.models import HFWrapper
from oml.registry import get_tokenizer_for_pretrained


@pytest.fixture(scope="session")
def minilm() -> HFWrapper:
    return HFWrapper.from_pretrained("minilm_l6").eval()


@pytest.fixture(scope="session")
def minilm_tokenizer():
    return get_tokenizer_for_pretrained("minilm_l6")


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep pytest output clean
        pass


class FileServer:
    """Serves a folder over HTTP on 127.0.0.1 from a thread; counts requests; can be stopped mid-test."""

    def __init__(self, folder: Path):
        server = self

        class CountingHandler(_QuietHandler):
            def do_GET(self) -> None:
                server.requests += 1
                super().do_GET()

        self.requests = 0
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(CountingHandler, directory=str(folder)))
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.running = True

    @property
    def base_url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def stop(self) -> None:
        if self.running:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.thread.join(timeout=5)
            self.running = False


@pytest.fixture
def file_server(tmp_path: Path) -> Iterator[Tuple[FileServer, Path]]:
    """A running HTTP server over a fresh folder, and that folder (put files there to serve them)."""
    folder = tmp_path / "served"
    folder.mkdir()
    server = FileServer(folder)
    yield server, folder
    server.stop()


@pytest.fixture
def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh checkpoint cache, set through OML_CACHE_DIR as a user would."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("OML_CACHE_DIR", str(folder))
    return folder
