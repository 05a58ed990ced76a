"""The `/ui` page: one HTML shell rendered with Jinja2 plus static CSS and JavaScript under `/ui/static`.

The shell and the static files carry no data, so they are served without the API key; the page's script reads and
writes everything through the REST API, whose own key rules apply (the key is asked for in the page on a 401/403).
"""

from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from server.dependencies import SettingsDep

UI_DIR = Path(__file__).resolve().parent
STATIC_PATH = "/ui/static"
K_CHOICES = (1, 3, 5, 10, 20, 50, 100)

# the page loads nothing from elsewhere and runs no inline script; thumbnails are blob: URLs of fetched files
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; script-src 'self'; "
                               "style-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
                               "form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

templates = Jinja2Templates(directory=str(UI_DIR / "templates"))
router = APIRouter(include_in_schema=False)


@router.get("/", response_class=RedirectResponse)
def root() -> RedirectResponse:
    """Nothing else lives at `/`: send a browser to the page."""
    return RedirectResponse("/ui", status_code=307)


@router.get("/ui", response_class=HTMLResponse)
def page(request: Request, settings: SettingsDep) -> HTMLResponse:
    """The page shell: layout, forms and empty views; its script fills them from the API."""
    k_choices = [k for k in K_CHOICES if k < settings.max_k] + [settings.max_k]  # always starts with 1
    return templates.TemplateResponse(request, "index.html", {
        "static": STATIC_PATH, "k_choices": k_choices, "default_k": max(k for k in k_choices if k <= 10),
        "max_upload_mb": round(settings.max_upload_bytes / (1024 * 1024), 1)}, headers=SECURITY_HEADERS)


def mount_static(app: FastAPI) -> None:
    """Serve `server/ui/static` at `/ui/static` (CSS, JavaScript, icon)."""
    app.mount(STATIC_PATH, StaticFiles(directory=str(UI_DIR / "static")), name="ui-static")


__all__ = ["router", "mount_static", "STATIC_PATH"]
