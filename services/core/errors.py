"""The domain error hierarchy.

Every error a user can cause or fix carries an HTTP status and a message that says what to do.
Services and adapters raise these; one FastAPI handler (``services.http.errors``) turns them into
JSON responses, and the CLI prints the message and exits non-zero. ``HTTPException`` never appears
outside the API layer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from pipelines import errors as pipeline


class RadwatchError(Exception):
    """Base class: ``status_code`` is the HTTP status, ``message`` is safe to show a user."""

    status_code: int = 500
    code: str = "internal_error"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}


class BadRequestError(RadwatchError):
    """The request is malformed in a way the caller can fix."""

    status_code = 400
    code = "bad_request"


class ValidationFailedError(RadwatchError):
    """The request parsed, but a value is out of range or inconsistent."""

    status_code = 422
    code = "validation_failed"


class UnauthenticatedError(RadwatchError):
    status_code = 401
    code = "unauthenticated"


class ForbiddenError(RadwatchError):
    status_code = 403
    code = "forbidden"


class NotFoundError(RadwatchError):
    status_code = 404
    code = "not_found"


class ConflictError(RadwatchError):
    status_code = 409
    code = "conflict"


class UnavailableError(RadwatchError):
    """A dependency (database, Triton, MLflow) cannot be reached; the caller should retry."""

    status_code = 503
    code = "unavailable"

    def __init__(
        self, message: str, *, retry_after_s: int = 5, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message, details=details)
        self.retry_after_s = retry_after_s


# --- serving (Triton) ---------------------------------------------------------------------------


class ServingUnavailableError(UnavailableError):
    """Triton cannot be reached or is not ready."""

    code = "serving_unavailable"


class ModelNotLoadedError(UnavailableError):
    """Triton is up, but the requested model/version is not loaded."""

    code = "model_not_loaded"


class InferenceError(RadwatchError):
    """Triton answered with an error for a well-formed request."""

    status_code = 502
    code = "inference_failed"


# --- registry (MLflow) --------------------------------------------------------------------------


class RegistryUnavailableError(UnavailableError):
    code = "registry_unavailable"


class UnknownModelError(NotFoundError):
    code = "unknown_model"


# --- input data ---------------------------------------------------------------------------------


class InvalidDicomError(BadRequestError):
    """The upload is not a DICOM file radwatch can read; the message names the problem."""

    code = "invalid_dicom"


class InvalidImageError(BadRequestError):
    code = "invalid_image"


class PayloadTooLargeError(BadRequestError):
    status_code = 413
    code = "payload_too_large"


class UnsupportedMediaTypeError(BadRequestError):
    status_code = 415
    code = "unsupported_media_type"


# --- validation problems -----------------------------------------------------------------------

Loc = tuple[int | str, ...]


def problems_of(
    errors: Iterable[Mapping[str, Any]],
    *,
    prefix: str = "",
    default: str = "body",
    loc: Callable[[Loc], Loc] = lambda loc: loc,
) -> list[dict[str, str]]:
    """``{"field", "problem"}`` for each pydantic error, the field as a dotted path (``prefix``
    before it, ``default`` when the error is on the whole value). ``loc`` can rewrite a path
    first (e.g. drop a discriminator level the user never wrote)."""
    out = []
    for e in errors:
        path = ".".join(str(p) for p in loc(tuple(e.get("loc", ()))))
        out.append({"field": f"{prefix}{path}" if path else default, "problem": str(e["msg"])})
    return out


def invalid(
    what: str, problems: list[dict[str, str]], *, hint: str = "", keep: int = 20
) -> ValidationFailedError:
    """The one 422 for a value that failed validation: ``"{what}: field: problem; ...{hint}"``
    naming the first five problems, with up to ``keep`` of them in ``details.problems``."""
    text = "; ".join(f"{p['field']}: {p['problem']}" for p in problems[:5])
    return ValidationFailedError(f"{what}: {text}{hint}", details={"problems": problems[:keep]})


# --- errors of the pipelines -------------------------------------------------------------------

_FROM_PIPELINE: tuple[tuple[type[pipeline.PipelineError], type[RadwatchError]], ...] = (
    (pipeline.InvalidDicomError, InvalidDicomError),
    (pipeline.InvalidImageError, InvalidImageError),
    (pipeline.ExportConflictError, ConflictError),
    (pipeline.InvalidExportError, ValidationFailedError),
    (pipeline.PipelineError, ValidationFailedError),
)


def from_pipeline(exc: pipeline.PipelineError) -> RadwatchError:
    """The domain error (with its status) for a pipeline's input error; same message."""
    kind = next(ours for theirs, ours in _FROM_PIPELINE if isinstance(exc, theirs))
    return kind(str(exc))


@contextmanager
def pipeline_errors() -> Iterator[None]:
    """Turn the pipelines' input errors raised inside the block into domain errors."""
    try:
        yield
    except pipeline.PipelineError as exc:
        raise from_pipeline(exc) from exc
