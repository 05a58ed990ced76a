"""The FastAPI application factory: `create_app(settings)` wires services, routers, errors and metrics."""

import logging
import threading
from contextlib import asynccontextmanager
from typing import AsyncIterator, Optional

from fastapi import FastAPI

from server.bootstrap import bootstrap_models
from server.error_handlers import install_error_handlers
from server.errors import error_body
from server.limits import BodySizeLimitMiddleware
from server.metrics import RequestMetricsMiddleware
from server.model_registry import ExtractorLoader, load_extractor
from server.openapi import document_manual_bodies
from server.rerankers import RerankerLoader, load_reranker
from server.routes import (archives, classify, evaluate, galleries, health, image_embeddings, item_files, items, jobs,
                           labels, metrics, models, openai_embeddings, search, snapshots)
from server.routes import finetune as finetune_routes
from server.services import Services, build_services
from server.settings import Settings
from server.ui import routes as ui_routes

logger = logging.getLogger(__name__)

DESCRIPTION = """Embedding search over galleries of texts or images.

Write endpoints need the API key (header `X-API-Key`) when the server has one; search and health stay open unless
`OML_PROTECT_SEARCH` is set. Errors are JSON `{"detail": "...", "error": "code"}`, except under `/v1/` (the
OpenAI-compatible API), where they have OpenAI's shape `{"error": {"message", "type", "param", "code"}}`.
"""


def _start_models(services: Services) -> None:
    settings = services.settings
    try:
        bootstrap_models(settings.models_dir, settings.bootstrap_model, settings.bootstrap_precision)
    except Exception:
        logger.exception("exporting the bundled model %s failed", settings.bootstrap_model)
    try:
        services.registry.start(settings.watch_interval_s)
    except Exception:
        logger.exception("loading models from %s failed", settings.models_dir)
        services.registry.started.set()


def create_app(settings: Optional[Settings] = None, loader: ExtractorLoader = load_extractor,
               reranker_loader: RerankerLoader = load_reranker) -> FastAPI:
    """Build the oml-server application; models load in the background (see GET /ready). `loader` and
    `reranker_loader` turn a model version folder into an extractor or a reranker (ONNX Runtime unless a test passes
    fakes)."""
    settings = settings or Settings.from_env()
    services = build_services(settings, loader=loader, reranker_loader=reranker_loader)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        starter = threading.Thread(target=_start_models, args=(services,), daemon=True, name="models-start")
        starter.start()
        try:
            yield
        finally:
            await services.close()

    app = FastAPI(title="oml-server", version="0.1.0", description=DESCRIPTION, lifespan=lifespan,
                  responses={500: {"description": "server fault", "content": {"application/json": {
                      "example": error_body("internal error: RuntimeError", "internal_error")}}}})
    app.state.services = services
    install_error_handlers(app)
    for module in (health, models, galleries, item_files, archives, items, labels, search, evaluate, classify,
                   image_embeddings, openai_embeddings, jobs, metrics, snapshots):
        app.include_router(module.router)
    app.include_router(finetune_routes.router)  # POST /models/{name}/finetune
    app.include_router(ui_routes.router)  # /ui: the web page (and / redirects there)
    ui_routes.mount_static(app)
    document_manual_bodies(app)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_upload_bytes,
                       larger=[(archives.ARCHIVE_PATH, settings.max_archive_upload_bytes),
                               (snapshots.RESTORE_PATH, settings.max_archive_upload_bytes)])
    app.add_middleware(RequestMetricsMiddleware, metrics_getter=lambda: services.metrics)
    return app


__all__ = ["create_app"]
