"""Engine and session handling. Transactions are owned by the edge (request or task), never by
services: :func:`session_scope` commits on success and rolls back on error."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, Table, create_engine, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Build an engine. SQLite gets WAL and a busy timeout, because the API and the Celery worker
    write to the same file from different processes in the embedded setup."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url, connect_args={"timeout": 30, "check_same_thread": False}, **kwargs
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    kwargs.setdefault("pool_pre_ping", True)
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 10)
    return create_engine(url, **kwargs)


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit if the block succeeds, roll back if it raises."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def migrate(url: str) -> None:
    """Bring the schema at ``url`` to the latest Alembic revision."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
    command.upgrade(cfg, "head")


def insert_ignoring_duplicates(
    session: Session, table: Table, rows: Sequence[Mapping[str, Any]], *, key: Sequence[str]
) -> set[tuple[Any, ...]]:
    """INSERT ... ON CONFLICT (key) DO NOTHING RETURNING key: the key tuples of the rows actually
    inserted, so the caller can tell the duplicates apart. One round trip per batch
    (SQLAlchemy's insertmanyvalues) on PostgreSQL and SQLite alike."""
    if not rows:
        return set()
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        stmt: Any = postgresql.insert(table).on_conflict_do_nothing(index_elements=list(key))
    elif dialect == "sqlite":
        stmt = sqlite.insert(table).on_conflict_do_nothing(index_elements=list(key))
    else:  # pragma: no cover - settings only accept PostgreSQL and SQLite URLs
        raise RuntimeError(f"unsupported database dialect {dialect!r}")
    result = session.execute(stmt.returning(*(table.c[k] for k in key)), list(rows))
    return {tuple(r) for r in result}


def lock_key(name: str) -> int:
    """A stable signed 64-bit advisory-lock key for ``name`` (the same in every process)."""
    digest = hashlib.blake2b(name.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def advisory_lock(
    db: Session | Connection,
    key: int | str | tuple[int, str],
    *,
    shared: bool = False,
    wait: bool = True,
) -> bool:
    """Take a PostgreSQL advisory lock held until the transaction ends (commit or rollback).

    ``key`` is an integer, a name (hashed with :func:`lock_key`), or a pair (an integer id and a
    name) taken as PostgreSQL's two-key form ``(id, hashtext(name))``, which ``pg_locks`` shows
    as ``classid``/``objid`` so an operator can tell which (monitor, site) is locked. ``shared``
    takes the shared mode (many holders, excluded by one exclusive holder). With ``wait=False``
    it does not block and returns whether the lock was granted. On SQLite it does nothing and
    returns True: SQLite has one writer per database file at a time, and callers keep a unique
    key as the last line of defence either way.
    """
    dialect = db.get_bind().dialect if isinstance(db, Session) else db.dialect
    if dialect.name != "postgresql":
        return True
    fn = ("pg_advisory_xact_lock" if wait else "pg_try_advisory_xact_lock") + (
        "_shared" if shared else ""
    )
    if isinstance(key, tuple):
        stmt, params = text(f"SELECT {fn}(:a, hashtext(:b))"), {"a": key[0], "b": key[1]}
    else:
        stmt, params = (
            text(f"SELECT {fn}(:k)"),
            {"k": key if isinstance(key, int) else lock_key(key)},
        )
    granted = db.execute(stmt, params).scalar()
    return True if wait else bool(granted)
