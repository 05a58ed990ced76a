"""Helpers shared by the /ui browser tests and `docs/ui/make_screenshots.py`: finding Chromium, the model folder
and the demo galleries a page is shown against."""

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Dict, Iterable, List, Optional

import httpx

SERVER_TESTS = Path(__file__).resolve().parents[1] / "server"
if str(SERVER_TESTS) not in sys.path:
    sys.path.insert(0, str(SERVER_TESTS))

from server_helpers import items_from, link_copy  # noqa: E402

CHROMIUM_MISSING = ("needs a Chromium executable: install the Debian package `chromium` (apt-get install chromium); "
                    "Playwright's own browser download is never used")
PLAYWRIGHT_MISSING = ("needs the `playwright` Python package (pip install playwright, part of the dev extra); "
                      "`playwright install` is not needed")

TEXT_GALLERY = "packages"
IMAGE_GALLERY = "glyphs"
API_KEY_STORE = "oml-api-key"  # the sessionStorage entry the page keeps the key in
SPARE_MODEL = "tiny_spare"  # an image model with two versions and no galleries: cheap to activate


def chromium_path() -> Optional[str]:
    """The system Chromium (Debian's `chromium` package), or None."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    return "/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None


def launch_chromium(playwright, executable: str):
    """Headless Chromium from `executable`; Playwright downloads nothing."""
    return playwright.chromium.launch(executable_path=executable, headless=True,
                                      args=["--disable-gpu", "--disable-dev-shm-usage"])


def ui_models(exported_models: Path, target: Path) -> Path:
    """A models folder: MiniLM (text), `tiny_image` (image) linked from `exported_models`, plus `tiny_spare` with
    versions 1 and 2 (random-weight timm `test_resnet`, exported in well under a second)."""
    from oml.export import export_timm

    target.mkdir(parents=True)
    for name in ("minilm_l6", "tiny_image"):
        link_copy(exported_models / name, target / name)
    for version in (1, 2):
        export_timm("test_resnet", None, target, name=SPARE_MODEL, version=version)
    return target


def glyph_meta(path: Path) -> Dict[str, object]:
    """Key, label and payload of an Omniglot drawing `<alphabet>/<character>/<drawing>.png`."""
    alphabet, character = path.parent.parent.name, path.parent.name
    return {"key": f"{alphabet}-{character}-{path.stem}", "label": f"{alphabet}/{character}",
            "payload": {"alphabet": alphabet.replace("_", " "), "character": character}}


def omniglot_sample(data_dir: Path, alphabets: int = 3, characters: int = 3, drawings: int = 2) -> List[Path]:
    """A few drawings of a few characters of a few alphabets, in a stable order."""
    root = data_dir / "omniglot" / "images"
    picked: List[Path] = []
    for alphabet in sorted(p for p in root.iterdir() if p.is_dir())[:alphabets]:
        for character in sorted(p for p in alphabet.iterdir() if p.is_dir())[:characters]:
            picked.extend(sorted(character.glob("*.png"))[:drawings])
    return picked


def upload_images(client: httpx.Client, gallery: str, files: Iterable[Path]) -> dict:
    files = list(files)
    reply = client.post(f"/galleries/{gallery}/items",
                        data={"items": json.dumps([glyph_meta(path) for path in files])},
                        files=[("files", (path.name, path.read_bytes(), "image/png")) for path in files])
    assert reply.status_code in (200, 202), reply.text
    return reply.json()


def seed_galleries(client: httpx.Client, package_rows: List[Dict[str, str]], glyphs: List[Path],
                   batch: int = 8) -> None:
    """The text gallery `packages` (Debian descriptions) and the image gallery `glyphs` (Omniglot drawings), each
    filled in batches small enough to be indexed before the reply."""
    for name, model in ((TEXT_GALLERY, "minilm_l6"), (IMAGE_GALLERY, "tiny_image")):
        reply = client.post("/galleries", json={"name": name, "model": model, "index": "exact"})
        assert reply.status_code == 201, reply.text
    items = items_from(package_rows)
    for start in range(0, len(items), batch):
        reply = client.post(f"/galleries/{TEXT_GALLERY}/items", json={"items": items[start:start + batch]})
        assert reply.status_code == 200, reply.text
    for start in range(0, len(glyphs), batch):
        assert upload_images(client, IMAGE_GALLERY, glyphs[start:start + batch])["job_id"] is None


__all__ = ["CHROMIUM_MISSING", "PLAYWRIGHT_MISSING", "API_KEY_STORE", "TEXT_GALLERY", "IMAGE_GALLERY", "SPARE_MODEL",
           "chromium_path", "launch_chromium", "ui_models", "glyph_meta", "omniglot_sample", "upload_images",
           "seed_galleries"]
