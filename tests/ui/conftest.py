"""Fixtures for the /ui tests: headless Chromium (Debian's `chromium`) driven by Playwright against a real server
holding a text gallery, an image gallery and a model with two versions.

The exported models are `tests/conftest.py`'s session fixture, the same export the server tests use; the package
texts and Omniglot files of `tests/server/conftest.py` are loaded from that file and re-exported here, so both folders
build them the same way.
"""

import importlib.util
from pathlib import Path
from typing import Iterator, List

import pytest

from ui_helpers import (CHROMIUM_MISSING, IMAGE_GALLERY, PLAYWRIGHT_MISSING, SERVER_TESTS, chromium_path,
                        launch_chromium, omniglot_sample, seed_galleries, ui_models, upload_images)
from server_helpers import ServerProcess, link_copy


def _server_fixtures():
    spec = importlib.util.spec_from_file_location("server_tests_conftest", SERVER_TESTS / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_server = _server_fixtures()
package_texts = _server.package_texts
omniglot_files = _server.omniglot_files


@pytest.fixture(scope="session")
def browser():
    """Headless Chromium; skips naming what is missing (never downloads a browser)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip(PLAYWRIGHT_MISSING)
    executable = chromium_path()
    if executable is None:
        pytest.skip(CHROMIUM_MISSING)
    with sync_playwright() as playwright:
        chromium = launch_chromium(playwright, executable)
        yield chromium
        chromium.close()


@pytest.fixture(scope="session")
def extra_glyphs(data_dir, omniglot_files) -> List[Path]:
    """Omniglot drawings not in the seeded gallery, for uploads from the page (enough to become a job)."""
    seeded = set(omniglot_files)
    return [path for path in omniglot_sample(data_dir, alphabets=4, characters=3, drawings=2)
            if path not in seeded][:20]


@pytest.fixture(scope="session")
def ui_server(browser, exported_models, package_texts, omniglot_files, tmp_path_factory) -> Iterator[ServerProcess]:
    """A real server (API key on) with `packages` (32 Debian descriptions), `glyphs` (12 Omniglot drawings) and
    `tiny_spare` v1 + v2. More than 16 items in one request become a job of chunks of 4."""
    root = tmp_path_factory.mktemp("ui-server")
    server = ServerProcess(root / "data", ui_models(exported_models, root / "models"), root / "server.log",
                           env={"OML_SYNC_ITEMS_LIMIT": "16", "OML_JOB_CHUNK_SIZE": "4", "OML_WATCH_INTERVAL_S": "0",
                                "OML_MAX_K": "50", "OML_ACCESS_LOG": "false"})
    server.start()
    try:
        with server.client(headers=server.headers) as client:
            seed_galleries(client, package_texts[:32], omniglot_files)
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def protected_server(browser, exported_models, omniglot_files, tmp_path_factory) -> Iterator[ServerProcess]:
    """A second, small server with OML_PROTECT_SEARCH on: searches and item files need the key too. It holds the
    image gallery `glyphs` with 4 drawings."""
    root = tmp_path_factory.mktemp("ui-protected")
    models = root / "models"
    models.mkdir()
    link_copy(exported_models / "tiny_image", models / "tiny_image")
    server = ServerProcess(root / "data", models, root / "server.log",
                           env={"OML_PROTECT_SEARCH": "true", "OML_WATCH_INTERVAL_S": "0", "OML_ACCESS_LOG": "false"})
    server.start()
    try:
        with server.client(headers=server.headers) as client:
            assert client.post("/galleries", json={"name": IMAGE_GALLERY, "model": "tiny_image"}).status_code == 201
            upload_images(client, IMAGE_GALLERY, omniglot_files[:4])
        yield server
    finally:
        server.stop()


def new_page(browser, server: ServerProcess):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=server.url)
    page = context.new_page()
    page.set_default_timeout(15_000)
    script_errors: List[str] = []
    page.on("pageerror", lambda error: script_errors.append(str(error)))
    page.on("console", lambda message: script_errors.append(message.text)
            if "Content Security Policy" in message.text else None)
    return context, page, script_errors


@pytest.fixture
def protected_page(browser, protected_server):
    context, page, script_errors = new_page(browser, protected_server)
    yield page
    context.close()
    assert script_errors == [], script_errors


@pytest.fixture
def ui_page(browser, ui_server):
    """A fresh browser context (empty sessionStorage: no API key yet) on the server; fails the test on any
    uncaught script error or Content-Security-Policy violation."""
    context, page, script_errors = new_page(browser, ui_server)
    yield page
    context.close()
    assert script_errors == [], script_errors


@pytest.fixture
def text_file(tmp_path) -> Path:
    path = tmp_path / "notes.txt"
    path.write_text("this is a text file, not an image\n")
    return path


@pytest.fixture
def corrupt_png(tmp_path, omniglot_files) -> Path:
    """The first half of a real PNG: a truncated image."""
    data = omniglot_files[0].read_bytes()
    path = tmp_path / "broken.png"
    path.write_bytes(data[: len(data) // 2])
    return path

