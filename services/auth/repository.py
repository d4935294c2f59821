"""Queries for API keys."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.core.models import ApiKey


def add(session: Session, key: ApiKey) -> ApiKey:
    session.add(key)
    session.flush()
    return key


def by_hash(session: Session, key_hash: str) -> ApiKey | None:
    return session.scalars(
        select(ApiKey).where(ApiKey.key_hash == key_hash, ApiKey.revoked_at.is_(None))
    ).first()


def list_keys(session: Session) -> list[ApiKey]:
    return list(session.scalars(select(ApiKey).order_by(ApiKey.id)))
