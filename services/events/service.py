"""Prediction: validate the input, run the champion on Triton, record the event.

The event is added to the caller's session; the edge commits it. A repeated ``event_id`` returns
the stored prediction instead of a second row, so a client may retry safely.
"""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import ValidationError
from sqlalchemy.orm import Session

from pipelines.dicom import site_slug
from pipelines.preprocess import image_stats, prepare
from services.core.errors import (
    ConflictError,
    InferenceError,
    InvalidImageError,
    ValidationFailedError,
    invalid,
    pipeline_errors,
    problems_of,
)
from services.core.models import Deployment, PredictionEvent
from services.core.ports import InferenceServer
from services.core.settings import Settings
from services.events import repository
from services.events.ingest import event_row
from services.events.schemas import ModelRef, PredictionResponse, StudyMetadata
from services.serving.service import ProbeLookup, infer_deployment, spec_of

#: Image sides accepted before resizing, in pixels. The upper bound guards memory; below the
#: lower bound a radiograph carries too little to classify and is almost surely a client bug.
MIN_SIDE = 32
MAX_SIDE = 8192


def merge_metadata(given: dict[str, Any], from_dicom: dict[str, Any]) -> StudyMetadata:
    """Fields the client sent win over DICOM tags; the result is validated as one object."""
    allowed = set(StudyMetadata.model_fields)
    merged = {k: v for k, v in from_dicom.items() if k in allowed and v not in (None, "")}
    if not given.get("site") and from_dicom.get("institution_name"):
        merged["site"] = site_slug(str(from_dicom["institution_name"]))
    merged.update({k: v for k, v in given.items() if v not in (None, "")})
    return parse_metadata(merged)


def parse_metadata(raw: dict[str, Any]) -> StudyMetadata:
    try:
        return StudyMetadata.model_validate(raw)
    except ValidationError as exc:
        problems = problems_of(
            exc.errors(include_url=False), prefix="metadata.", default="metadata"
        )
        raise invalid("Invalid metadata", problems, keep=len(problems)) from None


def array_image(rows: list[list[float]]) -> npt.NDArray[Any]:
    if not rows or not rows[0]:
        raise InvalidImageError("image is empty; send a 2-D array of grey values in [0, 1].")
    width = len(rows[0])
    if any(len(r) != width for r in rows):
        raise InvalidImageError(
            "image rows have different lengths; send a rectangular 2-D array "
            "(rows of equal length)."
        )
    if not (MIN_SIDE <= len(rows) <= MAX_SIDE and MIN_SIDE <= width <= MAX_SIDE):
        raise InvalidImageError(
            f"image is {len(rows)}x{width} pixels; each side must be between {MIN_SIDE} and "
            f"{MAX_SIDE}."
        )
    return np.asarray(rows, dtype=np.float32)


def predict(
    session: Session,
    *,
    settings: Settings,
    triton: InferenceServer,
    deployment: Deployment,
    image: npt.NDArray[Any],
    metadata: StudyMetadata,
    probes: ProbeLookup | None = None,
) -> PredictionResponse:
    """Score ``image`` with ``deployment`` and add its event to the session. A probe deployment
    needs ``probes`` (the runtime's cache of probe heads): Triton runs its encoder, the heads
    run here, and the event stores the encoder's embedding with the probe's scores."""
    if metadata.site is None:
        raise ValidationFailedError(
            "metadata.site is required (or a DICOM InstitutionName to derive it from)."
        )
    if metadata.study_id is None:
        raise ValidationFailedError(
            "metadata.study_id is required (or a DICOM StudyInstanceUID/AccessionNumber)."
        )
    if metadata.event_id is not None:
        existing = repository.by_event_id(session, metadata.event_id)
        if existing is not None:
            return _response(existing, deployment.operating_threshold, duplicate=True)

    spec = spec_of(deployment)
    with pipeline_errors():
        batch = prepare(spec, [image])
        stats = image_stats(image)
    output = infer_deployment(triton, deployment, batch, probes=probes)
    probs = output.probs[0]
    embedding = output.embeddings[0]
    if not (np.all(np.isfinite(probs)) and np.all(np.isfinite(embedding))):
        raise InferenceError(
            "The model returned non-finite scores for this image; nothing was stored."
        )

    row = event_row(
        settings=settings,
        event_id=metadata.event_id or uuid.uuid4().hex,
        deployment=deployment,
        metadata=metadata,
        scores=output.scores(0),
        embedding=embedding,
        image_stats=stats,
    )
    # The same write path as POST /v1/events: a concurrent retry of this event_id that committed
    # first makes this one a duplicate instead of an integrity error.
    if not repository.insert_events(session, [row]):
        existing = repository.by_event_id(session, row["event_id"])
        if existing is None:
            raise ConflictError(f"event_id '{row['event_id']}' could not be stored; retry.")
        return _response(existing, deployment.operating_threshold, duplicate=True)
    return PredictionResponse(
        event_id=row["event_id"],
        study_pid=row["study_pid"],
        model=ModelRef(name=deployment.model_name, version=deployment.model_version),
        scores=row["scores"],
        positive={f: p >= deployment.operating_threshold for f, p in row["scores"].items()},
        operating_threshold=deployment.operating_threshold,
        site=row["site"],
        duplicate=False,
    )


def _response(event: PredictionEvent, threshold: float, *, duplicate: bool) -> PredictionResponse:
    return PredictionResponse(
        event_id=event.event_id,
        study_pid=event.study_pid,
        model=ModelRef(name=event.model_name, version=event.model_version),
        scores=event.scores,
        positive={f: float(p) >= threshold for f, p in event.scores.items()},
        operating_threshold=threshold,
        site=event.site,
        duplicate=duplicate,
    )
