"""The one place where domain errors become HTTP responses.

Every error body has the same shape, declared as :class:`ErrorBody` so it appears in OpenAPI:
``{"error": {"code": ..., "message": ..., "details": {...}}}``. Unexpected exceptions are logged
with their traceback server-side and answered with a generic 500 that leaks nothing.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.core.errors import RadwatchError, UnavailableError

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


def _describe_validation(exc: RequestValidationError) -> tuple[str, list[dict[str, Any]]]:
    problems = []
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body",))
        msg = str(err.get("msg", "invalid"))
        problems.append({"field": loc, "problem": msg})
        parts.append(f"{loc or 'body'}: {msg}")
    return "Invalid request: " + "; ".join(parts[:5]), problems


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RadwatchError)
    async def _domain(_: Request, exc: RadwatchError) -> JSONResponse:
        headers = {}
        if isinstance(exc, UnavailableError):
            headers["Retry-After"] = str(exc.retry_after_s)
        return JSONResponse(
            _body(exc.code, exc.message, exc.details), status_code=exc.status_code, headers=headers
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        message, problems = _describe_validation(exc)
        return JSONResponse(
            _body("validation_failed", message, {"problems": problems}), status_code=422
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            _body("http_error", str(exc.detail)), status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(OperationalError)
    async def _db_down(_: Request, exc: OperationalError) -> JSONResponse:
        log.warning("database unavailable: %s", type(exc.orig).__name__)
        return JSONResponse(
            _body(
                "database_unavailable", "The database is unreachable; nothing was stored. Retry."
            ),
            status_code=503,
            headers={"Retry-After": "5"},
        )

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return JSONResponse(
            _body("internal_error", "Internal error; it has been logged."), status_code=500
        )
