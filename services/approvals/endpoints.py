"""Sign-off (``/v1/approvals``) and re-authentication (``/v1/auth/reauth``).

Who may do what (the authorization matrix test checks every route against every role):

- read approvals: every role;
- decide an approval: ``clinical_safety_officer`` only, re-authenticated, not the person who
  triggered or trained the candidate (the rules are :mod:`services.approvals.rules`);
- withdraw a request: ``mlops_engineer``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from fastapi import APIRouter, Path, Query

from services.approvals import rules
from services.approvals import service as approvals
from services.approvals.schemas import (
    MAX_ID,
    ApprovalOut,
    DecisionIn,
    DecisionOut,
    ReasonIn,
    ReauthIn,
    ReauthOut,
)
from services.auth import users
from services.core.models import ApprovalDecision, ApprovalRequest
from services.http.deps import Anyone, Engineer, Officer, SessionDep, StateDep
from services.http.errors import COMMON_RESPONSES, STATE_RESPONSES, ErrorBody

router = APIRouter(tags=["lifecycle"])

RequestId = Annotated[int, Path(ge=1, le=MAX_ID, description="The approval request's id.")]
_ERR = STATE_RESPONSES


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
        signer=rules.Signer(principal.name, principal.role),
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
