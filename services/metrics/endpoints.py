"""``GET /metrics`` and the request-timing middleware."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

from services.metrics.broker import BrokerCollector
from services.metrics.collector import DatabaseCollector
from services.metrics.registry import REQUEST_LATENCY, REQUESTS


def _route_template(request: Request) -> str:
    """The matched route's path template (``/v1/alerts``), never the raw path, so that ids in
    URLs cannot blow up the label cardinality. Starlette stores the route in the scope."""
    route = request.scope.get("route")
    path = getattr(route, "path", None)
    return str(path) if path else "unmatched"


#: Queues whose depth is exported (the worker consumes these).
QUEUES = ("monitoring",)


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

    broker: list[BrokerCollector] = []  # built on first scrape: settings live in app.state

    @app.get("/metrics", tags=["ops"], summary="Prometheus exposition", include_in_schema=True)
    def metrics() -> Response:
        state = app.state.radwatch
        if not broker:
            broker.append(BrokerCollector(state.settings.resolved_broker_url, QUEUES))
        db_registry = CollectorRegistry(auto_describe=False)
        db_registry.register(DatabaseCollector(state.sessions))
        db_registry.register(broker[0])
        body = generate_latest(REGISTRY) + generate_latest(db_registry)
        return Response(content=body, media_type=CONTENT_TYPE_LATEST)
