"""Sign-off: approval requests and signed decisions.

Who may decide what is :mod:`services.approvals.rules` (one pure function); this module enforces
it (raising the first refusal), then re-authenticates the signer (password or a fresh re-auth
token) and records the decision with a signature hash bound to what was signed. Also here:

- the names of everyone who triggered or trained the candidate are stored with the request
  (``conflicted``), for the four-eyes rule;
- one rejection rejects the request, and a candidate with a rejected request can never be
  promoted nor asked for again;
- pending -> approved | rejected | withdrawn | expired; nothing leaves those end states.

Services never commit; the request dependency or the task does.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session

from services.approvals import repository
from services.approvals.rules import (
    MIN_REASON,
    Decision,
    Signer,
    approvals_needed,
    refusals,
)
from services.audit import actions
from services.audit.service import record
from services.auth import users
from services.change_protocols.document import ChangeProtocolDocument
from services.core.errors import ConflictError, NotFoundError, ValidationFailedError
from services.core.models import ApprovalDecision, ApprovalRequest, ApprovalState, as_utc
from services.core.settings import Settings

__all__ = ["Decision", "Signer", "approvals_needed"]


def _entity(request: ApprovalRequest) -> str:
    return str(request.id)


def get(session: Session, request_id: int, *, for_update: bool = False) -> ApprovalRequest:
    row = repository.get(session, request_id, for_update=for_update)
    if row is None:
        raise NotFoundError(f"No approval request {request_id}; list them with GET /v1/approvals.")
    return row


list_requests = repository.list_requests
decisions = repository.decisions
decisions_by_request = repository.decisions_by_request


def was_rejected(session: Session, model_name: str, version: int) -> bool:
    return repository.of_candidate(session, model_name, version, ApprovalState.REJECTED) is not None


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
    pending = repository.of_candidate(session, model_name, candidate_version, ApprovalState.PENDING)
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
        state=ApprovalState.PENDING,
        approver_role=protocol.approver_role,
        required_approvals=protocol.approvals_required,
        criteria_passed=criteria_passed,
        conflicted={"names": names},
        requested_by=requested_by,
        override=False,
        created_at=at,
        expires_at=at + timedelta(hours=protocol.approval_expires_hours),
    )
    repository.add_request(session, request)
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
        "signed_at": as_utc(signed_at).isoformat(),
        "meaning": f"I {decision} this candidate for clinical use under its change protocol.",
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


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
    """Sign ``decision`` on the request as ``signer``: the first refusal of the sign-off rules
    is raised; then the signer re-authenticates; then the decision is stored, signed and
    audited, and the request closes when it is rejected or has its approvals."""
    request = get(session, request_id, for_update=True)
    at = now or datetime.now(UTC)
    refused = refusals(
        signer,
        request,
        decisions(session, request.id),
        at,
        decision=decision,
        override=override,
        reason=reason or "",
    )
    if refused:
        raise refused[0].exception()
    method = users.reauthenticate(
        session,
        secret=settings.session_secret,
        max_age_s=settings.reauth_max_age_s,
        name=signer.name,
        password=password,
        token=reauth_token,
    )
    text = (reason or "").strip()
    if override and decision == "approve":
        request.override = True

    repository.add_decision(
        session,
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
        ),
    )
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
        _finish(
            session,
            request,
            ApprovalState.REJECTED,
            actions.APPROVAL_REJECTED,
            signer.name,
            text,
            at,
        )
    else:
        approved = sum(1 for d in decisions(session, request.id) if d.decision == "approve")
        if approved >= approvals_needed(request):
            _finish(
                session,
                request,
                ApprovalState.APPROVED,
                actions.APPROVAL_APPROVED,
                signer.name,
                text,
                at,
            )
    return request


def _finish(
    session: Session,
    request: ApprovalRequest,
    state: ApprovalState,
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
    if request.state != ApprovalState.PENDING:
        raise ConflictError(f"Approval request {request.id} is {request.state}, not pending.")
    text = (reason or "").strip()
    if len(text) < MIN_REASON:
        raise ValidationFailedError(
            f"Withdrawing needs a reason of at least {MIN_REASON} characters."
        )
    _finish(
        session,
        request,
        ApprovalState.WITHDRAWN,
        actions.APPROVAL_WITHDRAWN,
        actor,
        text,
        now or datetime.now(UTC),
    )
    return request


def expire_due(session: Session, *, now: datetime | None = None) -> int:
    """Mark pending requests past their deadline as expired (beat task and page loads)."""
    at = now or datetime.now(UTC)
    n = 0
    for request in repository.pending_past(session, at):
        _finish(
            session,
            request,
            ApprovalState.EXPIRED,
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
    approved = repository.of_candidate(session, model_name, version, ApprovalState.APPROVED)
    if approved is None:
        raise ConflictError(
            f"{model_name} version {version} has no approved sign-off; a clinical safety "
            "officer must approve it first (GET /v1/approvals?state=pending)."
        )
    return approved
