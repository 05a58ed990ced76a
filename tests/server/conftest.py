"""Fixtures for server tests: models exported once per session, a shared real server on 127.0.0.1."""

import csv
import shutil
from pathlib import Path
from typing import Dict, Iterator, List, NamedTuple

import pytest

from server_helpers import ServerProcess, models_copy

# `exported_models` (MiniLM v1 + tiny_image v1, once per session) is in tests/conftest.py, shared with tests/ui


@pytest.fixture(scope="session")
def minilm_int8_v2(exported_models, tmp_path_factory) -> Path:
    """A prepared MiniLM version 2: the v1 graph quantized to int8 (embeddings change measurably)."""
    from oml.artifact import ModelManifest
    from oml.export.quantize import quantize_int8

    source = exported_models / "minilm_l6" / "1"
    target = tmp_path_factory.mktemp("prepared") / "minilm_v2"
    target.mkdir()
    shutil.copytree(source / "tokenizer", target / "tokenizer")
    quantize_int8(source / "model.onnx", target / "model.onnx")
    manifest = ModelManifest.load(source)
    manifest.version, manifest.precision = 2, "int8"
    manifest.save(target)
    return target


@pytest.fixture(scope="session")
def corrupt_minilm_v3(exported_models, tmp_path_factory) -> Path:
    """A prepared MiniLM version 3 whose model.onnx is garbage: it must be refused."""
    from oml.artifact import ModelManifest

    source = exported_models / "minilm_l6" / "1"
    target = tmp_path_factory.mktemp("prepared") / "minilm_v3"
    target.mkdir()
    shutil.copytree(source / "tokenizer", target / "tokenizer")
    (target / "model.onnx").write_bytes(b"this is not an ONNX graph" * 100)
    manifest = ModelManifest.load(source)
    manifest.version = 3
    manifest.save(target)
    return target


class FirstStart(NamedTuple):
    """What a server's first start on an empty models folder left: the folder, its log, its /ready reply."""

    models_dir: Path
    log: str
    ready: dict


@pytest.fixture(scope="session")
def first_start(tmp_path_factory) -> FirstStart:
    """A real server started on an empty models folder (as `make serve`): it exports the bundled MiniLM itself
    (bootstrap, int8 after the held-out check), answers /ready, then stops. One bootstrap for every test that needs
    it; tests only read `models_dir` (serve a `link_copy` of it)."""
    root = tmp_path_factory.mktemp("first-start")
    server = ServerProcess(root / "data", root / "models", root / "server.log", api_key=None,
                           env={"OML_BOOTSTRAP_MODEL": "minilm_l6", "OML_WATCH_INTERVAL_S": "0"})
    server.start()
    try:
        with server.client() as client:
            ready = client.get("/ready").json()
    finally:
        server.stop()
    return FirstStart(server.models_dir, server.log_tail(200_000), ready)


@pytest.fixture(scope="session")
def package_texts(data_dir) -> List[Dict[str, str]]:
    """Real Debian package descriptions (package, section, source, description)."""
    with open(data_dir / "debian-packages" / "descriptions.tsv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    return rows[::3][:1500]


@pytest.fixture(scope="session")
def omniglot_files(data_dir) -> List[Path]:
    root = data_dir / "omniglot" / "images"
    files = sorted(root.glob("*/character0[1-3]/*.png"))
    return files[:12]


@pytest.fixture(scope="session")
def shared_server(exported_models, tmp_path_factory) -> Iterator[ServerProcess]:
    """One server for the API tests (both models, API key on, small limits so limits are cheap to test)."""
    root = tmp_path_factory.mktemp("shared-server")
    server = ServerProcess(root / "data", models_copy(exported_models, root / "models"), root / "server.log",
                           env={"OML_MAX_UPLOAD_BYTES": str(2 * 1024 * 1024), "OML_MAX_TEXT_CHARS": "500",
                                "OML_MAX_K": "50", "OML_SYNC_ITEMS_LIMIT": "16", "OML_JOB_CHUNK_SIZE": "8",
                                "OML_MAX_IMAGE_PIXELS": "4000000", "OML_WATCH_INTERVAL_S": "0"})
    server.start()
    yield server
    server.stop()


