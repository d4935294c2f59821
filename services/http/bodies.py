"""Request-body helpers shared by the endpoints that take JSON batches."""

from __future__ import annotations

import json
from typing import Any

import orjson
from fastapi import Request
from starlette.concurrency import run_in_threadpool

from services.core.errors import (
    BadRequestError,
    PayloadTooLargeError,
    UnsupportedMediaTypeError,
    ValidationFailedError,
)

#: The most items one batch request may carry.
MAX_BATCH = 1000


def _loads(body: bytes) -> Any:
    """orjson (3x faster on 3 MB event batches); it rejects the non-standard NaN/Infinity that
    Python's json module writes, so such a body is re-read with json to reject only the events
    that hold them (per-event errors), not the whole batch."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return json.loads(body)


def too_large(limit: int, hint: str) -> PayloadTooLargeError:
    return PayloadTooLargeError(
        f"Request body is larger than {limit / (1024 * 1024):g} MiB; {hint} "
        "(or raise RADWATCH_MAX_UPLOAD_MB)."
    )


async def read_batch(request: Request, max_upload_mb: float, *, key: str) -> list[Any]:
    """The list under ``key`` of a JSON object body, with clear errors for every other shape."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise UnsupportedMediaTypeError(
            f"Unsupported content type '{content_type or 'none'}': send application/json "
            f'with a body {{"{key}": [...]}}.'
        )
    limit = int(max_upload_mb * 1024 * 1024)
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise too_large(limit, f"send fewer {key} per request")
    body = await request.body()
    if len(body) > limit:
        raise too_large(limit, f"send fewer {key} per request")
    try:
        payload = await run_in_threadpool(_loads, body)
    except json.JSONDecodeError as exc:
        raise BadRequestError(f"Body is not valid JSON: {exc.msg} at char {exc.pos}.") from None
    except UnicodeDecodeError:
        raise BadRequestError("Body is not UTF-8 encoded JSON.") from None
    items = payload.get(key) if isinstance(payload, dict) else None
    if not isinstance(items, list):
        raise ValidationFailedError(f'Body must be a JSON object {{"{key}": [...]}}.')
    if not 1 <= len(items) <= MAX_BATCH:
        raise ValidationFailedError(
            f"'{key}' has {len(items)} items; send between 1 and {MAX_BATCH} per request."
        )
    return items


def refuse_if_nothing_stored(
    *, received: int, stored: int, duplicates: int, rejected: list[Any], noun: str
) -> None:
    """Per-item batches answer 422 when not a single item could be stored (or was already)."""
    if rejected and not stored and not duplicates:
        raise ValidationFailedError(
            f"None of the {received} {noun} was stored. {rejected[0].message}",
            details={"rejected": [r.model_dump() for r in rejected]},
        )
