"""``GET /metrics`` and the request-timing middleware."""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from services.metrics.broker import BrokerCollector
from services.metrics.celery import CeleryCollector
from services.metrics.registry import REQUEST_LATENCY, REQUESTS
from services.telemetry.collector import DatabaseCollector


def _route_template(request: Request) -> str:
    """The matched route's path template (``/v1/alerts``), never the raw path, so that ids in
    URLs cannot blow up the label cardinality. Starlette stores the route in the scope."""
    route = request.scope.get("route")
    path = getattr(route, "path", None)
    return str(path) if path else "unmatched"


#: Queues whose depth is exported (the workers consume these).
QUEUES = ("monitoring", "training")


def process_registry() -> CollectorRegistry:
    """The API's own counters: merged across all worker processes when the API runs several
    (``PROMETHEUS_MULTIPROC_DIR`` set, see ``radwatch api``), else this process's registry."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return registry
    return REGISTRY


def install_metrics(app: FastAPI) -> None:
    @app.middleware("http")
    async def _time_requests(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        start = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            return response
        finally:
            route = _route_template(request)
            if route != "/metrics":
                REQUESTS.labels(route, request.method, str(status)).inc()
                REQUEST_LATENCY.labels(route, request.method).observe(time.perf_counter() - start)

    # Built on first scrape (settings live in app.state) and kept: they hold connections.
    shared: list[CollectorRegistry] = []

    @app.get("/metrics", tags=["ops"], summary="Prometheus exposition", include_in_schema=True)
    def metrics() -> Response:
        state = app.state.radwatch
        if not shared:
            registry = CollectorRegistry(auto_describe=False)
            registry.register(DatabaseCollector(state.sessions))
            registry.register(BrokerCollector(state.settings.resolved_broker_url, QUEUES))
            registry.register(CeleryCollector(state.settings.resolved_broker_url))
            shared.append(registry)
        body = generate_latest(process_registry()) + generate_latest(shared[0])
        return Response(content=body, media_type=CONTENT_TYPE_LATEST)
