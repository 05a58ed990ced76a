"""FastAPI dependencies: the app's services, the settings and the API-key checks."""

import hmac
from dataclasses import dataclass
from typing import Any, Optional

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from server.errors import ForbiddenError, UnauthorizedError, UnavailableError
from server.settings import Settings

api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False,
                              description="the server's API key, when one is configured")
bearer_header = HTTPBearer(auto_error=False, description="the API key as a bearer token (alternative to X-API-Key)")


@dataclass
class Services:
    """Everything a route needs, built once per app in `create_app`."""

    settings: Settings
    metrics: Any
    registry: Any
    galleries: Any
    jobs: Any
    embedder: Any
    postprocessor: Optional[Any] = None
    searcher: Any = None


def get_services(request: Request) -> Services:
    services = getattr(request.app.state, "services", None)
    if services is None:
        raise UnavailableError("the server is starting; try again in a moment")
    return services


def get_settings(services: Services = Depends(get_services)) -> Settings:
    return services.settings


def _check_key(settings: Settings, header_key: Optional[str], bearer: Optional[HTTPAuthorizationCredentials]) -> None:
    if settings.api_key is None:
        return
    supplied = header_key or (bearer.credentials if bearer is not None else None)
    if not supplied:
        raise UnauthorizedError("this endpoint needs the API key: send it in the X-API-Key header")
    if not hmac.compare_digest(supplied.encode("utf-8"), settings.api_key.encode("utf-8")):
        raise ForbiddenError("the API key is wrong")


def require_api_key(settings: Settings = Depends(get_settings), header_key: Optional[str] = Depends(api_key_header),
                    bearer: Optional[HTTPAuthorizationCredentials] = Depends(bearer_header)) -> None:
    """Writes need the API key whenever one is configured: 401 without it, 403 with a wrong one."""
    _check_key(settings, header_key, bearer)


def require_search_key(settings: Settings = Depends(get_settings), header_key: Optional[str] = Depends(api_key_header),
                       bearer: Optional[HTTPAuthorizationCredentials] = Depends(bearer_header)) -> None:
    """Search stays open unless `protect_search` is set."""
    if settings.protect_search:
        _check_key(settings, header_key, bearer)


__all__ = ["Services", "get_services", "get_settings", "require_api_key", "require_search_key"]
