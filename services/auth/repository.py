"""Queries of the identity tables: API keys and user accounts."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.core.models import ApiKey, User


def add(session: Session, key: ApiKey) -> ApiKey:
    session.add(key)
    session.flush()
    return key


def by_hash(session: Session, key_hash: str) -> ApiKey | None:
    return session.scalars(
        select(ApiKey).where(ApiKey.key_hash == key_hash, ApiKey.revoked_at.is_(None))
    ).first()


def add_user(session: Session, user: User) -> User:
    session.add(user)
    session.flush()
    return user


def user_by_name(session: Session, name: str) -> User | None:
    return session.scalars(select(User).where(User.name == name)).first()
