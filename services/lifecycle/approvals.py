"""Sign-off: approval requests and signed decisions.

Rules (each enforced here, whatever the caller):

- Only the protocol's approver role (``clinical_safety_officer``) decides.
- Nobody who triggered or trained the candidate may approve it (four eyes); their names are
  stored with the request (``conflicted``).
- A decision re-authenticates the person (password or a fresh re-auth token) and records a
  mandatory reason; the decision row carries a signature hash bound to what was signed.
- One rejection rejects the request, and a candidate with a rejected request can never be
  promoted nor asked for again.
- A candidate that failed its acceptance criteria can only be approved as an override, which
  needs two different approvers (or more, if the protocol asks for more) and is recorded as such.
- pending -> approved | rejected | withdrawn | expired; nothing leaves those end states.

Services never commit; the request dependency or the task does.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.audit import actions
from services.audit.service import record
from services.auth import users
from services.core.errors import (
    ConflictError,
    ForbiddenError,
    NotFoundError,
    ValidationFailedError,
)
from services.core.models import ApprovalDecision, ApprovalRequest, Role
from services.core.settings import Settings
from services.lifecycle.protocol import ChangeProtocolDocument

PENDING, APPROVED, REJECTED, WITHDRAWN, EXPIRED = (
    "pending",
    "approved",
    "rejected",
    "withdrawn",
    "expired",
)
MIN_REASON = 10

Decision = Literal["approve", "reject"]


def _utc(at: datetime) -> datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def _entity(request: ApprovalRequest) -> str:
    return str(request.id)


def get(session: Session, request_id: int, *, for_update: bool = False) -> ApprovalRequest:
    stmt = select(ApprovalRequest).where(ApprovalRequest.id == request_id)
    if for_update:
        stmt = stmt.with_for_update()
    row = session.scalars(stmt).first()
    if row is None:
        raise NotFoundError(f"No approval request {request_id}; list them with GET /v1/approvals.")
    return row


def list_requests(
    session: Session, *, state: str | None = None, model_name: str | None = None, limit: int = 200
) -> Sequence[ApprovalRequest]:
    stmt = select(ApprovalRequest).order_by(ApprovalRequest.id.desc()).limit(limit)
    if state:
        stmt = stmt.where(ApprovalRequest.state == state)
    if model_name:
        stmt = stmt.where(ApprovalRequest.model_name == model_name)
    return session.scalars(stmt).all()


def decisions(session: Session, request_id: int) -> Sequence[ApprovalDecision]:
    stmt = (
        select(ApprovalDecision)
        .where(ApprovalDecision.request_id == request_id)
        .order_by(ApprovalDecision.id)
    )
    return session.scalars(stmt).all()


def decisions_by_request(
    session: Session, request_ids: Sequence[int]
) -> dict[int, list[ApprovalDecision]]:
    """The decisions of many requests in one query, oldest first per request."""
    out: dict[int, list[ApprovalDecision]] = {i: [] for i in request_ids}
    stmt = (
        select(ApprovalDecision)
        .where(ApprovalDecision.request_id.in_(list(request_ids)))
        .order_by(ApprovalDecision.id)
    )
    for d in session.scalars(stmt):
        out[d.request_id].append(d)
    return out


def was_rejected(session: Session, model_name: str, version: int) -> bool:
    stmt = select(ApprovalRequest.id).where(
        ApprovalRequest.model_name == model_name,
        ApprovalRequest.candidate_version == version,
        ApprovalRequest.state == REJECTED,
    )
    return session.scalars(stmt).first() is not None


def open_request(
    session: Session,
    *,
    model_name: str,
    candidate_version: int,
    dossier_id: int,
    criteria_passed: bool,
    protocol: ChangeProtocolDocument,
    requested_by: str,
    conflicted: Sequence[str],
    now: datetime | None = None,
) -> ApprovalRequest:
    """Ask for sign-off of a candidate whose dossier is ``dossier_id``."""
    if was_rejected(session, model_name, candidate_version):
        raise ConflictError(
            f"{model_name} version {candidate_version} was rejected; a rejected candidate can "
            "never be promoted. Train a new candidate."
        )
    pending = session.scalars(
        select(ApprovalRequest).where(
            ApprovalRequest.model_name == model_name,
            ApprovalRequest.candidate_version == candidate_version,
            ApprovalRequest.state == PENDING,
        )
    ).first()
    if pending is not None:
        raise ConflictError(
            f"{model_name} version {candidate_version} already has pending request {pending.id}."
        )
    at = now or datetime.now(UTC)
    names = sorted({n for n in conflicted if n})
    request = ApprovalRequest(
        model_name=model_name,
        candidate_version=candidate_version,
        dossier_id=dossier_id,
        state=PENDING,
        approver_role=protocol.approver_role,
        required_approvals=protocol.approvals_required,
        criteria_passed=criteria_passed,
        conflicted={"names": names},
        requested_by=requested_by,
        override=False,
        created_at=at,
        expires_at=at + timedelta(hours=protocol.approval_expires_hours),
    )
    session.add(request)
    session.flush()
    record(
        session,
        actor=requested_by,
        action=actions.APPROVAL_REQUESTED,
        entity_type=actions.APPROVAL_REQUEST,
        entity_id=_entity(request),
        payload={
            "model": model_name,
            "candidate_version": candidate_version,
            "dossier_id": dossier_id,
            "criteria_passed": criteria_passed,
            "required_approvals": request.required_approvals,
            "conflicted": names,
        },
    )
    return request


def approvals_needed(request: ApprovalRequest) -> int:
    """An override (approving a candidate that failed its criteria) always needs two people."""
    return max(2, request.required_approvals) if request.override else request.required_approvals


def signature(
    request: ApprovalRequest,
    *,
    approver: str,
    decision: str,
    reason: str,
    override: bool,
    signed_at: datetime,
) -> str:
    """SHA-256 over what the signer attested: which candidate, which evidence, what, why, who,
    when. Stored with the decision so the signature cannot be moved to another record."""
    content = {
        "request_id": request.id,
        "model": request.model_name,
        "candidate_version": request.candidate_version,
        "dossier_id": request.dossier_id,
        "decision": decision,
        "reason": reason,
        "override": override,
        "approver": approver,
        "signed_at": _utc(signed_at).isoformat(),
        "meaning": f"I {decision} this candidate for clinical use under its change protocol.",
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class Signer:
    """Who is deciding: a person (their name is the API key's or the web session's name)."""

    name: str
    role: Role


def decide(
    session: Session,
    settings: Settings,
    *,
    request_id: int,
    signer: Signer,
    decision: Decision,
    reason: str,
    password: str | None = None,
    reauth_token: str | None = None,
    override: bool = False,
    now: datetime | None = None,
) -> ApprovalRequest:
    request = get(session, request_id, for_update=True)
    if signer.role.value != request.approver_role:
        raise ForbiddenError(
            f"Only a {request.approver_role} may decide approval requests; you are "
            f"{signer.role.value}."
        )
    if signer.name in (request.conflicted or {}).get("names", []):
        raise ForbiddenError(
            f"Four-eyes rule: '{signer.name}' triggered or trained {request.model_name} version "
            f"{request.candidate_version} and may not decide on it; ask another safety officer."
        )
    method = users.reauthenticate(
        session,
        secret=settings.session_secret,
        max_age_s=settings.reauth_max_age_s,
        name=signer.name,
        password=password,
        token=reauth_token,
    )
    text = (reason or "").strip()
    if len(text) < MIN_REASON:
        raise ValidationFailedError(
            f"A decision needs a reason of at least {MIN_REASON} characters; it is part of the "
            "signed record."
        )
    at = now or datetime.now(UTC)
    if request.state != PENDING:
        raise ConflictError(f"Approval request {request.id} is {request.state}, not pending.")
    if _utc(request.expires_at) <= at:
        raise ConflictError(
            f"Approval request {request.id} expired at {_utc(request.expires_at).isoformat()}; "
            "it can no longer be decided."
        )
    if any(d.approver == signer.name for d in decisions(session, request.id)):
        raise ConflictError(f"'{signer.name}' has already signed request {request.id}.")
    if decision == "approve" and not request.criteria_passed and not override:
        raise ConflictError(
            "This candidate failed its acceptance criteria. Approving it is an override: send "
            "override=true; an override needs two different approvers and is recorded as such."
        )
    if override and decision == "approve":
        if request.criteria_passed:
            raise ValidationFailedError(
                "override=true is only for candidates that failed their criteria; this one passed."
            )
        request.override = True

    session.add(
        ApprovalDecision(
            request_id=request.id,
            approver=signer.name,
            decision=decision,
            reason=text,
            override=bool(override and decision == "approve"),
            reauth=method,
            signature=signature(
                request,
                approver=signer.name,
                decision=decision,
                reason=text,
                override=bool(override and decision == "approve"),
                signed_at=at,
            ),
            signed_at=at,
        )
    )
    session.flush()
    payload = {
        "model": request.model_name,
        "candidate_version": request.candidate_version,
        "decision": decision,
        "override": bool(override),
        "reauth": method,
    }
    record(
        session,
        actor=signer.name,
        action=actions.APPROVAL_SIGNED,
        entity_type=actions.APPROVAL_REQUEST,
        entity_id=_entity(request),
        reason=text,
        payload=payload,
    )
    if decision == "reject":
        _finish(session, request, REJECTED, actions.APPROVAL_REJECTED, signer.name, text, at)
    else:
        approved = sum(1 for d in decisions(session, request.id) if d.decision == "approve")
        if approved >= approvals_needed(request):
            _finish(session, request, APPROVED, actions.APPROVAL_APPROVED, signer.name, text, at)
    return request


def _finish(
    session: Session,
    request: ApprovalRequest,
    state: str,
    action: str,
    actor: str,
    reason: str,
    at: datetime,
) -> None:
    request.state = state
    request.decided_at = at
    session.flush()
    record(
        session,
        actor=actor,
        action=action,
        entity_type=actions.APPROVAL_REQUEST,
        entity_id=_entity(request),
        reason=reason,
        payload={
            "model": request.model_name,
            "candidate_version": request.candidate_version,
            "override": request.override,
            "approvers": [d.approver for d in decisions(session, request.id)],
        },
    )


def withdraw(
    session: Session, *, request_id: int, actor: str, reason: str, now: datetime | None = None
) -> ApprovalRequest:
    request = get(session, request_id, for_update=True)
    if request.state != PENDING:
        raise ConflictError(f"Approval request {request.id} is {request.state}, not pending.")
    text = (reason or "").strip()
    if len(text) < MIN_REASON:
        raise ValidationFailedError(
            f"Withdrawing needs a reason of at least {MIN_REASON} characters."
        )
    _finish(
        session,
        request,
        WITHDRAWN,
        actions.APPROVAL_WITHDRAWN,
        actor,
        text,
        now or datetime.now(UTC),
    )
    return request


def expire_due(session: Session, *, now: datetime | None = None) -> int:
    """Mark pending requests past their deadline as expired (beat task and page loads)."""
    at = now or datetime.now(UTC)
    stmt = (
        select(ApprovalRequest)
        .where(ApprovalRequest.state == PENDING, ApprovalRequest.expires_at <= at)
        .with_for_update(skip_locked=True)
    )
    n = 0
    for request in session.scalars(stmt).all():
        _finish(
            session,
            request,
            EXPIRED,
            actions.APPROVAL_EXPIRED,
            actions.ACTOR_SYSTEM,
            "deadline passed without a decision",
            at,
        )
        n += 1
    return n


def require_promotable(session: Session, model_name: str, version: int) -> ApprovalRequest:
    """The approved request that allows promoting ``version``, or a 409 saying why not."""
    if was_rejected(session, model_name, version):
        raise ConflictError(
            f"{model_name} version {version} was rejected by a safety officer and can never be "
            "promoted."
        )
    stmt = (
        select(ApprovalRequest)
        .where(
            ApprovalRequest.model_name == model_name,
            ApprovalRequest.candidate_version == version,
            ApprovalRequest.state == APPROVED,
        )
        .order_by(ApprovalRequest.id.desc())
    )
    approved = session.scalars(stmt).first()
    if approved is None:
        raise ConflictError(
            f"{model_name} version {version} has no approved sign-off; a clinical safety "
            "officer must approve it first (GET /v1/approvals?state=pending)."
        )
    return approved
