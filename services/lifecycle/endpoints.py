"""Sign-off (``/v1/approvals``), change protocols, promotion, rollback and routing.

Who may do what (the authorization matrix test checks every route against every role):

- read approvals, protocols, promotions, routing: every role;
- decide an approval: ``clinical_safety_officer`` only, re-authenticated, not the person who
  triggered or trained the candidate;
- withdraw a request, start or advance a promotion: ``mlops_engineer``;
- roll back: ``mlops_engineer`` or ``clinical_safety_officer`` (pulling a model is a safety act);
- write a new protocol version: ``mlops_engineer`` or ``clinical_safety_officer``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query

from services.api.deps import ANY_ROLE, SessionDep, StateDep, require_roles
from services.api.errors import COMMON_RESPONSES, ErrorBody
from services.auth import users
from services.auth.service import Principal
from services.core.errors import NotFoundError
from services.core.models import ApprovalDecision, ApprovalRequest, Role
from services.lifecycle import approvals, promotion, protocols
from services.lifecycle.schemas import (
    MAX_ID,
    AdvanceIn,
    ApprovalOut,
    DecisionIn,
    DecisionOut,
    PromotionIn,
    PromotionOut,
    ProtocolOut,
    ReasonIn,
    ReauthIn,
    ReauthOut,
    RoutingOut,
    ShadowSummary,
)
from services.serving import routing as routing_service
from services.serving import shadow
from services.serving.service import champion

router = APIRouter(tags=["lifecycle"])

RequestId = Annotated[int, Path(ge=1, le=MAX_ID, description="The approval request's id.")]
ModelName = Annotated[str, Path(min_length=1, max_length=128)]
Anyone = Annotated[Principal, Depends(require_roles(*ANY_ROLE))]
Officer = Annotated[Principal, Depends(require_roles(Role.CLINICAL_SAFETY_OFFICER))]
Engineer = Annotated[Principal, Depends(require_roles(Role.MLOPS_ENGINEER))]
Steward = Annotated[
    Principal, Depends(require_roles(Role.MLOPS_ENGINEER, Role.CLINICAL_SAFETY_OFFICER))
]

Responses = dict[int | str, dict[str, Any]]
_ERR: Responses = {
    404: {"model": ErrorBody, "description": "Unknown request, model or version."},
    409: {"model": ErrorBody, "description": "The current state does not allow this."},
    422: {"model": ErrorBody, "description": "Bad body."},
    **COMMON_RESPONSES,
}


def _out(row: ApprovalRequest, decisions: Sequence[ApprovalDecision]) -> ApprovalOut:
    out = ApprovalOut.model_validate(row)
    out.decisions = [DecisionOut.model_validate(d) for d in decisions]
    return out


def _approval(session: SessionDep, request_id: int) -> ApprovalOut:
    row = approvals.get(session, request_id)
    return _out(row, approvals.decisions(session, row.id))


@router.get(
    "/v1/approvals",
    response_model=list[ApprovalOut],
    summary="Approval requests, newest first (filter by state and model)",
    responses=COMMON_RESPONSES,
)
def list_approvals(
    _: Anyone,
    session: SessionDep,
    state: Annotated[
        str | None, Query(pattern="^(pending|approved|rejected|withdrawn|expired)$")
    ] = None,
    model: Annotated[str | None, Query(max_length=128)] = None,
) -> list[ApprovalOut]:
    rows = approvals.list_requests(session, state=state, model_name=model)
    decided = approvals.decisions_by_request(session, [r.id for r in rows])
    return [_out(r, decided[r.id]) for r in rows]


@router.get(
    "/v1/approvals/{request_id}",
    response_model=ApprovalOut,
    summary="One approval request with its signed decisions",
    responses=_ERR,
)
def get_approval(request_id: RequestId, _: Anyone, session: SessionDep) -> ApprovalOut:
    return _approval(session, request_id)


@router.post(
    "/v1/approvals/{request_id}/decision",
    response_model=ApprovalOut,
    summary="Approve or reject a candidate (safety officer; re-authenticates; reason required)",
    description=(
        "Send the signer's `password`, or a `reauth_token` from `POST /v1/auth/reauth`. "
        "An API key alone never signs. The four-eyes rule refuses anyone who triggered or "
        "trained the candidate (403). A candidate that failed its criteria needs "
        "`override: true` and two different approvers."
    ),
    responses=_ERR,
)
def decide(
    request_id: RequestId,
    body: DecisionIn,
    principal: Officer,
    session: SessionDep,
    state: StateDep,
) -> ApprovalOut:
    approvals.decide(
        session,
        state.settings,
        request_id=request_id,
        signer=approvals.Signer(principal.name, principal.role),
        decision=body.decision,
        reason=body.reason,
        password=body.password,
        reauth_token=body.reauth_token,
        override=body.override,
    )
    return _approval(session, request_id)


@router.post(
    "/v1/approvals/{request_id}/withdraw",
    response_model=ApprovalOut,
    summary="Withdraw a pending request (MLOps engineer), with a reason",
    responses=_ERR,
)
def withdraw(
    request_id: RequestId, body: ReasonIn, principal: Engineer, session: SessionDep
) -> ApprovalOut:
    approvals.withdraw(session, request_id=request_id, actor=principal.name, reason=body.reason)
    return _approval(session, request_id)


@router.post(
    "/v1/auth/reauth",
    response_model=ReauthOut,
    summary="Prove it is you again (password) and get a short-lived token for one decision",
    responses={401: {"model": ErrorBody, "description": "Wrong password or no user account."}},
)
def reauth(body: ReauthIn, principal: Anyone, session: SessionDep, state: StateDep) -> ReauthOut:
    users.authenticate_password(session, principal.name, body.password)
    token = users.issue_reauth_token(state.settings.session_secret, principal.name)
    return ReauthOut(token=token, expires_in_s=state.settings.reauth_max_age_s)


@router.get(
    "/v1/models/{model}/protocol",
    response_model=ProtocolOut,
    summary="The model's current change protocol",
    responses=_ERR,
)
def get_protocol(model: ModelName, _: Anyone, session: SessionDep) -> ProtocolOut:
    row = protocols.latest(session, model)
    if row is None:
        raise NotFoundError(
            f"Model '{model}' has no change protocol yet; PUT one, or the defaults are stored "
            "as version 1 with its first candidate."
        )
    return ProtocolOut.model_validate(row)


@router.get(
    "/v1/models/{model}/protocol/history",
    response_model=list[ProtocolOut],
    summary="Every version of the model's change protocol",
    responses=COMMON_RESPONSES,
)
def protocol_history(model: ModelName, _: Anyone, session: SessionDep) -> list[ProtocolOut]:
    return [ProtocolOut.model_validate(r) for r in protocols.history(session, model)]


@router.put(
    "/v1/models/{model}/protocol",
    response_model=ProtocolOut,
    summary="Store a new version of the model's change protocol (never edits an old one)",
    responses=_ERR,
)
def put_protocol(
    model: ModelName,
    body: dict[str, Any],
    principal: Steward,
    session: SessionDep,
    state: StateDep,
) -> ProtocolOut:
    champion(session, model)  # 404 for an unknown model
    row = protocols.create_version(session, model, protocols.parse(body), actor=principal.name)
    # Stored with the model too; if MLflow refuses, the request fails and nothing is committed.
    state.registry.set_model_tag(
        model, f"radwatch.change_protocol.v{row.version}", json.dumps(row.document, sort_keys=True)
    )
    return ProtocolOut.model_validate(row)


def _ctx(state: StateDep) -> promotion.Lifecycle:
    return promotion.Lifecycle(
        sessions=state.sessions,
        registry=state.registry,
        triton=state.triton,
        repository_dir=state.settings.triton_repository,
    )


def _promotion(state: StateDep, promotion_id: int) -> PromotionOut:
    from services.core.db import session_scope
    from services.core.models import Promotion

    with session_scope(state.sessions) as session:
        row = session.get(Promotion, promotion_id)
        assert row is not None
        return PromotionOut.model_validate(row)


@router.post(
    "/v1/models/{model}/promotion",
    response_model=PromotionOut,
    summary="Start promoting an approved candidate: Triton loads it, then shadow traffic",
    responses=_ERR,
)
def start_promotion(
    model: ModelName, body: PromotionIn, principal: Engineer, state: StateDep
) -> PromotionOut:
    info = state.registry.get_version(model, body.version)
    pid = promotion.start(
        _ctx(state),
        model_name=model,
        version=body.version,
        actor=principal.name,
        reason=body.reason,
        run_id=info.run_id,
    )
    return _promotion(state, pid)


@router.post(
    "/v1/models/{model}/promotion/advance",
    response_model=PromotionOut,
    summary="Move the promotion on: shadow -> canary -> champion, when the plan allows",
    responses=_ERR,
)
def advance_promotion(
    model: ModelName, body: AdvanceIn, principal: Engineer, state: StateDep
) -> PromotionOut:
    pid = promotion.advance(_ctx(state), model_name=model, actor=principal.name, force=body.force)
    return _promotion(state, pid)


@router.post(
    "/v1/models/{model}/rollback",
    response_model=PromotionOut,
    summary="Restore the previous champion, or abort a promotion in shadow/canary",
    responses=_ERR,
)
def rollback(model: ModelName, body: ReasonIn, principal: Steward, state: StateDep) -> PromotionOut:
    pid = promotion.rollback(
        _ctx(state), model_name=model, actor=principal.name, reason=body.reason
    )
    return _promotion(state, pid)


@router.get(
    "/v1/promotions",
    response_model=list[PromotionOut],
    summary="Promotions and rollbacks, newest first",
    responses=COMMON_RESPONSES,
)
def list_promotions(
    _: Anyone, session: SessionDep, model: Annotated[str | None, Query(max_length=128)] = None
) -> list[PromotionOut]:
    return [
        PromotionOut.model_validate(p) for p in promotion.list_promotions(session, model_name=model)
    ]


@router.get(
    "/v1/models/{model}/routing",
    response_model=RoutingOut,
    summary="How the gateway routes the model's traffic now",
    responses=_ERR,
)
def get_routing(model: ModelName, _: Anyone, session: SessionDep) -> RoutingOut:
    row = routing_service.get_routing(session, model)
    if row is None:
        champ = champion(session, model)
        return RoutingOut(
            model_name=model,
            champion_version=champ.model_version,
            previous_champion_version=None,
            candidate_version=None,
            mode="champion",
            canary_share=0.0,
            generation=0,
            updated_at=champ.created_at,
        )
    return RoutingOut.model_validate(row)


@router.get(
    "/v1/models/{model}/shadow",
    response_model=ShadowSummary,
    summary="The shadow candidate's agreement with the champion on mirrored studies",
    responses=_ERR,
)
def shadow_summary(
    model: ModelName,
    _: Anyone,
    session: SessionDep,
    version: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
) -> ShadowSummary:
    champ = champion(session, model)
    row = routing_service.get_routing(session, model)
    target = version or (row.candidate_version if row else None)
    if target is None:
        raise NotFoundError(f"{model} has no candidate in shadow; pass ?version=N.")
    return ShadowSummary.model_validate(
        shadow.compare(session, model, target, threshold=champ.operating_threshold)
    )
