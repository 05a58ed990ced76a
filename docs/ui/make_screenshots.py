"""Screenshots of the /ui page for the README: `.venv/bin/python docs/ui/make_screenshots.py`.

Starts a real server on a free port with a small text gallery (Debian package descriptions) and a small image
gallery (Omniglot drawings) from `tests/data`, drives headless Chromium (Debian's `chromium`) with Playwright and
writes `galleries-text.png`, `galleries-image.png`, `galleries-narrow.png` (a phone-sized window), `models.png`
and `jobs.png` into this folder (or `--out DIR`).
Takes about a minute, most of it exporting MiniLM.
"""

import argparse
import csv
import io
import os
import sys
import tempfile
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path[:0] = [str(REPO), str(REPO / "tests" / "ui"), str(REPO / "tests" / "server")]

from server_helpers import ServerProcess, items_from  # noqa: E402
from ui_helpers import (API_KEY_STORE, CHROMIUM_MISSING, IMAGE_GALLERY, TEXT_GALLERY, chromium_path,  # noqa: E402
                        launch_chromium, omniglot_sample, seed_galleries, ui_models)

DATA = REPO / "tests" / "data"
VIEWPORT = {"width": 1280, "height": 860}
MAX_PNG_BYTES = 300 * 1024
TEXT_QUERY = "edit source code with syntax highlighting"


def package_rows(n: int):
    with open(DATA / "debian-packages" / "descriptions.tsv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    return rows[::7][:n]


def save(page, path: Path) -> None:
    """A viewport screenshot, palette-reduced by Pillow if it comes out over the size budget."""
    data = page.screenshot(full_page=False)
    if len(data) > MAX_PNG_BYTES:
        from PIL import Image

        image = Image.open(io.BytesIO(data)).convert("RGB").quantize(colors=256)
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", optimize=True)
        data = buffer.getvalue()
    path.write_bytes(data)
    print(f"wrote {path} ({len(data) // 1024} KB)")


def wait_quiet(page) -> None:
    page.wait_for_function("() => document.querySelectorAll('.loading, [aria-busy=true]').length === 0")


def shoot(server: ServerProcess, out: Path, executable: str, queries, scheme: str = "light") -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright, executable)
        context = browser.new_context(viewport=VIEWPORT, base_url=server.url, color_scheme=scheme)
        context.add_init_script(f"sessionStorage.setItem({API_KEY_STORE!r}, {server.api_key!r})")
        page = context.new_page()
        page.set_default_timeout(30_000)

        page.goto(f"/ui#galleries/{TEXT_GALLERY}")
        page.wait_for_function(f"() => document.getElementById('g-name').textContent === {TEXT_GALLERY!r}")
        page.fill("#q-text", TEXT_QUERY)
        page.select_option("#q-k", "10")
        page.click("#search-button")
        page.locator("#results-grid .hit").nth(9).wait_for()
        wait_quiet(page)
        save(page, out / "galleries-text.png")

        page.goto(f"/ui#galleries/{IMAGE_GALLERY}")
        page.wait_for_function(f"() => document.getElementById('g-name').textContent === {IMAGE_GALLERY!r}")
        page.set_input_files("#q-image", str(queries[0]))
        page.locator("#results-grid .hit").nth(9).wait_for()
        wait_quiet(page)
        page.wait_for_function("() => [...document.querySelectorAll('.thumb img')].every((i) => i.naturalWidth > 0)")
        save(page, out / "galleries-image.png")

        phone = browser.new_context(viewport={"width": 390, "height": 844}, base_url=server.url, color_scheme=scheme,
                                    device_scale_factor=1)
        narrow = phone.new_page()
        narrow.goto(f"/ui#galleries/{IMAGE_GALLERY}")
        narrow.wait_for_function(f"() => document.getElementById('g-name').textContent === {IMAGE_GALLERY!r}")
        narrow.set_input_files("#q-image", str(queries[0]))
        narrow.locator("#results-grid .hit").nth(9).wait_for()
        wait_quiet(narrow)
        narrow.evaluate("document.getElementById('gallery-panel').scrollIntoView()")
        save(narrow, out / "galleries-narrow.png")
        phone.close()

        page.goto("/ui#models")
        page.locator("[data-model]").first.wait_for()
        save(page, out / "models.png")

        with server.client(headers=server.headers) as client:  # a bulk job that runs for a few seconds
            notes = [{"key": f"note-{i}", "text": f"maintenance note {i} about package {row['package']}: "
                      f"{row['description']}", "label": row["section"]}
                     for i, row in enumerate(package_rows(2000) * 2)][:1200]
            reply = client.post(f"/galleries/{TEXT_GALLERY}/items", json={"items": notes})
            assert reply.status_code == 202, reply.text
        page.goto("/ui#jobs")
        page.locator("li.job.running .bar").first.wait_for()
        time.sleep(1.5)  # let the bar move
        save(page, out / "jobs.png")
        browser.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    parser.add_argument("--color-scheme", choices=["light", "dark"], default="light")
    args = parser.parse_args()
    executable = chromium_path()
    if executable is None:
        print(CHROMIUM_MISSING, file=sys.stderr)
        return 2
    from oml.export import export_pretrained, export_timm

    with tempfile.TemporaryDirectory(prefix="oml-ui-shots-") as tmp:
        root = Path(tmp)
        exported = root / "exported"
        export_pretrained("minilm_l6", exported, version=1)
        export_timm("test_resnet", None, exported, name="tiny_image", version=1)
        server = ServerProcess(root / "data", ui_models(exported, root / "models"), root / "server.log",
                               env={"OML_SYNC_ITEMS_LIMIT": "16", "OML_JOB_CHUNK_SIZE": "16",
                                    "OML_WATCH_INTERVAL_S": "0", "OML_ACCESS_LOG": "false"})
        server.start()
        try:
            glyphs = omniglot_sample(DATA, alphabets=5, characters=4, drawings=2)
            archived = omniglot_sample(DATA, alphabets=6, characters=4, drawings=3)
            archived = [path for path in archived if path not in glyphs][:24]
            with server.client(headers=server.headers) as client:
                seed_galleries(client, package_rows(48), glyphs)
                bundle = io.BytesIO()
                with zipfile.ZipFile(bundle, "w") as archive:
                    for path in archived:
                        archive.writestr(f"{path.parent.parent.name}/{path.parent.name}/{path.name}",
                                         path.read_bytes())
                reply = client.post(f"/galleries/{IMAGE_GALLERY}/items/archive",
                                    files={"archive": ("more-glyphs.zip", bundle.getvalue(), "application/zip")})
                assert reply.status_code == 202, reply.text
                # a finished job of each kind that uploads make, for the jobs view
                batch = items_from(package_rows(400)[48:88])
                assert client.post(f"/galleries/{TEXT_GALLERY}/items", json={"items": batch}).status_code == 202
            args.out.mkdir(parents=True, exist_ok=True)
            shoot(server, args.out, executable, [glyphs[9]], args.color_scheme)
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
