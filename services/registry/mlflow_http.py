"""How the MLflow adapter talks to MLflow: bounded retries, redacted URIs, translated errors.

MLflow's HTTP client retries a dead server with exponential back-off for minutes by default; a
request from the API or a Celery task must fail fast instead, so while one adapter call runs the
``MLFLOW_HTTP_REQUEST_*`` environment variables (read by MLflow per request) are bounded. Values
the operator set explicitly are kept.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from typing import Final
from urllib.parse import urlsplit, urlunsplit

from services.core.errors import (
    ConflictError,
    RadwatchError,
    RegistryUnavailableError,
    UnknownModelError,
    ValidationFailedError,
)

#: Bounded HTTP behaviour while this adapter talks to an MLflow server: 2 retries with 1 s
#: back-off (about 2 s in all for a refused connection), 30 s per request.
_HTTP_LIMITS: Final[dict[str, str]] = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}
_env_lock = threading.Lock()
_env_users = 0
_env_saved: dict[str, str | None] = {}


@contextlib.contextmanager
def bounded_http() -> Iterator[None]:
    """Apply :data:`_HTTP_LIMITS` while at least one adapter call is running (thread-safe)."""
    global _env_users
    with _env_lock:
        if _env_users == 0:
            _env_saved.clear()
            for key, value in _HTTP_LIMITS.items():
                _env_saved[key] = os.environ.get(key)
                if key not in os.environ:
                    os.environ[key] = value
        _env_users += 1
    try:
        yield
    finally:
        with _env_lock:
            _env_users -= 1
            if _env_users == 0:
                for key, saved in _env_saved.items():
                    if saved is None:
                        os.environ.pop(key, None)
                    else:
                        os.environ[key] = saved


def redact(uri: str) -> str:
    """The URI without user:password, safe for messages and logs."""
    parts = urlsplit(uri)
    if parts.username is None and parts.password is None:
        return uri
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


def is_transport_failure(exc: BaseException) -> bool:
    import requests

    if isinstance(exc, requests.exceptions.RequestException | ConnectionError | TimeoutError):
        return True
    text = str(exc)
    return "API request to" in text and ("Max retries exceeded" in text or "timed out" in text)


def is_database_failure(exc: BaseException) -> bool:
    try:
        from sqlalchemy.exc import OperationalError
    except ImportError:  # pragma: no cover - sqlalchemy is a dependency
        return False
    return isinstance(exc, OperationalError)


@contextlib.contextmanager
def translated(what: str, tracking_uri: str) -> Iterator[None]:
    """Run MLflow calls for ``what`` and turn their failures into radwatch errors, with the
    URI's credentials removed from every message (and no traceback chain that repeats them)."""
    from mlflow.exceptions import MlflowException

    where = redact(tracking_uri)
    chain = None if where != tracking_uri else True
    try:
        with bounded_http():
            yield
    except RadwatchError:
        raise
    except MlflowException as exc:
        code = str(exc.error_code)
        message = scrub(str(exc.message), tracking_uri)
        cause = exc if chain else None
        if is_transport_failure(exc) or code in {"TEMPORARILY_UNAVAILABLE"}:
            raise unavailable(where, message) from cause
        if code in {"RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"} or (
            code == "INVALID_PARAMETER_VALUE" and "not found" in message.lower()
        ):
            raise UnknownModelError(
                f"{what}: not found in the MLflow registry at {where} ({message}). "
                "Check the name, version or alias against MlflowRegistry.list_versions or the "
                "MLflow UI."
            ) from cause
        if code == "RESOURCE_ALREADY_EXISTS":
            raise ConflictError(f"{what}: {message}") from cause
        if code == "INVALID_PARAMETER_VALUE":
            raise ValidationFailedError(
                f"{what}: MLflow rejected the request: {message}"
            ) from cause
        raise RegistryUnavailableError(
            f"{what}: MLflow at {where} failed ({code}): {message}"
        ) from cause
    except Exception as exc:
        if is_transport_failure(exc) or is_database_failure(exc):
            text = scrub(str(exc), tracking_uri) or type(exc).__name__
            raise unavailable(where, text) from (exc if chain else None)
        raise


def scrub(text: str, uri: str) -> str:
    """``text`` with the URI's user:password removed."""
    parts = urlsplit(uri)
    if parts.password is not None:
        text = text.replace(parts.password, "***")
    if parts.username is not None:
        text = text.replace(f"{parts.username}:***@", "").replace(f"{parts.username}@", "")
    return text


def unavailable(where: str, text: str) -> RegistryUnavailableError:
    reason = text.splitlines()[0][:300] if text else "no reason given"
    return RegistryUnavailableError(
        f"MLflow at {where} is not reachable: {reason}. Start the tracking server (or check "
        "the SQLite path) and set RADWATCH_MLFLOW_TRACKING_URI."
    )
