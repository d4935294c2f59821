"""Queries of the sign-off tables: approval requests and their signed decisions."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from services.core.models import ApprovalDecision, ApprovalRequest, ApprovalState


def add_request(session: Session, request: ApprovalRequest) -> ApprovalRequest:
    session.add(request)
    session.flush()
    return request


def add_decision(session: Session, decision: ApprovalDecision) -> None:
    session.add(decision)
    session.flush()


def get(session: Session, request_id: int, *, for_update: bool = False) -> ApprovalRequest | None:
    stmt = select(ApprovalRequest).where(ApprovalRequest.id == request_id)
    if for_update:
        stmt = stmt.with_for_update()
    return session.scalars(stmt).first()


def list_requests(
    session: Session,
    *,
    state: str | None = None,
    model_name: str | None = None,
    limit: int = 200,
) -> Sequence[ApprovalRequest]:
    """Newest first."""
    stmt = select(ApprovalRequest).order_by(ApprovalRequest.id.desc()).limit(limit)
    if state:
        stmt = stmt.where(ApprovalRequest.state == state)
    if model_name:
        stmt = stmt.where(ApprovalRequest.model_name == model_name)
    return session.scalars(stmt).all()


def of_candidate(
    session: Session, model_name: str, version: int, state: ApprovalState
) -> ApprovalRequest | None:
    """The newest request of a candidate in ``state``."""
    stmt = (
        select(ApprovalRequest)
        .where(
            ApprovalRequest.model_name == model_name,
            ApprovalRequest.candidate_version == version,
            ApprovalRequest.state == state,
        )
        .order_by(ApprovalRequest.id.desc())
    )
    return session.scalars(stmt).first()


def pending_past(session: Session, at: datetime) -> Sequence[ApprovalRequest]:
    """Pending requests whose deadline is at or before ``at``, locked (others skip them)."""
    stmt = (
        select(ApprovalRequest)
        .where(ApprovalRequest.state == ApprovalState.PENDING, ApprovalRequest.expires_at <= at)
        .with_for_update(skip_locked=True)
    )
    return session.scalars(stmt).all()


def decisions(session: Session, request_id: int) -> Sequence[ApprovalDecision]:
    """Oldest first."""
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


def recent_decisions(
    session: Session, *, model_name: str | None, limit: int
) -> Sequence[tuple[ApprovalDecision, ApprovalRequest]]:
    """Newest signed decisions with their requests (the history page)."""
    stmt = (
        select(ApprovalDecision, ApprovalRequest)
        .join(ApprovalRequest, ApprovalRequest.id == ApprovalDecision.request_id)
        .order_by(ApprovalDecision.signed_at.desc(), ApprovalDecision.id.desc())
        .limit(limit)
    )
    if model_name:
        stmt = stmt.where(ApprovalRequest.model_name == model_name)
    return [(d, r) for d, r in session.execute(stmt)]


def model_names(session: Session) -> set[str]:
    """Models that ever had an approval request."""
    return set(session.scalars(select(ApprovalRequest.model_name).distinct()))


def counts(session: Session) -> dict[tuple[str, str], int]:
    """(model, state) -> number of requests."""
    stmt = select(ApprovalRequest.model_name, ApprovalRequest.state, func.count()).group_by(
        ApprovalRequest.model_name, ApprovalRequest.state
    )
    return {(m, s): int(n) for m, s, n in session.execute(stmt)}


def oldest_pending(session: Session) -> dict[str, datetime]:
    """Per model, when its oldest pending request was opened."""
    stmt = (
        select(ApprovalRequest.model_name, func.min(ApprovalRequest.created_at))
        .where(ApprovalRequest.state == ApprovalState.PENDING)
        .group_by(ApprovalRequest.model_name)
    )
    return {m: at for m, at in session.execute(stmt)}
