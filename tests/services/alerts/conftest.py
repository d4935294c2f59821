"""Fixtures for the alerts domain: the real app on PostgreSQL (no Triton needed), a real HTTP
receiver on a free port, a controllable clock, and alerts seeded the way the monitor stores them."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from services.core.db import session_scope
from services.core.models import Alert, AlertState, MonitorResult
from services.core.settings import Settings


@pytest.fixture
def api(settings: Settings, keys: dict[str, str]) -> Iterator[TestClient]:
    """The real app (lifespan runs) with no key set; tests pick one with :func:`auth`."""
    from services.api.app import create_app

    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        yield c


def auth(keys: dict[str, str], role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {keys[role]}"}


def seed_result(
    s: Session, *, site: str = "north", monitor: str = "acquisition_drift", model_name: str = "m"
) -> int:
    """A drifted monitor window (flushed, not committed); returns its id."""
    result = MonitorResult(
        monitor=monitor,
        model_name=model_name,
        model_version=1,
        site=site,
        window_index=0,
        first_event_id=1,
        last_event_id=100,
        n_current=100,
        n_reference=100,
        statistic=0.3,
        p_value=1e-6,
        drift=True,
        details={},
    )
    s.add(result)
    s.flush()
    return result.id


def seed_alert(
    sessions: sessionmaker[Session],
    *,
    site: str = "north",
    severity: str = "critical",
    state: AlertState = AlertState.OPEN,
    monitor: str = "acquisition_drift",
    model_name: str = "m",
) -> int:
    """An alert row with its monitor result as it was stored, committed (no outbox rows, no
    audit record: for tests of what happens after opening); returns its id."""
    with session_scope(sessions) as s:
        result_id = seed_result(s, site=site, monitor=monitor, model_name=model_name)
        alert = Alert(
            monitor=monitor,
            model_name=model_name,
            site=site,
            severity=severity,
            detail=f"Acquisition drift at site '{site}'",
            result_id=result_id,
            opened_after_predictions=100,
            state=state,
        )
        s.add(alert)
        s.flush()
        return alert.id


class Clock:
    """A clock the test moves by hand, so retries are checked without real waiting. It starts a
    minute ahead of the real clock, so rows written with the real time during the test are
    already due."""

    def __init__(self, start: datetime | None = None) -> None:
        self.t = start or datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=1)

    def __call__(self) -> datetime:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()
