"""Checkpoint downloads from a real HTTP server on 127.0.0.1: cache, checksums, offline and broken transfers."""

import hashlib
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
import torchvision

from oml.const import CACHE_PATH
from oml.models import ResnetExtractor
from oml.utils.download import (
    CheckpointDownloadError,
    check_hash,
    download_checkpoint,
    get_cache_dir,
    parse_hash,
)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def served_resnet18(file_server):
    """A random torchvision ResNet-18 checkpoint (torchvision key layout, with its fc) on the local server."""
    server, folder = file_server
    torch.manual_seed(0)
    reference = torchvision.models.resnet18(weights=None)
    path = folder / "resnet18-test.pth"
    torch.save(reference.state_dict(), path)
    return server, path, reference


def test_zoo_entry_downloads_checks_and_loads_the_same_weights(
    served_resnet18, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, path, reference = served_resnet18
    entry = {
        "url": f"{server.base_url}/{path.name}",
        "hash": f"sha256:{_sha256(path)[:8]}",  # a prefix, as torchvision publishes
        "fname": "resnet18_test.pth",
        "init_args": {"arch": "resnet18", "gem_p": None, "remove_fc": True, "normalise_features": False},
        "feat_dim": 512,
    }
    monkeypatch.setitem(ResnetExtractor.pretrained_models, "resnet18_test", entry)

    model = ResnetExtractor.from_pretrained("resnet18_test").eval()
    assert (cache_dir / "resnet18_test.pth").read_bytes() == path.read_bytes()
    assert sorted(p.name for p in cache_dir.iterdir()) == ["resnet18_test.pth"]  # no temp file left behind
    for key, value in reference.state_dict().items():
        if not key.startswith("fc."):
            assert torch.equal(model.model.state_dict()[key], value), key

    images = torch.rand(2, 3, 64, 64)
    reference.fc = torch.nn.Identity()
    with torch.inference_mode():
        assert torch.allclose(model(images), reference.eval()(images), atol=1e-5)

    requests_before = server.requests
    server.stop()
    again = ResnetExtractor.from_pretrained("resnet18_test")  # served from the cache, server gone
    assert server.requests == requests_before
    assert torch.equal(again.model.conv1.weight, model.model.conv1.weight)


def test_bad_checksum_names_url_and_path_and_leaves_no_file(served_resnet18, cache_dir: Path) -> None:
    server, path, _ = served_resnet18
    url = f"{server.base_url}/{path.name}"
    with pytest.raises(CheckpointDownloadError) as info:
        download_checkpoint(url, "sha256:00000000", fname="r18.pth")
    message = str(info.value)
    assert url in message and str(cache_dir / "r18.pth") in message and "Checksum mismatch" in message
    assert info.value.url == url and info.value.path == cache_dir / "r18.pth"
    assert list(cache_dir.iterdir()) == []


def test_unreachable_server_gives_offline_error_naming_url_and_path(closed_port_url: str, cache_dir: Path) -> None:
    url = f"{closed_port_url}/dino/vits16.pth"
    with pytest.raises(CheckpointDownloadError) as info:
        download_checkpoint(url, "md5:cf0f22", fname="vits16_dino.ckpt")
    message = str(info.value)
    assert url in message and str(cache_dir / "vits16_dino.ckpt") in message and "offline" in message
    assert isinstance(info.value, RuntimeError)
    assert list(cache_dir.iterdir()) == []


def test_missing_file_on_server_is_a_clear_error(file_server, cache_dir: Path) -> None:
    server, _ = file_server
    with pytest.raises(CheckpointDownloadError, match="404"):
        download_checkpoint(f"{server.base_url}/nope.pth", None)


def test_corrupted_cached_file_is_downloaded_again(served_resnet18, cache_dir: Path) -> None:
    server, path, _ = served_resnet18
    url, digest = f"{server.base_url}/{path.name}", f"md5:{hashlib.md5(path.read_bytes()).hexdigest()}"
    cached = download_checkpoint(url, digest)
    cached.write_bytes(b"corrupted")
    requests_before = server.requests
    assert download_checkpoint(url, digest).read_bytes() == path.read_bytes()
    assert server.requests == requests_before + 1


def test_unknown_hash_downloads_unverified_with_a_warning(
    served_resnet18, cache_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server, path, _ = served_resnet18
    with caplog.at_level(logging.WARNING, logger="oml.utils.download"):
        got = download_checkpoint(f"{server.base_url}/{path.name}", None, cache_dir=cache_dir / "explicit")
    assert got == cache_dir / "explicit" / path.name and got.read_bytes() == path.read_bytes()
    assert "unverified" in caplog.text


class _TruncatingHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "100000")
        self.end_headers()
        self.wfile.write(b"x" * 1000)  # then hang up long before the promised length

    def log_message(self, *args) -> None:
        pass


def test_connection_dropped_mid_transfer_leaves_no_partial_file(cache_dir: Path) -> None:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _TruncatingHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/big.pth"
        with pytest.raises(CheckpointDownloadError) as info:
            download_checkpoint(url, None)  # no checksum to catch it: the length check must
        assert url in str(info.value) and str(cache_dir / "big.pth") in str(info.value)
        assert list(cache_dir.iterdir()) == []
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_cache_dir_comes_from_argument_then_env_then_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("OML_CACHE_DIR", raising=False)
    assert get_cache_dir() == CACHE_PATH
    monkeypatch.setenv("OML_CACHE_DIR", str(tmp_path / "env"))
    assert get_cache_dir() == tmp_path / "env"
    assert get_cache_dir(tmp_path / "arg") == tmp_path / "arg"


def test_hash_strings_are_parsed_and_checked(tmp_path: Path) -> None:
    assert parse_hash("sha256:0676BA61") == ("sha256", "0676ba61")
    assert parse_hash("cf0f22") == ("md5", "cf0f22")
    assert parse_hash(None) is None
    with pytest.raises(ValueError, match="Unsupported hash algorithm"):
        parse_hash("sha1:abcdef")
    with pytest.raises(ValueError, match="at least 6 hex"):
        parse_hash("md5:abc")
    with pytest.raises(ValueError, match="at least 6 hex"):
        parse_hash("md5:not-hex-at-all")
    path = tmp_path / "f.bin"
    path.write_bytes(b"hello")
    assert check_hash(path, "sha256:" + hashlib.sha256(b"hello").hexdigest())
    assert check_hash(path, "md5:" + hashlib.md5(b"hello").hexdigest()[:6])
    assert not check_hash(path, "md5:000000")
