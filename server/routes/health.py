"""Liveness and readiness."""

from fastapi import APIRouter, Response

from server.dependencies import RegistryDep
from server.schemas import HealthResponse, ReadyResponse

router = APIRouter(tags=["health"])


@router.get("/health", response_model=HealthResponse, summary="Liveness: the process answers")
def health() -> HealthResponse:
    return HealthResponse()


@router.get("/ready", response_model=ReadyResponse, summary="Readiness: every model's active version is loaded",
            responses={503: {"model": ReadyResponse, "description": "models still loading (or none usable)"}})
def ready(registry: RegistryDep, response: Response) -> ReadyResponse:
    body = ReadyResponse(ready=registry.is_ready(), models=registry.active_versions())
    response.status_code = 200 if body.ready else 503
    return body
