"""OpenAPI schema additions for routes that read JSON or multipart bodies themselves."""

from typing import Any, Dict, List

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from server.schemas import EvaluateRequest, ItemMeta, ItemsRequest, SearchRequest


def document_manual_bodies(app: FastAPI) -> None:
    """Routes that read JSON or multipart themselves name their JSON schemas by $ref; put those in components."""
    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for model in (ItemsRequest, SearchRequest, ItemMeta, EvaluateRequest):
                body = model.model_json_schema(ref_template="#/components/schemas/{model}")
                components.update(body.pop("$defs", {}))
                components[model.__name__] = body
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi


def json_or_multipart_body(json_model: str, form_required: List[str], form_properties: Dict[str, Any],
                           **json_examples: Any) -> Dict[str, Any]:
    """`openapi_extra` of a route that reads its body itself: JSON of the schema `json_model` (with `example` or
    `examples`) or a multipart form with these fields."""
    return {"requestBody": {"required": True, "content": {
        "application/json": {"schema": {"$ref": f"#/components/schemas/{json_model}"}, **json_examples},
        "multipart/form-data": {"schema": {"type": "object", "required": form_required,
                                           "properties": form_properties}}}}}


__all__ = ["document_manual_bodies", "json_or_multipart_body"]
