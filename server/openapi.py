"""OpenAPI schema additions for routes that read JSON or multipart bodies themselves."""

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from server.schemas import ItemMeta, ItemsRequest, SearchRequest


def document_manual_bodies(app: FastAPI) -> None:
    """Routes that read JSON or multipart themselves name their JSON schemas by $ref; put those in components."""
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


__all__ = ["document_manual_bodies"]
