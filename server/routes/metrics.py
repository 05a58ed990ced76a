"""Prometheus scrape endpoint."""

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from server.dependencies import ServicesDep

router = APIRouter(tags=["metrics"])


@router.get("/metrics", summary="Prometheus metrics: requests, latency, batch sizes, queue wait, galleries, models",
            response_class=Response,
            responses={200: {"content": {"text/plain": {"example": "oml_http_requests_total{...} 3.0"}}}})
def metrics(services: ServicesDep) -> Response:
    services.galleries.publish_sizes()
    return Response(generate_latest(services.metrics.registry), media_type=CONTENT_TYPE_LATEST)
