"""Queries of the ``promotions`` table (promotions and rollbacks)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from services.core.models import Promotion, PromotionKind, PromotionState


def add(session: Session, promotion: Promotion) -> Promotion:
    session.add(promotion)
    session.flush()
    return promotion


def get(session: Session, promotion_id: int, *, for_update: bool = False) -> Promotion | None:
    return session.get(Promotion, promotion_id, with_for_update=for_update)


def in_progress(session: Session, model_name: str) -> Promotion | None:
    """The model's promotion that is still under way, if any."""
    stmt = (
        select(Promotion)
        .where(
            Promotion.model_name == model_name,
            Promotion.kind == PromotionKind.PROMOTION,
            Promotion.state == PromotionState.IN_PROGRESS,
        )
        .order_by(Promotion.id.desc())
    )
    return session.scalars(stmt).first()


def last_succeeded(session: Session, model_name: str) -> Promotion | None:
    """The model's most recent finished promotion or rollback."""
    stmt = (
        select(Promotion)
        .where(Promotion.model_name == model_name, Promotion.state == PromotionState.SUCCEEDED)
        .order_by(Promotion.id.desc())
        .limit(1)
    )
    return session.scalars(stmt).first()


def list_recent(
    session: Session, *, model_name: str | None = None, limit: int = 200
) -> list[Promotion]:
    """Newest first (by id)."""
    stmt = select(Promotion).order_by(Promotion.id.desc()).limit(limit)
    if model_name:
        stmt = stmt.where(Promotion.model_name == model_name)
    return list(session.scalars(stmt))


def recent_by_start(session: Session, *, model_name: str | None, limit: int) -> Sequence[Promotion]:
    """Newest first by start time, for the history page."""
    stmt = select(Promotion).order_by(Promotion.started_at.desc(), Promotion.id.desc()).limit(limit)
    if model_name:
        stmt = stmt.where(Promotion.model_name == model_name)
    return session.scalars(stmt).all()


def model_names(session: Session) -> list[str]:
    """Every model that ever had a promotion or rollback."""
    return sorted(set(session.scalars(select(Promotion.model_name).distinct())))


def models_promoting(session: Session) -> list[str]:
    """Models with a promotion in progress."""
    stmt = (
        select(Promotion.model_name).where(Promotion.state == PromotionState.IN_PROGRESS).distinct()
    )
    return sorted(session.scalars(stmt))


def counts(session: Session) -> dict[tuple[str, str, str], int]:
    """(model, kind, state) -> number of promotions."""
    stmt = select(Promotion.model_name, Promotion.kind, Promotion.state, func.count()).group_by(
        Promotion.model_name, Promotion.kind, Promotion.state
    )
    return {(m, k, s): int(n) for m, k, s, n in session.execute(stmt)}
