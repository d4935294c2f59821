"""Queries on ``audit_log``. Only inserts and reads: the table is append-only (migration 0006
makes PostgreSQL refuse UPDATE, DELETE and TRUNCATE)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, select, text
from sqlalchemy.orm import Session

from services.core.db import advisory_lock
from services.core.models import AuditRecord

#: PostgreSQL advisory-lock key that serializes appends to the chain ("rwau"). A single bigint
#: key, distinct from the ingest lock (``0x72616477``) and from the monitors' two-int keys.
AUDIT_LOCK_KEY = 0x72776175

_COLUMNS = (
    AuditRecord.id,
    AuditRecord.at,
    AuditRecord.actor,
    AuditRecord.action,
    AuditRecord.entity_type,
    AuditRecord.entity_id,
    AuditRecord.reason,
    AuditRecord.payload,
    AuditRecord.prev_hash,
    AuditRecord.hash,
)


def lock_chain(session: Session) -> None:
    """Become the only writer of the chain until this transaction ends.

    PostgreSQL: ``pg_advisory_xact_lock`` on a fixed key; it is released by the commit or
    rollback, so the next appender reads a head that includes this transaction's record (READ
    COMMITTED takes a fresh snapshot per statement, after the lock is granted).

    SQLite: there is one writer per database file at a time, but pysqlite only opens the write
    transaction at the first INSERT/UPDATE/DELETE, so a SELECT of the head before that could be
    stale by the time the INSERT gets the lock. A no-op UPDATE takes the write lock first (it
    waits up to the busy timeout for another writer), so the head read after it is final.

    Either way the UNIQUE ``prev_hash`` is the last line of defence: two appends after the same
    head cannot both commit, so the chain cannot fork.
    """
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        advisory_lock(session, AUDIT_LOCK_KEY)
    elif dialect == "sqlite":
        session.execute(text("UPDATE audit_log SET id = id WHERE 0"))
    else:  # pragma: no cover - settings only accept PostgreSQL and SQLite URLs
        raise RuntimeError(f"unsupported database dialect {dialect!r}")


def head_hash(session: Session) -> str | None:
    """The hash of the newest record, ``None`` for an empty log. Call :func:`lock_chain` first
    when appending."""
    return session.scalars(
        select(AuditRecord.hash).order_by(AuditRecord.id.desc()).limit(1)
    ).first()


def add(session: Session, record: AuditRecord) -> AuditRecord:
    session.add(record)
    session.flush()
    return record


def stream(
    session: Session,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    batch_size: int = 1000,
) -> Iterator[Row[Any]]:
    """Every record (as plain rows, not ORM objects, so nothing piles up in the identity map) in
    id order, ``since <= at < until``. ``yield_per`` makes psycopg use a server-side cursor:
    memory stays at one batch however long the log is."""
    stmt = select(*_COLUMNS).order_by(AuditRecord.id)
    if since is not None:
        stmt = stmt.where(AuditRecord.at >= since)
    if until is not None:
        stmt = stmt.where(AuditRecord.at < until)
    yield from session.execute(stmt.execution_options(yield_per=batch_size))


def page(
    session: Session,
    *,
    after_id: int,
    limit: int,
    entity_type: str | None = None,
    entity_id: str | None = None,
    action: str | None = None,
) -> Sequence[AuditRecord]:
    """Up to ``limit`` records with ``id > after_id``, oldest first."""
    stmt = select(AuditRecord).where(AuditRecord.id > after_id)
    if entity_type is not None:
        stmt = stmt.where(AuditRecord.entity_type == entity_type)
    if entity_id is not None:
        stmt = stmt.where(AuditRecord.entity_id == entity_id)
    if action is not None:
        stmt = stmt.where(AuditRecord.action == action)
    return session.scalars(stmt.order_by(AuditRecord.id).limit(limit)).all()
