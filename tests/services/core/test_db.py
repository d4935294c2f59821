from __future__ import annotations

from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from services.core.db import migrate
from services.core.models import Alert, AlertState, MonitorResult


def test_migration_creates_every_table(engine):  # type: ignore[no-untyped-def]
    tables = set(inspect(engine).get_table_names())
    assert {"api_keys", "deployments", "prediction_events", "monitor_results", "alerts"} <= tables
    assert "alembic_version" in tables


def test_migration_is_idempotent(database_url: str) -> None:
    migrate(database_url)  # already at head: must be a no-op, not an error


def test_sqlite_migration(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from services.core.db import make_engine

    url = f"sqlite:///{tmp_path}/x.db"
    migrate(url)
    eng = make_engine(url)
    with eng.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
    assert "alerts" in inspect(eng).get_table_names()


def _result(session: Session, site: str, index: int) -> MonitorResult:
    r = MonitorResult(
        monitor="m",
        model_name="x",
        model_version=1,
        site=site,
        window_index=index,
        first_event_id=1,
        last_event_id=2,
        n_current=2,
        n_reference=2,
        statistic=0.0,
        p_value=1.0,
        drift=True,
        details={},
    )
    session.add(r)
    session.flush()
    return r


def test_one_open_alert_per_monitor_and_site(session: Session) -> None:
    r = _result(session, "a", 0)
    session.add(
        Alert(
            monitor="m",
            model_name="x",
            site="a",
            severity="warning",
            detail="d",
            result_id=r.id,
            opened_after_predictions=1,
        )
    )
    session.flush()
    session.add(
        Alert(
            monitor="m",
            model_name="x",
            site="a",
            severity="warning",
            detail="d",
            result_id=r.id,
            opened_after_predictions=2,
        )
    )
    try:
        session.flush()
        raised = False
    except IntegrityError:
        raised = True
        session.rollback()
    assert raised, "a second open alert for the same monitor and site must be refused"


def test_resolved_alert_allows_a_new_one(session: Session) -> None:
    r = _result(session, "a", 0)
    first = Alert(
        monitor="m",
        model_name="x",
        site="a",
        severity="warning",
        detail="d",
        result_id=r.id,
        opened_after_predictions=1,
    )
    session.add(first)
    session.flush()
    first.state = AlertState.RESOLVED
    session.flush()
    session.add(
        Alert(
            monitor="m",
            model_name="x",
            site="a",
            severity="warning",
            detail="d",
            result_id=r.id,
            opened_after_predictions=2,
        )
    )
    session.flush()
    stored = session.execute(text("SELECT state FROM alerts ORDER BY id")).scalars().all()
    assert stored == ["resolved", "open"]


def test_window_is_unique(session: Session) -> None:
    _result(session, "a", 0)
    try:
        _result(session, "a", 0)
        raised = False
    except IntegrityError:
        raised = True
    assert raised
