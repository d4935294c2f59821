"""Queries of the lifecycle tables: retraining runs, approvals, promotions, routing."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from services.core.models import (
    ApprovalRequest,
    Deployment,
    ModelRouting,
    Promotion,
    RetrainingRun,
)


def run_counts(session: Session) -> dict[tuple[str, str], int]:
    stmt = select(RetrainingRun.model_name, RetrainingRun.state, func.count()).group_by(
        RetrainingRun.model_name, RetrainingRun.state
    )
    return {(m, s): int(n) for m, s, n in session.execute(stmt)}


def approval_counts(session: Session) -> dict[tuple[str, str], int]:
    stmt = select(ApprovalRequest.model_name, ApprovalRequest.state, func.count()).group_by(
        ApprovalRequest.model_name, ApprovalRequest.state
    )
    return {(m, s): int(n) for m, s, n in session.execute(stmt)}


def oldest_pending(session: Session) -> dict[str, datetime]:
    stmt = (
        select(ApprovalRequest.model_name, func.min(ApprovalRequest.created_at))
        .where(ApprovalRequest.state == "pending")
        .group_by(ApprovalRequest.model_name)
    )
    return {m: at for m, at in session.execute(stmt)}


def promotion_counts(session: Session) -> dict[tuple[str, str, str], int]:
    stmt = select(Promotion.model_name, Promotion.kind, Promotion.state, func.count()).group_by(
        Promotion.model_name, Promotion.kind, Promotion.state
    )
    return {(m, k, s): int(n) for m, k, s, n in session.execute(stmt)}


def all_routing(session: Session) -> Sequence[ModelRouting]:
    return session.scalars(select(ModelRouting)).all()


def champions(session: Session) -> dict[str, int]:
    """Active champion version of every model."""
    stmt = select(Deployment.model_name, Deployment.model_version).where(
        Deployment.active, Deployment.role == "champion"
    )
    return {m: int(v) for m, v in session.execute(stmt)}


def models_promoting(session: Session) -> list[str]:
    """Models with a promotion in progress."""
    stmt = select(Promotion.model_name).where(Promotion.state == "in_progress").distinct()
    return sorted(session.scalars(stmt))
