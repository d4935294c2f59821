"""Queries over prediction events."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from services.core.models import PredictionEvent


def add(session: Session, event: PredictionEvent) -> PredictionEvent:
    session.add(event)
    session.flush()
    return event


def by_event_id(session: Session, event_id: str) -> PredictionEvent | None:
    return session.scalars(
        select(PredictionEvent).where(PredictionEvent.event_id == event_id)
    ).first()


def count(session: Session, *, model_name: str | None = None, up_to_id: int | None = None) -> int:
    stmt = select(func.count(PredictionEvent.id))
    if model_name is not None:
        stmt = stmt.where(PredictionEvent.model_name == model_name)
    if up_to_id is not None:
        stmt = stmt.where(PredictionEvent.id <= up_to_id)
    return int(session.scalar(stmt) or 0)


def sites(session: Session, model_name: str) -> list[str]:
    stmt = select(PredictionEvent.site).where(PredictionEvent.model_name == model_name).distinct()
    return sorted(session.scalars(stmt))


def window(
    session: Session, *, model_name: str, site: str, after_id: int, size: int
) -> Sequence[PredictionEvent]:
    """The next ``size`` events of a site after ``after_id``, oldest first."""
    stmt = (
        select(PredictionEvent)
        .where(
            PredictionEvent.model_name == model_name,
            PredictionEvent.site == site,
            PredictionEvent.id > after_id,
        )
        .order_by(PredictionEvent.id)
        .limit(size)
    )
    return session.scalars(stmt).all()
