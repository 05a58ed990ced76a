"""The gallery page's fine-tune button in headless Chromium: it starts a job, shows its state and phase with a
progress bar, cancels it; a gallery without enough labels shows the server's refusal."""

import re

import pytest

from server_helpers import API_KEY
from ui_helpers import PLAYWRIGHT_MISSING, TEXT_GALLERY

expect = pytest.importorskip("playwright.sync_api", reason=PLAYWRIGHT_MISSING, exc_type=ImportError).expect

LABELLED = "ft-labels"


def test_the_finetune_button_shows_the_jobs_progress_and_cancels_it(ui_page, ui_server):
    items = [{"key": f"k{i}", "text": f"package {i} built from source {i % 6}", "label": f"src{i % 6}"}
             for i in range(12)]
    with ui_server.client(headers=ui_server.headers) as client:
        assert client.post("/galleries", json={"name": LABELLED, "model": "minilm_l6"}).status_code == 201
        assert client.post(f"/galleries/{LABELLED}/items", json={"items": items}).status_code == 200
        try:
            ui_page.goto(f"/ui#galleries/{LABELLED}")
            expect(ui_page.locator("#g-name")).to_have_text(LABELLED)
            expect(ui_page.locator("#finetune-status")).to_be_hidden()
            ui_page.click("#finetune-button")
            ui_page.fill("#key-input", API_KEY)  # starting a fine-tune needs the key
            ui_page.click("#key-submit")
            status = ui_page.locator("#finetune-status")
            # the first request imports the training config's registries: allow it time on a busy machine
            expect(status).to_contain_text(re.compile(r"running · (preparing|training)"), timeout=60_000)
            expect(ui_page.locator("#finetune-progress")).to_be_visible()
            expect(ui_page.locator("#finetune-button")).to_be_disabled()
            ui_page.click("#finetune-cancel")
            expect(status).to_contain_text("cancelled", timeout=30_000)
            expect(status).to_contain_text("cancelled by a client")
            expect(ui_page.locator("#finetune-cancel")).to_be_hidden()
            expect(ui_page.locator("#finetune-button")).to_be_enabled()
            job = next(j for j in client.get("/jobs").json() if j["kind"] == "finetune" and j["gallery"] == LABELLED)
            assert job["state"] == "cancelled"

            ui_page.goto("/ui#jobs")
            row = ui_page.locator(f'[data-job="{job["id"]}"]')
            expect(row).to_contain_text("finetune")
            expect(row).to_contain_text("cancelled")

            ui_page.goto(f"/ui#galleries/{TEXT_GALLERY}")  # 32 descriptions: too few labels with 2+ items
            expect(ui_page.locator("#g-name")).to_have_text(TEXT_GALLERY)
            ui_page.click("#finetune-button")
            expect(ui_page.locator("#errors")).to_contain_text("label(s) with 2+ items", timeout=30_000)
            expect(ui_page.locator("#finetune-status")).to_be_hidden()
        finally:
            client.delete(f"/galleries/{LABELLED}")
