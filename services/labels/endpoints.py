"""``POST /v1/labels``: ground truth that arrives days or weeks after the prediction."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool

from services.core.models import Role
from services.http.bodies import read_batch, refuse_if_nothing_stored
from services.http.deps import SessionDep, StateDep, require_roles
from services.http.errors import COMMON_RESPONSES, ErrorBody
from services.labels import service
from services.labels.schemas import LabelIngestResult
from services.metrics.registry import LABELS_INGESTED

router = APIRouter(tags=["labels"])


@router.post(
    "/v1/labels",
    response_model=LabelIngestResult,
    summary="Record ground-truth labels (up to 1,000), before or after their predictions",
    description=(
        'Body: `{"labels": [{"study_id", "finding", "label", "source", '
        '"reported_at"}]}`. Labels join predictions by the pseudonymised study id, whichever '
        "arrives first. Per-label semantics as for `POST /v1/events`: bad labels are listed in "
        "`rejected`, a label already stored (same study, finding, source and reported_at) in "
        "`duplicates`; a later `reported_at` for the same study and finding supersedes the "
        "earlier label without deleting it."
    ),
    responses={
        400: {"model": ErrorBody, "description": "Body is not JSON."},
        413: {"model": ErrorBody, "description": "Body too large."},
        415: {"model": ErrorBody, "description": "Not application/json."},
        422: {"model": ErrorBody, "description": "Bad envelope, or every label rejected."},
        **COMMON_RESPONSES,
    },
    dependencies=[Depends(require_roles(Role.MLOPS_ENGINEER))],
)
async def ingest_labels(
    request: Request, state: StateDep, session: SessionDep
) -> LabelIngestResult:
    items = await read_batch(request, state.settings.max_upload_mb, key="labels")
    result = await run_in_threadpool(
        service.ingest_labels, session, settings=state.settings, items=items
    )
    for outcome, n in (
        ("stored", result.stored),
        ("duplicate", len(result.duplicates)),
        ("rejected", len(result.rejected)),
    ):
        if n:
            LABELS_INGESTED.labels(outcome).inc(n)
    refuse_if_nothing_stored(
        received=result.received,
        stored=result.stored,
        duplicates=len(result.duplicates),
        rejected=result.rejected,
        noun="labels",
    )
    return result
