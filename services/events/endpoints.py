"""``POST /v1/predictions``: a DICOM upload (multipart) or an image array (JSON)."""

from __future__ import annotations

import json
from typing import Any

import numpy.typing as npt
from fastapi import APIRouter, BackgroundTasks, Depends, Query, Request
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from pipelines.dicom import pixel_options, read_dicom
from services.core.errors import (
    BadRequestError,
    UnsupportedMediaTypeError,
    invalid,
    pipeline_errors,
    problems_of,
)
from services.core.models import Role
from services.events import ingest, service
from services.events.schemas import (
    ArrayPredictionRequest,
    IngestResult,
    PredictionResponse,
    StudyMetadata,
)
from services.http.bodies import read_batch, refuse_if_nothing_stored, too_large
from services.http.deps import SessionDep, StateDep, require_roles
from services.http.errors import COMMON_RESPONSES, ErrorBody
from services.metrics.registry import (
    EVENTS_DUPLICATE,
    EVENTS_INGESTED,
    EVENTS_REJECTED,
    PREDICTIONS,
)
from services.serving import flows as serving_flows
from services.serving import routing, shadow
from services.serving.service import spec_of

router = APIRouter(tags=["predictions"])

_OPENAPI_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": ArrayPredictionRequest.model_json_schema()},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary", "description": "DICOM file"},
                        **{name: {"type": "string"} for name in StudyMetadata.model_fields},
                    },
                }
            },
        },
    }
}


@router.post(
    "/v1/predictions",
    response_model=PredictionResponse,
    summary="Run the model on one study and record the prediction",
    responses={
        400: {"model": ErrorBody, "description": "Unreadable DICOM, image or body."},
        404: {"model": ErrorBody, "description": "Unknown model."},
        413: {"model": ErrorBody, "description": "Body too large."},
        415: {"model": ErrorBody, "description": "Unsupported content type."},
        422: {"model": ErrorBody, "description": "Invalid metadata or image values."},
        **COMMON_RESPONSES,
    },
    openapi_extra=_OPENAPI_BODY,
    dependencies=[Depends(require_roles(Role.MLOPS_ENGINEER))],
)
async def create_prediction(
    request: Request,
    background: BackgroundTasks,
    state: StateDep,
    session: SessionDep,
    model: str | None = Query(None, description="Registered model name; default from settings."),
) -> PredictionResponse:
    limit = int(state.settings.max_upload_mb * 1024 * 1024)
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise too_large(limit, "send a smaller image")
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    dicom_bytes: bytes | None = None
    if content_type == "application/json":
        image, metadata = await _parse_json(request, limit)
    elif content_type == "multipart/form-data":
        image, metadata, dicom_bytes = await _parse_multipart(request, limit)
    else:
        raise _unsupported(content_type)

    model_name = model or state.settings.model_name
    study_key = metadata.study_id or metadata.event_id or ""
    chosen = await run_in_threadpool(routing.route, session, model_name, study_key)
    preprocessing = spec_of(chosen.answer).preprocessing
    if dicom_bytes is not None and not preprocessing.reads_pixels_by_default:
        # The model declares its own window / rescale / inversion: decode its pixels that way.
        with pipeline_errors():
            dicom = await run_in_threadpool(read_dicom, dicom_bytes, pixel_options(preprocessing))
        image = dicom.image
    response = await run_in_threadpool(
        service.predict,
        session,
        settings=state.settings,
        triton=state.triton,
        deployment=chosen.answer,
        image=image,
        metadata=metadata,
        probes=state.probe,
    )
    if (
        chosen.shadow is not None
        and not response.duplicate
        and shadow.admit(chosen.shadow.model_name, state.settings.shadow_max_inflight)
    ):
        # After the response is sent: the candidate's answer is logged, never returned, and
        # its failure cannot fail or slow the clinical request.
        background.add_task(
            serving_flows.mirror,
            state.sessions,
            state.triton,
            candidate=chosen.shadow,
            champion_version=chosen.champion.model_version,
            event_id=response.event_id,
            champion_scores=response.scores,
            image=image,
            probes=state.probe,
        )
    if response.duplicate:
        EVENTS_DUPLICATE.labels("gateway").inc()
    else:
        PREDICTIONS.labels(model=response.model.name, site=response.site).inc()
        EVENTS_INGESTED.labels(response.model.name, "gateway").inc()
    return response


async def _parse_json(request: Request, limit: int) -> tuple[npt.NDArray[Any], StudyMetadata]:
    body = await request.body()
    if len(body) > limit:
        raise too_large(limit, "send a smaller image")
    try:
        payload = ArrayPredictionRequest.model_validate_json(body)
    except ValidationError as exc:
        raise invalid(
            "Invalid JSON body",
            problems_of(exc.errors(include_url=False)),
            hint=". Expected {'image': [[...]], 'metadata': {...}}.",
        ) from None
    return service.array_image(payload.image), payload.metadata


async def _parse_multipart(
    request: Request, limit: int
) -> tuple[npt.NDArray[Any], StudyMetadata, bytes]:
    form = await request.form(max_files=1, max_fields=32, max_part_size=limit)
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise BadRequestError(
            "Multipart upload has no 'file' part; send the DICOM file as the form field 'file'."
        )
    data = await upload.read()
    given: dict[str, Any] = {}
    for key, value in form.multi_items():
        if key == "file":
            continue
        if key == "metadata" and isinstance(value, str):
            try:
                extra = json.loads(value)
            except json.JSONDecodeError:
                raise BadRequestError("Form field 'metadata' is not valid JSON.") from None
            if not isinstance(extra, dict):
                raise BadRequestError("Form field 'metadata' must be a JSON object.")
            given.update(extra)
        elif isinstance(value, str):
            given[key] = value
    with pipeline_errors():
        dicom = await run_in_threadpool(read_dicom, data)
    return dicom.image, service.merge_metadata(given, dicom.metadata), data


@router.post(
    "/v1/events",
    response_model=IngestResult,
    summary="Record a batch of predictions made elsewhere (up to 1,000 events)",
    description=(
        'Body: `{"events": [...]}`. Per-event semantics: each event is validated on its own; '
        "bad ones are listed in `rejected` with their index and reason and the rest are stored. "
        "An `event_id` already stored is listed in `duplicates` and nothing is written for it. "
        "A 200 means every stored event is committed to the database. When no event of the "
        "batch could be stored or was a duplicate, the answer is 422 with the same per-event "
        "list under `error.details.rejected`."
    ),
    responses={
        400: {"model": ErrorBody, "description": "Body is not JSON."},
        413: {"model": ErrorBody, "description": "Body too large."},
        415: {"model": ErrorBody, "description": "Not application/json."},
        422: {"model": ErrorBody, "description": "Bad envelope, or every event rejected."},
        **COMMON_RESPONSES,
    },
    dependencies=[Depends(require_roles(Role.MLOPS_ENGINEER))],
)
async def ingest_events(request: Request, state: StateDep, session: SessionDep) -> IngestResult:
    items = await read_batch(request, state.settings.max_upload_mb, key="events")
    done = await run_in_threadpool(
        ingest.ingest_events, session, settings=state.settings, items=items
    )
    result = done.result
    if result.duplicates:
        EVENTS_DUPLICATE.labels("batch").inc(len(result.duplicates))
    if result.rejected:
        EVENTS_REJECTED.labels("batch", "invalid_event").inc(len(result.rejected))
    refuse_if_nothing_stored(
        received=result.received,
        stored=result.stored,
        duplicates=len(result.duplicates),
        rejected=result.rejected,
        noun="events",
    )
    for (model_name, site), n in done.stored_per_site.items():
        PREDICTIONS.labels(model=model_name, site=site).inc(n)
        EVENTS_INGESTED.labels(model_name, "batch").inc(n)
    return result


def _unsupported(content_type: str) -> UnsupportedMediaTypeError:
    return UnsupportedMediaTypeError(
        f"Unsupported content type '{content_type or 'none'}': send multipart/form-data with a "
        "DICOM 'file' part, or application/json with 'image' and 'metadata'."
    )
