"""Liveness and readiness."""

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from server.dependencies import Services, get_services
from server.schemas import HealthResponse, ReadyResponse

router = APIRouter(tags=["health"])


@router.get("/health", response_model=HealthResponse, summary="Liveness: the process answers")
def health() -> HealthResponse:
    return HealthResponse()


@router.get("/ready", response_model=ReadyResponse, summary="Readiness: every model's active version is loaded",
            responses={503: {"model": ReadyResponse, "description": "models still loading (or none usable)"}})
def ready(services: Services = Depends(get_services)) -> JSONResponse:
    registry = services.registry
    body = ReadyResponse(ready=registry.is_ready(),
                         models={m["name"]: m["active_version"] for m in registry.describe()})
    return JSONResponse(body.model_dump(), status_code=200 if body.ready else 503)
