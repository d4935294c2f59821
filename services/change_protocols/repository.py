"""Queries of ``change_protocols`` (one row per version of a model's protocol document)."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from services.core.models import ChangeProtocol


def add(session: Session, row: ChangeProtocol) -> ChangeProtocol:
    session.add(row)
    session.flush()
    return row


def latest(session: Session, model_name: str) -> ChangeProtocol | None:
    stmt = (
        select(ChangeProtocol)
        .where(ChangeProtocol.model_name == model_name)
        .order_by(ChangeProtocol.version.desc())
        .limit(1)
    )
    return session.scalars(stmt).first()


def by_version(session: Session, model_name: str, version: int) -> ChangeProtocol | None:
    return session.scalars(
        select(ChangeProtocol).where(
            ChangeProtocol.model_name == model_name, ChangeProtocol.version == version
        )
    ).first()


def history(session: Session, model_name: str) -> list[ChangeProtocol]:
    """Oldest version first."""
    stmt = (
        select(ChangeProtocol)
        .where(ChangeProtocol.model_name == model_name)
        .order_by(ChangeProtocol.version)
    )
    return list(session.scalars(stmt))


def max_version(session: Session, model_name: str) -> int:
    """The model's newest version number, 0 when it has none."""
    stmt = select(func.max(ChangeProtocol.version)).where(ChangeProtocol.model_name == model_name)
    return int(session.scalar(stmt) or 0)
