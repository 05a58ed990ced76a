"""Prometheus metrics, one registry per app, and the middleware that times every request by route."""

import time
from typing import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class ServerMetrics:
    """The server's counters, histograms and gauges, registered in their own `CollectorRegistry`."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("oml_http_requests_total", "HTTP requests by route, method and status",
                                ["route", "method", "status"], registry=self.registry)
        self.latency = Histogram("oml_http_request_duration_seconds", "HTTP request latency by route",
                                 ["route", "method"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.batch_size = Histogram("oml_batch_size", "inputs per ONNX Runtime call of the micro-batcher",
                                    ["model"], buckets=BATCH_BUCKETS, registry=self.registry)
        self.queue_wait = Histogram("oml_queue_wait_seconds", "time a query waited in the micro-batcher queue",
                                    ["model"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.inference_time = Histogram("oml_inference_seconds", "duration of one ONNX Runtime batch call",
                                        ["model"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.gallery_size = Gauge("oml_gallery_items", "items in each gallery", ["gallery"], registry=self.registry)
        self.model_version = Gauge("oml_model_active_version", "active version of each model", ["model"],
                                   registry=self.registry)
        self.model_loaded = Gauge("oml_model_loaded", "1 for each loaded model version", ["model", "version"],
                                  registry=self.registry)


class RequestMetricsMiddleware:
    """Counts and times each request under its route template (`/galleries/{name}`), not its raw path."""

    def __init__(self, app: ASGIApp, metrics_getter: Callable[[], ServerMetrics]):
        self.app = app
        self.metrics_getter = metrics_getter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = {"code": 500}

        async def send_and_record(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            metrics = self.metrics_getter()
            metrics.requests.labels(template, scope["method"], str(status["code"])).inc()
            metrics.latency.labels(template, scope["method"]).observe(time.perf_counter() - start)


__all__ = ["ServerMetrics", "RequestMetricsMiddleware"]
