"""Retraining runs (``/v1/models/{name}/retraining``, ``/v1/retraining``) and evaluation
dossiers (``/v1/dossiers``).

Who may do what: starting a run is an MLOps engineer's act (it spends training capacity and
produces a candidate that a safety officer must then review); anyone may watch runs; dossiers
are read by the people who judge or audit candidates (safety officers, MLOps engineers,
auditors).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import HTMLResponse
from sqlalchemy.orm import Session

from services.auth.service import Principal
from services.core.models import RetrainingRun, Role
from services.core.runtime import Runtime
from services.http.deps import Anyone, Engineer, ModelName, SessionDep, StateDep, require_roles
from services.http.errors import COMMON_RESPONSES, ErrorBody, Responses
from services.retraining import dossiers, evaluations
from services.retraining import service as retraining
from services.retraining.schemas import (
    MAX_ID,
    CandidateEvaluationIn,
    DossierOut,
    RetrainingRequestIn,
    RetrainingRunOut,
)

router = APIRouter(tags=["retraining"])

RunId = Annotated[int, Path(ge=1, le=MAX_ID, description="The retraining run's id.")]
DossierId = Annotated[int, Path(ge=1, le=MAX_ID, description="The dossier's id.")]
Reviewer = Annotated[
    Principal,
    Depends(require_roles(Role.CLINICAL_SAFETY_OFFICER, Role.MLOPS_ENGINEER, Role.AUDITOR)),
]

_START: Responses = {
    404: {"model": ErrorBody, "description": "No deployed champion of this model."},
    409: {"model": ErrorBody, "description": "A run of this model is already queued or running."},
    422: {"model": ErrorBody, "description": "Bad body, or too few labelled events."},
    **COMMON_RESPONSES,
}
_RUN: Responses = {404: {"model": ErrorBody, "description": "No such run."}, **COMMON_RESPONSES}
_DOSSIER: Responses = {
    404: {"model": ErrorBody, "description": "No such dossier."},
    **COMMON_RESPONSES,
}


def _queued(session: Session, state: Runtime, run: RetrainingRun) -> RetrainingRunOut:
    """The queued run, sent to the training queue once the request's transaction commits."""
    retraining.enqueue_after_commit(
        session, enqueuer=state.enqueuer, queue=state.settings.training_queue, run_ids=[run.id]
    )
    return _out(session, run)


def _out(session: Session, run: RetrainingRun) -> RetrainingRunOut:
    out = RetrainingRunOut.model_validate(run)
    dossier = retraining.dossier_of(session, run.id)
    out.dossier_id = dossier.id if dossier is not None else None
    return out


@router.post(
    "/v1/models/{name}/retraining",
    response_model=RetrainingRunOut,
    status_code=202,
    summary="Queue a retraining run of the model's champion (MLOps engineer)",
    description=(
        "202 with the queued run; a `training` worker picks it up. Watch it with "
        "`GET /v1/retraining/{id}`. 409 while another run of the model is queued or running; "
        "422 when the model has fewer labelled events than its change protocol's "
        "`retraining.min_labelled_events`."
    ),
    responses=_START,
)
def start_run(
    name: ModelName,
    body: RetrainingRequestIn,
    principal: Engineer,
    session: SessionDep,
    state: StateDep,
) -> RetrainingRunOut:
    run = retraining.request_run(
        session,
        model_name=name,
        trigger="manual",
        requested_by=principal.name,
        reason=body.reason,
        options=retraining.RunOptions(epochs=body.epochs, seed=body.seed),
    )
    return _queued(session, state, run)


_EVALUATE: Responses = {
    404: {
        "model": ErrorBody,
        "description": "No deployed champion, no such version, or no such evaluation set.",
    },
    409: {
        "model": ErrorBody,
        "description": "The version is the champion, or a run of this model is in flight.",
    },
    **COMMON_RESPONSES,
}


@router.post(
    "/v1/models/{name}/candidates",
    response_model=RetrainingRunOut,
    status_code=202,
    summary="Queue the judgement of a registered candidate on an evaluation set (MLOps engineer)",
    description=(
        "For candidates radwatch did not train (an imported version; retraining `none`). 202 "
        "with a queued run whose `lineage.kind` is `candidate-evaluation`: a `training` worker "
        "scores the champion and the candidate through Triton on the evaluation set (its "
        "version pinned now), writes the dossier and opens the approval request. Watch it with "
        "`GET /v1/retraining/{id}`; `dossier_id` is set when it succeeds. The CLI's "
        "`radwatch candidates evaluate` does the same in-process."
    ),
    responses=_EVALUATE,
)
def evaluate_candidate(
    name: ModelName,
    body: CandidateEvaluationIn,
    principal: Engineer,
    session: SessionDep,
    state: StateDep,
) -> RetrainingRunOut:
    run = evaluations.request(
        session,
        state.registry,
        model_name=name,
        candidate_version=body.version,
        evaluation_set=body.evaluation_set,
        evaluation_set_version=body.evaluation_set_version,
        requested_by=principal.name,
        reason=body.reason,
    )
    return _queued(session, state, run)


@router.get(
    "/v1/retraining",
    response_model=list[RetrainingRunOut],
    summary="Retraining runs, newest first (filter by model and state)",
    responses=COMMON_RESPONSES,
)
def list_runs(
    _: Anyone,
    session: SessionDep,
    model: Annotated[str | None, Query(max_length=128)] = None,
    state: Annotated[str | None, Query(pattern="^(queued|running|succeeded|failed)$")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[RetrainingRunOut]:
    runs = retraining.list_runs(session, model_name=model, state=state, limit=limit)
    return [_out(session, r) for r in runs]


@router.get(
    "/v1/retraining/{run_id}",
    response_model=RetrainingRunOut,
    summary="One retraining run with its progress, lineage and dossier id",
    responses=_RUN,
)
def get_run(run_id: RunId, _: Anyone, session: SessionDep) -> RetrainingRunOut:
    return _out(session, retraining.get(session, run_id))


@router.get(
    "/v1/dossiers/{dossier_id}",
    response_model=DossierOut,
    summary="An evaluation dossier as JSON (layout: docs/retraining.md)",
    responses=_DOSSIER,
)
def get_dossier(dossier_id: DossierId, _: Reviewer, session: SessionDep) -> DossierOut:
    return DossierOut.model_validate(dossiers.get(session, dossier_id))


@router.get(
    "/v1/dossiers/{dossier_id}/html",
    response_class=HTMLResponse,
    response_model=None,
    summary="An evaluation dossier as a self-contained HTML page (plots inline)",
    responses={200: {"content": {"text/html": {}}}, **_DOSSIER},
)
def get_dossier_html(dossier_id: DossierId, _: Reviewer, session: SessionDep) -> HTMLResponse:
    return HTMLResponse(dossiers.get(session, dossier_id).html)
