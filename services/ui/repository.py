"""Queries the pages need beyond :mod:`services.lifecycle.approvals`: dossiers, approval counts
for the list, and the rows of the history page."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from services.core.models import ApprovalDecision, ApprovalRequest, Dossier, Promotion


def dossier(session: Session, dossier_id: int) -> Dossier | None:
    return session.get(Dossier, dossier_id)


def approval_counts(session: Session, request_ids: Sequence[int]) -> dict[int, int]:
    """Approvals signed so far per request (rejections end a request, so are not counted)."""
    if not request_ids:
        return {}
    stmt = (
        select(ApprovalDecision.request_id, func.count())
        .where(
            ApprovalDecision.request_id.in_(list(request_ids)),
            ApprovalDecision.decision == "approve",
        )
        .group_by(ApprovalDecision.request_id)
    )
    return {int(rid): int(n) for rid, n in session.execute(stmt)}


def model_names(session: Session) -> list[str]:
    """Models that have ever had an approval request or a promotion, for the history filter."""
    names = set(session.scalars(select(ApprovalRequest.model_name).distinct()))
    names.update(session.scalars(select(Promotion.model_name).distinct()))
    return sorted(names)


def recent_decisions(
    session: Session, *, model_name: str | None, limit: int
) -> Sequence[tuple[ApprovalDecision, ApprovalRequest]]:
    stmt = (
        select(ApprovalDecision, ApprovalRequest)
        .join(ApprovalRequest, ApprovalRequest.id == ApprovalDecision.request_id)
        .order_by(ApprovalDecision.signed_at.desc(), ApprovalDecision.id.desc())
        .limit(limit)
    )
    if model_name:
        stmt = stmt.where(ApprovalRequest.model_name == model_name)
    return [(d, r) for d, r in session.execute(stmt)]


def recent_requests(
    session: Session, *, model_name: str | None, limit: int
) -> Sequence[ApprovalRequest]:
    stmt = select(ApprovalRequest).order_by(ApprovalRequest.id.desc()).limit(limit)
    if model_name:
        stmt = stmt.where(ApprovalRequest.model_name == model_name)
    return session.scalars(stmt).all()


def recent_promotions(
    session: Session, *, model_name: str | None, limit: int
) -> Sequence[Promotion]:
    stmt = select(Promotion).order_by(Promotion.started_at.desc(), Promotion.id.desc()).limit(limit)
    if model_name:
        stmt = stmt.where(Promotion.model_name == model_name)
    return session.scalars(stmt).all()
