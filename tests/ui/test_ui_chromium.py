"""The /ui page in headless Chromium against a real server: galleries, text and image search, uploads, the API key
prompt, model activation, errors shown on the page and job progress."""

import re
import zipfile

import pytest

from server_helpers import API_KEY
from ui_helpers import API_KEY_STORE, IMAGE_GALLERY, PLAYWRIGHT_MISSING, SPARE_MODEL, TEXT_GALLERY, glyph_meta

expect = pytest.importorskip("playwright.sync_api", reason=PLAYWRIGHT_MISSING,
                             exc_type=ImportError).expect


def open_gallery(page, name: str) -> None:
    page.goto(f"/ui#galleries/{name}")
    expect(page.locator("#g-name")).to_have_text(name)


def enter_key(page, key: str = API_KEY) -> None:
    dialog = page.locator("#key-dialog")
    expect(dialog).to_be_visible()
    page.fill("#key-input", key)
    page.click("#key-submit")


def test_root_redirects_and_the_page_lists_galleries(ui_page):
    ui_page.goto("/")
    assert ui_page.url.endswith("/ui")
    texts = ui_page.locator(f'[data-gallery="{TEXT_GALLERY}"]')
    expect(texts).to_contain_text("32 items")
    expect(texts).to_contain_text("minilm_l6 v1")
    expect(texts).to_contain_text("exact")
    expect(texts.locator(".badge")).to_have_text("text")
    images = ui_page.locator(f'[data-gallery="{IMAGE_GALLERY}"]')
    expect(images).to_contain_text("12 items")
    expect(images).to_contain_text("tiny_image v1")
    expect(images.locator(".badge")).to_have_text("image")
    expect(ui_page.locator("#gallery-none")).to_be_visible()
    expect(ui_page.locator("#errors")).to_be_hidden()
    expect(ui_page.locator("#key-state")).to_have_text("no API key")

    texts.click()
    expect(ui_page.locator("#g-name")).to_have_text(TEXT_GALLERY)
    assert ui_page.url.endswith(f"#galleries/{TEXT_GALLERY}")
    expect(ui_page.locator('[data-fact="model"]')).to_have_text("minilm_l6 v1")
    expect(ui_page.locator("#text-query")).to_be_visible()
    expect(ui_page.locator("#image-query")).to_be_hidden()
    expect(ui_page.locator("#rerank-wrap")).to_be_hidden()  # the gallery names no reranker


def test_text_search_shows_result_cards(ui_page, package_texts):
    target = package_texts[5]
    open_gallery(ui_page, TEXT_GALLERY)
    ui_page.fill("#q-text", target["description"])
    ui_page.select_option("#q-k", "5")
    ui_page.click("#search-button")
    cards = ui_page.locator("#results-grid .hit")
    expect(cards).to_have_count(5)
    first = cards.first
    expect(first).to_have_attribute("data-key", target["package"])
    expect(first.locator(".key")).to_have_text(target["package"])
    expect(first.locator(".distance")).to_have_text(re.compile(r"^0\.00\d\d$"))
    expect(first.locator(".label")).to_have_text(target["source"])
    expect(first.locator(".payload")).to_contain_text(target["section"])
    expect(first.locator(".hit-text")).to_have_text(target["description"])  # fetched from GET .../items/{key}
    expect(ui_page.locator("#rerank-badge")).to_have_text("not reranked")
    expect(ui_page.locator("#results-meta")).to_contain_text("5 hits · minilm_l6 v1")
    expect(ui_page.locator("#errors")).to_be_hidden()


def test_image_upload_search_shows_thumbnails_that_load(ui_page, omniglot_files):
    query = omniglot_files[3]
    open_gallery(ui_page, IMAGE_GALLERY)
    expect(ui_page.locator("#text-query")).to_be_hidden()
    ui_page.set_input_files("#q-image", str(query))  # choosing a file searches at once
    expect(ui_page.locator("#q-preview")).to_be_visible()
    cards = ui_page.locator("#results-grid .hit")
    expect(cards).to_have_count(10)
    expect(cards.first).to_have_attribute("data-key", glyph_meta(query)["key"])
    expect(cards.first.locator(".distance")).to_have_text(re.compile(r"^0\.00\d\d$"))
    expect(cards.first.locator(".payload")).to_contain_text(glyph_meta(query)["payload"]["character"])
    ui_page.wait_for_function("""() => {
        const imgs = [...document.querySelectorAll('#results-grid .thumb img')];
        return imgs.length === 10 && imgs.every((img) => !img.hidden && img.complete && img.naturalWidth > 0);
    }""")
    expect(ui_page.locator("#results-grid .thumb.missing")).to_have_count(0)
    expect(ui_page.locator("#errors")).to_be_hidden()


def test_bad_uploads_show_the_servers_error_on_the_page(ui_page, text_file, corrupt_png):
    open_gallery(ui_page, IMAGE_GALLERY)
    ui_page.set_input_files("#q-image", str(text_file))
    errors = ui_page.locator("#errors")
    expect(errors).to_be_visible()
    expect(errors).to_contain_text(f"Search in {IMAGE_GALLERY}: file 'notes.txt' is not an image")
    expect(errors).to_contain_text("422 not_an_image")

    ui_page.click("#add-items summary")
    ui_page.set_input_files("#upload-files", str(corrupt_png))
    ui_page.click("#upload-form button[type=submit]")
    enter_key(ui_page)  # adding items is a write: the page asks for the key, then retries
    expect(errors).to_contain_text("file 'broken.png' is a corrupt or truncated image")
    expect(ui_page.locator(f'[data-gallery="{IMAGE_GALLERY}"]')).to_contain_text("12 items")
    ui_page.click("#errors-clear")
    expect(errors).to_be_hidden()


def test_with_protected_search_the_page_asks_for_the_key_and_thumbnails_load(protected_page, omniglot_files):
    open_gallery(protected_page, IMAGE_GALLERY)  # listing galleries stays open
    protected_page.set_input_files("#q-image", str(omniglot_files[2]))
    expect(protected_page.locator("#key-reason")).to_contain_text("needs the server's API key")
    enter_key(protected_page)
    cards = protected_page.locator("#results-grid .hit")
    expect(cards).to_have_count(4)
    expect(cards.first).to_have_attribute("data-key", glyph_meta(omniglot_files[2])["key"])
    protected_page.wait_for_function("""() => {
        const imgs = [...document.querySelectorAll('#results-grid .thumb img')];
        return imgs.length === 4 && imgs.every((img) => !img.hidden && img.complete && img.naturalWidth > 0);
    }""")  # the files need the key too: fetched with X-API-Key, shown as blob URLs
    expect(protected_page.locator("#errors")).to_be_hidden()


def test_activating_a_version_asks_for_the_key_and_shows_the_new_active_version(ui_page):
    ui_page.goto("/ui#models")
    card = ui_page.locator(f'[data-model="{SPARE_MODEL}"]')
    expect(card.locator(".active-version")).to_have_text("active version 2")
    ui_page.click(f'button[aria-label="Activate {SPARE_MODEL} version 1"]')

    expect(ui_page.locator("#key-reason")).to_contain_text("needs the server's API key")
    enter_key(ui_page, "not-the-key")
    expect(ui_page.locator("#key-reason")).to_contain_text("The key was refused: the API key is wrong")
    enter_key(ui_page)
    expect(ui_page.locator("#key-dialog")).to_be_hidden()
    expect(card.locator(".active-version")).to_have_text("active version 1", timeout=30_000)
    expect(card.locator('tr[data-version="1"] .badge.ok')).to_have_text("active")
    expect(ui_page.locator("#key-state")).to_have_text("API key set")
    assert ui_page.evaluate(f"sessionStorage.getItem({API_KEY_STORE!r})") == API_KEY
    expect(ui_page.locator("#errors")).to_be_hidden()


def test_jobs_view_shows_progress_of_a_bulk_upload(ui_page, extra_glyphs):
    ui_page.add_init_script(f"sessionStorage.setItem({API_KEY_STORE!r}, {API_KEY!r})")  # the key, as if entered before
    open_gallery(ui_page, IMAGE_GALLERY)
    ui_page.click("#add-items summary")
    ui_page.set_input_files("#upload-files", [str(path) for path in extra_glyphs])
    ui_page.click("#upload-form button[type=submit]")
    added = ui_page.locator("#add-result")
    expect(added).to_contain_text("20 images sent: background job")
    short_id = added.locator("code").inner_text()

    added.get_by_role("link", name="follow it under Jobs").click()
    expect(ui_page.locator("#view-jobs")).to_be_visible()
    job = ui_page.locator(f'li.job[data-job^="{short_id}"]')
    expect(job.locator(".badge").first).to_have_text("index")
    bar = job.get_by_role("progressbar")
    expect(bar).to_be_visible()
    # no clicks from here on: the page polls while the job runs
    expect(bar).to_have_attribute("aria-valuenow", "100", timeout=30_000)
    expect(job.locator(".badge.state")).to_have_text("done")
    expect(job).to_contain_text("20 / 20 items")
    ui_page.goto("/ui#galleries")
    expect(ui_page.locator(f'[data-gallery="{IMAGE_GALLERY}"]')).to_contain_text("32 items")


def test_archive_upload_becomes_an_archive_job(ui_page, omniglot_files, tmp_path):
    archive = tmp_path / "more-glyphs.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        for i, path in enumerate(omniglot_files[:3]):
            bundle.writestr(f"archived/drawing-{i}.png", path.read_bytes())
        bundle.writestr("README.txt", "not an image: skipped")
    ui_page.add_init_script(f"sessionStorage.setItem({API_KEY_STORE!r}, {API_KEY!r})")
    open_gallery(ui_page, IMAGE_GALLERY)
    ui_page.click("#add-items summary")
    ui_page.set_input_files("#upload-archive", str(archive))
    ui_page.click("#archive-form button[type=submit]")
    added = ui_page.locator("#add-result")
    expect(added).to_contain_text("more-glyphs.zip sent (3 images, 1 other members skipped): background job")
    short_id = added.locator("code").inner_text()
    ui_page.goto("/ui#jobs")
    job = ui_page.locator(f'li.job[data-job^="{short_id}"]')
    expect(job.locator(".badge").first).to_have_text("archive")
    expect(job.get_by_role("progressbar")).to_have_attribute("aria-valuenow", "100", timeout=30_000)


def test_create_a_gallery_and_add_text_items_from_the_page(ui_page):
    ui_page.goto("/ui")
    ui_page.click("#create-gallery summary")
    expect(ui_page.locator("#create-model option")).not_to_have_count(0)
    ui_page.fill("#create-name", "notes")
    ui_page.select_option("#create-model", "minilm_l6")
    ui_page.fill("#create-index", "Flat")
    ui_page.click("#create-form button[type=submit]")
    enter_key(ui_page)
    expect(ui_page.locator("#g-name")).to_have_text("notes")
    expect(ui_page.locator('[data-gallery="notes"]')).to_contain_text("0 items")
    expect(ui_page.locator('[data-fact="index"]')).to_have_text("Flat")

    ui_page.click("#add-items summary")
    ui_page.fill("#text-items", "tea | how to brew green tea | 1\ncoffee | espresso machine descaling\n")
    ui_page.click("#text-items-form button[type=submit]")
    expect(ui_page.locator("#add-result")).to_contain_text("indexed 2 items; the gallery holds 2")
    expect(ui_page.locator('[data-gallery="notes"]')).to_contain_text("2 items")
    ui_page.fill("#q-text", "brewing a cup of tea")
    ui_page.click("#search-button")
    expect(ui_page.locator("#results-grid .hit").first).to_have_attribute("data-key", "tea")

    ui_page.fill("#text-items", "only-a-key")
    ui_page.click("#text-items-form button[type=submit]")
    expect(ui_page.locator("#errors")).to_contain_text('line 1 needs "key | text"')


def test_a_network_error_is_shown_on_the_page(ui_page):
    ui_page.goto("/ui#galleries")
    expect(ui_page.locator(f'[data-gallery="{TEXT_GALLERY}"]')).to_be_visible()
    ui_page.route("**/galleries", lambda route: route.abort())
    ui_page.click("#galleries-refresh")
    expect(ui_page.locator("#errors")).to_contain_text("Loading galleries: network error")


def test_the_shell_and_static_files_are_open_and_carry_no_data(ui_server):
    import httpx

    page = httpx.get(f"{ui_server.url}/ui")  # no key, though the server has one
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert TEXT_GALLERY not in page.text and IMAGE_GALLERY not in page.text
    for name in ("ui.js", "ui.css", "icon.svg"):
        assert httpx.get(f"{ui_server.url}/ui/static/{name}").status_code == 200
    assert "/ui" not in httpx.get(f"{ui_server.url}/openapi.json").json()["paths"]
