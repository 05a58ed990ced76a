"""The FastAPI application factory: `create_app(settings)` wires services, routers, errors and metrics."""

import importlib
import json
import logging
import threading
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator, Optional

from fastapi import FastAPI

from server.dependencies import Services
from server.embedding import QueryEmbedder
from server.errors import error_body, install_error_handlers
from server.galleries import GalleryService
from server.jobs import JobStore
from server.limits import BodySizeLimitMiddleware
from server.metrics import RequestMetricsMiddleware, ServerMetrics
from server.model_registry import ModelNotFound, ModelRegistry, ModelUnavailable
from server.routes import galleries, health, items, jobs, metrics, models, search
from server.schemas import ItemMeta, ItemsRequest, SearchRequest
from server.search_service import Searcher
from server.settings import Settings

logger = logging.getLogger(__name__)

DESCRIPTION = """Embedding search over galleries of texts or images.

Write endpoints need the API key (header `X-API-Key`) when the server has one; search and health stay open unless
`OML_PROTECT_SEARCH` is set. Errors are JSON `{"detail": "...", "error": "code"}`.
"""


def bootstrap_models(models_dir: Path, model_name: Optional[str]) -> None:
    """With an empty models folder, export the bundled `model_name` as version 1 so the server can answer at once."""
    models_dir.mkdir(parents=True, exist_ok=True)
    has_versions = any(p.is_dir() and any((v / "manifest.json").exists() for v in p.iterdir() if v.is_dir())
                       for p in models_dir.iterdir() if p.is_dir())
    if has_versions or not model_name:
        return
    from oml.export import export_pretrained

    logger.info("models folder %s is empty: exporting the bundled %s as version 1 (takes ~30 s)",
                models_dir, model_name)
    path = export_pretrained(model_name, models_dir, version=1)
    logger.info("exported %s to %s", model_name, path)


def load_postprocessor(spec: Optional[str], args_json: Optional[str]) -> Optional[Any]:
    """Build the `IRetrievalPostprocessor` named `module:factory` (e.g. `oml.retrieval:ConstantThresholding`),
    called with the keyword arguments in `args_json`; None when `spec` is None."""
    if spec is None:
        return None
    from oml.interfaces.retrieval import IRetrievalPostprocessor

    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"postprocessor must look like 'package.module:factory', got {spec!r}")
    try:
        kwargs = json.loads(args_json) if args_json else {}
    except json.JSONDecodeError as error:
        raise ValueError(f"postprocessor arguments are not valid JSON: {error}") from None
    if not isinstance(kwargs, dict):
        raise ValueError(f"postprocessor arguments must be a JSON object, got {args_json!r}")
    factory = getattr(importlib.import_module(module_name), attribute)
    postprocessor = factory(**kwargs)
    if not isinstance(postprocessor, IRetrievalPostprocessor):
        raise ValueError(f"{spec} built a {type(postprocessor).__name__}, not an IRetrievalPostprocessor")
    logger.info("search rerank uses %r", postprocessor)
    return postprocessor


def _start_models(services: Services) -> None:
    settings = services.settings
    try:
        bootstrap_models(settings.models_dir, settings.bootstrap_model)
    except Exception:
        logger.exception("exporting the bundled model %s failed", settings.bootstrap_model)
    try:
        services.registry.start(settings.watch_interval_s)
    except Exception:
        logger.exception("loading models from %s failed", settings.models_dir)
        services.registry.started.set()


def build_services(settings: Settings) -> Services:
    metrics = ServerMetrics()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    registry = ModelRegistry(settings.models_dir, num_threads=settings.num_threads, metrics=metrics)
    job_store = JobStore(settings.data_dir)
    gallery_service = GalleryService(settings, registry, job_store, metrics)
    registry.bindings = gallery_service
    embedder = QueryEmbedder(registry, settings, metrics)
    postprocessor = settings.extra.get("postprocessor") or load_postprocessor(settings.postprocessor,
                                                                              settings.postprocessor_args)
    return Services(settings=settings, metrics=metrics, registry=registry, galleries=gallery_service, jobs=job_store,
                    embedder=embedder, postprocessor=postprocessor,
                    searcher=Searcher(gallery_service, embedder, settings, postprocessor))


def _document_manual_bodies(app: FastAPI) -> None:
    """Routes that read JSON or multipart themselves name their JSON schemas by $ref; put those in components."""
    from fastapi.openapi.utils import get_openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for model in (ItemsRequest, SearchRequest, ItemMeta):
                body = model.model_json_schema(ref_template="#/components/schemas/{model}")
                components.update(body.pop("$defs", {}))
                components[model.__name__] = body
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi


def _install_library_error_handlers(app: FastAPI) -> None:
    """Errors of the layers below that a client can cause or must be told about, as JSON 4xx/503."""
    from fastapi import Request
    from fastapi.responses import JSONResponse

    from indexing import GalleryNotFoundError, InvalidGalleryNameError
    from oml.inference import InvalidInputError as UndecodableInput

    def handler(status: int, code: str):
        async def respond(request: Request, exc: Exception) -> JSONResponse:
            logger.info("%s %s -> %d: %s", request.method, request.url.path, status, exc)
            return JSONResponse(error_body(str(exc), code), status_code=status)
        return respond

    app.add_exception_handler(UndecodableInput, handler(422, "invalid_input"))
    app.add_exception_handler(InvalidGalleryNameError, handler(422, "invalid_name"))
    app.add_exception_handler(GalleryNotFoundError, handler(404, "not_found"))
    app.add_exception_handler(ModelNotFound, handler(503, "model_unavailable"))
    app.add_exception_handler(ModelUnavailable, handler(503, "model_unavailable"))


def create_app(settings: Optional[Settings] = None) -> FastAPI:
    """Build the oml-server application; models load in the background (see GET /ready)."""
    settings = settings or Settings.from_env()
    services = build_services(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loader = threading.Thread(target=_start_models, args=(services,), daemon=True, name="models-start")
        loader.start()
        try:
            yield
        finally:
            services.registry.close()
            services.jobs.close()
            await services.embedder.close()
            services.galleries.close()

    app = FastAPI(title="oml-server", version="0.1.0", description=DESCRIPTION, lifespan=lifespan,
                  responses={500: {"description": "server fault", "content": {"application/json": {
                      "example": error_body("internal error: RuntimeError", "internal_error")}}}})
    app.state.services = services
    install_error_handlers(app)
    _install_library_error_handlers(app)
    for module in (health, models, galleries, items, search, jobs, metrics):
        app.include_router(module.router)
    _document_manual_bodies(app)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_upload_bytes)
    app.add_middleware(RequestMetricsMiddleware, metrics_getter=lambda: services.metrics)
    return app


__all__ = ["create_app", "build_services", "bootstrap_models"]
