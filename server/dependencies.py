"""FastAPI dependencies as `Annotated` aliases: the app's services, its settings and the API-key checks.

They are `async def` although none awaits: FastAPI runs a plain `def` dependency in its thread pool, which cost a
search four event-loop <-> thread hops (docs/PERFORMANCE.md)."""

import hmac
from typing import Annotated, Optional

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from server.errors import ForbiddenError, UnauthorizedError
from server.evaluation import Evaluator
from server.galleries import GalleryService
from server.jobs import JobStore
from server.model_registry import ModelRegistry
from server.search_service import Searcher
from server.services import Services
from server.settings import Settings

api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False,
                              description="the server's API key, when one is configured")
bearer_header = HTTPBearer(auto_error=False, description="the API key as a bearer token (alternative to X-API-Key)")


async def get_services(request: Request) -> Services:
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(get_services)]


async def get_settings(services: ServicesDep) -> Settings:
    return services.settings


async def get_galleries(services: ServicesDep) -> GalleryService:
    return services.galleries


async def get_searcher(services: ServicesDep) -> Searcher:
    return services.searcher


async def get_evaluator(services: ServicesDep) -> Evaluator:
    return services.evaluator


async def get_registry(services: ServicesDep) -> ModelRegistry:
    return services.registry


async def get_jobs(services: ServicesDep) -> JobStore:
    return services.jobs


SettingsDep = Annotated[Settings, Depends(get_settings)]
GalleriesDep = Annotated[GalleryService, Depends(get_galleries)]
SearcherDep = Annotated[Searcher, Depends(get_searcher)]
EvaluatorDep = Annotated[Evaluator, Depends(get_evaluator)]
RegistryDep = Annotated[ModelRegistry, Depends(get_registry)]
JobsDep = Annotated[JobStore, Depends(get_jobs)]
HeaderKeyDep = Annotated[Optional[str], Depends(api_key_header)]
BearerKeyDep = Annotated[Optional[HTTPAuthorizationCredentials], Depends(bearer_header)]


def _check_key(settings: Settings, header_key: Optional[str], bearer: Optional[HTTPAuthorizationCredentials]) -> None:
    if settings.api_key is None:
        return
    supplied = header_key or (bearer.credentials if bearer is not None else None)
    if not supplied:
        raise UnauthorizedError("this endpoint needs the API key: send it in the X-API-Key header")
    if not hmac.compare_digest(supplied.encode("utf-8"), settings.api_key.encode("utf-8")):
        raise ForbiddenError("the API key is wrong")


async def require_api_key(settings: SettingsDep, header_key: HeaderKeyDep, bearer: BearerKeyDep) -> None:
    """Writes need the API key whenever one is configured: 401 without it, 403 with a wrong one."""
    _check_key(settings, header_key, bearer)


async def require_search_key(settings: SettingsDep, header_key: HeaderKeyDep, bearer: BearerKeyDep) -> None:
    """Search stays open unless `protect_search` is set."""
    if settings.protect_search:
        _check_key(settings, header_key, bearer)


__all__ = ["ServicesDep", "SettingsDep", "GalleriesDep", "SearcherDep", "EvaluatorDep", "RegistryDep", "JobsDep",
           "get_services",
           "get_settings", "require_api_key", "require_search_key"]
