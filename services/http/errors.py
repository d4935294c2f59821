"""The one place where domain errors become HTTP responses.

Every error body has the same shape, declared as :class:`ErrorBody` so it appears in OpenAPI:
``{"error": {"code": ..., "message": ..., "details": {...}}}``. Unexpected exceptions are logged
with their traceback server-side and answered with a generic 500 that leaks nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from pipelines.errors import PipelineError
from services.core.errors import (
    RadwatchError,
    UnavailableError,
    from_pipeline,
    invalid,
    problems_of,
)
from services.metrics.registry import API_ERRORS, EVENTS_REJECTED

log = logging.getLogger(__name__)


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: dict[str, Any] = {}


class ErrorBody(BaseModel):
    error: ErrorDetail


#: Responses every authenticated route can give, for OpenAPI.
COMMON_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "Missing or unknown API key."},
    403: {"model": ErrorBody, "description": "The key's role may not do this."},
    503: {"model": ErrorBody, "description": "A dependency is unavailable; retry later."},
}


def _body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def _respond(
    request: Request,
    code: str,
    message: str,
    status: int,
    *,
    details: dict[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """Every error response goes through here, so every one is counted by its code; a refused
    prediction also counts as a rejected gateway event."""
    API_ERRORS.labels(code, str(status)).inc()
    if 400 <= status < 500 and request.url.path == "/v1/predictions" and status not in (401, 403):
        EVENTS_REJECTED.labels("gateway", code).inc()
    return JSONResponse(
        _body(code, message, details), status_code=status, headers=dict(headers or {})
    )


def _describe_validation(exc: RequestValidationError) -> tuple[str, list[dict[str, Any]]]:
    problems = problems_of(exc.errors(), loc=lambda loc: tuple(p for p in loc if p != "body"))
    error = invalid("Invalid request", problems, keep=len(problems))
    return error.message, problems


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RadwatchError)
    async def _domain(request: Request, exc: RadwatchError) -> JSONResponse:
        headers = {}
        if isinstance(exc, UnavailableError):
            headers["Retry-After"] = str(exc.retry_after_s)
        return _respond(
            request, exc.code, exc.message, exc.status_code, details=exc.details, headers=headers
        )

    @app.exception_handler(PipelineError)
    async def _pipeline(request: Request, exc: PipelineError) -> JSONResponse:
        # A pipeline's input error that a caller did not translate: same status and message
        # as if it had (services.core.errors.pipeline_errors).
        return await _domain(request, from_pipeline(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        message, problems = _describe_validation(exc)
        return _respond(request, "validation_failed", message, 422, details={"problems": problems})

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _respond(
            request, "http_error", str(exc.detail), exc.status_code, headers=exc.headers
        )

    @app.exception_handler(OperationalError)
    async def _db_down(request: Request, exc: OperationalError) -> JSONResponse:
        log.warning("database unavailable: %s", type(exc.orig).__name__)
        return _respond(
            request,
            "database_unavailable",
            "The database is unreachable; nothing was stored. Retry.",
            503,
            headers={"Retry-After": "5"},
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return _respond(request, "internal_error", "Internal error; it has been logged.", 500)


Responses = dict[int | str, dict[str, Any]]
#: Responses of an endpoint that changes a lifecycle object (request, protocol, promotion).
STATE_RESPONSES: Responses = {
    404: {"model": ErrorBody, "description": "Unknown request, model or version."},
    409: {"model": ErrorBody, "description": "The current state does not allow this."},
    422: {"model": ErrorBody, "description": "Bad body."},
    **COMMON_RESPONSES,
}
