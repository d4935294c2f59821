"""The FastAPI application factory."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from services.core.runtime import Runtime
from services.core.settings import Settings, get_settings
from services.http.errors import install_error_handlers
from services.wiring import build_runtime

log = logging.getLogger(__name__)

API_DESCRIPTION = """
radwatch records every prediction of a deployed radiology model, watches the stream for drift,
subgroup bias and performance decay, and raises alerts.

Authenticate with an API key: `Authorization: Bearer <key>` or `X-API-Key: <key>`.
Errors always have the shape `{"error": {"code", "message", "details"}}`.
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = build_runtime(settings)
        app.state.radwatch = runtime
        try:
            yield
        finally:
            runtime.close()

    app = FastAPI(
        title="radwatch",
        version="0.1.0",
        description=API_DESCRIPTION,
        lifespan=lifespan,
    )
    install_error_handlers(app)

    from services.alerts.endpoints import router as alerts_router
    from services.approvals.endpoints import router as approvals_router
    from services.audit.endpoints import router as audit_router
    from services.change_protocols.endpoints import router as protocols_router
    from services.events.endpoints import router as events_router
    from services.labels.endpoints import router as labels_router
    from services.monitoring.endpoints import router as monitoring_router
    from services.promotion.endpoints import router as promotion_router
    from services.registry.endpoints import router as registry_router
    from services.retraining.endpoints import router as retraining_router
    from services.serving.endpoints import lifecycle_router as routing_router
    from services.serving.endpoints import router as serving_router
    from services.telemetry.endpoints import install_metrics
    from services.ui.endpoints import router as ui_router

    install_metrics(app)
    app.include_router(events_router)
    app.include_router(labels_router)
    app.include_router(serving_router)
    app.include_router(monitoring_router)
    app.include_router(alerts_router)
    app.include_router(audit_router)
    app.include_router(approvals_router)
    app.include_router(protocols_router)
    app.include_router(promotion_router)
    app.include_router(routing_router)
    app.include_router(retraining_router)
    app.include_router(registry_router)
    app.include_router(ui_router)

    @app.get("/healthz", tags=["ops"], summary="Liveness and dependency status")
    def healthz() -> dict[str, object]:
        state: Runtime = app.state.radwatch
        db_ok = True
        try:
            with state.engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
        except Exception:
            db_ok = False
        triton_ok = state.triton.is_live()
        return {
            "status": "ok" if db_ok and triton_ok else "degraded",
            "database": db_ok,
            "triton": triton_ok,
        }

    @app.get("/livez", tags=["ops"], summary="Liveness: 200 while the process serves HTTP")
    def livez() -> dict[str, bool]:
        return {"alive": True}

    @app.get(
        "/readyz",
        tags=["ops"],
        summary="Readiness: 200 when the database answers, else 503 (Triton is not asked)",
        responses={503: {"description": "The database is unreachable."}},
    )
    def readyz() -> JSONResponse:
        # Only the system of record decides readiness: without it nothing can be stored, while
        # a Triton outage still lets the API take batch events and labels.
        state: Runtime = app.state.radwatch
        try:
            with state.engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
        except Exception:
            return JSONResponse({"ready": False, "database": False}, status_code=503)
        return JSONResponse({"ready": True, "database": True})

    return app
