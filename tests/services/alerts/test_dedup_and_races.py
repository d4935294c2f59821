"""De-duplication across the lifecycle and concurrent transitions, on a real PostgreSQL.

"The same monitor and key never opens a second alert while one is open": an acknowledged alert
still blocks (someone is working on it), only resolving frees the key. Two resolves racing on one
alert: exactly one wins.
"""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from services.alerts import repository as monitoring_repository
from services.alerts import service
from services.auth.service import Principal
from services.core.db import session_scope
from services.core.errors import ConflictError
from services.core.models import Alert, AlertState, MonitorResult, Role, WebhookDelivery
from services.core.settings import Settings
from services.monitoring.alerting import open_alert_if_due
from services.monitoring.service import DEFAULT_DRIFT
from services.monitoring.specs import DriftSpec
from tests.conftest import enqueuer_for
from tests.services.alerts.conftest import seed_alert

ALICE = Principal(key_id=1, name="alice", role=Role.MLOPS_ENGINEER)
BOB = Principal(key_id=2, name="bob", role=Role.CLINICAL_SAFETY_OFFICER)


def _drifted_window(session: Session, index: int) -> MonitorResult:
    result = MonitorResult(
        monitor=DEFAULT_DRIFT,
        model_name="m",
        model_version=1,
        site="south",
        window_index=index,
        first_event_id=index * 100 + 1,
        last_event_id=index * 100 + 100,
        n_current=100,
        n_reference=100,
        statistic=0.4,
        p_value=1e-6,
        drift=True,
        details={},
    )
    session.add(result)
    session.flush()
    return result


def _window(sessions: sessionmaker[Session], settings: Settings, index: int) -> Alert | None:
    """Store one drifted window and run the monitor's alert decision on it, as the worker does."""
    with session_scope(sessions) as s:
        result = _drifted_window(s, index)
        alert = open_alert_if_due(
            s, enqueuer=enqueuer_for(settings), spec=DriftSpec(), result=result
        )
        return None if alert is None else s.get(Alert, alert.id)


def _alerts(sessions: sessionmaker[Session]) -> list[tuple[int, AlertState]]:
    with session_scope(sessions) as s:
        return [(a.id, a.state) for a in s.scalars(select(Alert).order_by(Alert.id))]


def test_acknowledged_alert_blocks_a_new_one_and_resolving_frees_the_key(
    sessions: sessionmaker[Session], settings: Settings
) -> None:
    assert _window(sessions, settings, 0) is None  # 1 of 3 drifted windows: not yet
    first = _window(sessions, settings, 1)  # 2 of 3: the policy fires
    assert first is not None
    assert _window(sessions, settings, 2) is None  # open: no second alert

    with session_scope(sessions) as s:
        service.acknowledge(
            s, first.id, principal=ALICE, note=None, enqueuer=enqueuer_for(settings)
        )
    assert _window(sessions, settings, 3) is None  # acknowledged still blocks
    assert _alerts(sessions) == [(first.id, AlertState.ACKNOWLEDGED)]
    # Blocked by the read check, not only by the index that backs it up.
    with session_scope(sessions) as s:
        blocking = monitoring_repository.open_alert(
            s, monitor=DEFAULT_DRIFT, model_name="m", site="south"
        )
        assert blocking is not None
        assert blocking.id == first.id

    with session_scope(sessions) as s:
        service.resolve(s, first.id, principal=BOB, note="fixed", enqueuer=enqueuer_for(settings))
    with session_scope(sessions) as s:
        assert (
            monitoring_repository.open_alert(s, monitor=DEFAULT_DRIFT, model_name="m", site="south")
            is None
        )
    second = _window(sessions, settings, 4)  # resolved frees the key: the drift is still there
    assert second is not None
    assert _alerts(sessions) == [(first.id, AlertState.RESOLVED), (second.id, AlertState.OPEN)]


def test_index_refuses_a_second_unresolved_alert_even_when_the_check_is_raced(
    sessions: sessionmaker[Session],
) -> None:
    """The partial unique index is the guard when two workers both pass the read check."""
    seed_alert(sessions, site="south", state=AlertState.ACKNOWLEDGED)
    with pytest.raises(IntegrityError), session_scope(sessions) as s:
        s.execute(
            text(
                "INSERT INTO alerts (monitor, model_name, site, state, severity, detail, "
                "result_id, opened_after_predictions, opened_at) SELECT monitor, model_name, "
                "site, 'open', severity, detail, result_id, 1, now() FROM alerts"
            )
        )
    with session_scope(sessions) as s:
        s.execute(text("UPDATE alerts SET state = 'resolved'"))
        s.execute(
            text(
                "INSERT INTO alerts (monitor, model_name, site, state, severity, detail, "
                "result_id, opened_after_predictions, opened_at) SELECT monitor, model_name, "
                "site, 'open', severity, detail, result_id, 1, now() FROM alerts"
            )
        )
    assert [state for _, state in _alerts(sessions)] == [AlertState.RESOLVED, AlertState.OPEN]


def test_concurrent_resolves_exactly_one_wins(
    sessions: sessionmaker[Session], settings: Settings
) -> None:
    with session_scope(sessions) as s:
        service.create_subscription(
            s, url="http://127.0.0.1:9/x", secret=None, min_severity="warning"
        )
    alert_id = seed_alert(sessions)
    n = 8
    start = threading.Barrier(n)
    outcomes: dict[int, str] = {}

    def resolve(i: int) -> None:
        who = Principal(key_id=100 + i, name=f"responder-{i}", role=Role.MLOPS_ENGINEER)
        start.wait()
        try:
            with session_scope(sessions) as s:
                service.resolve(
                    s, alert_id, principal=who, note=None, enqueuer=enqueuer_for(settings)
                )
            outcomes[i] = "resolved"
        except ConflictError:
            outcomes[i] = "conflict"

    threads = [threading.Thread(target=resolve, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    winners = [i for i, o in outcomes.items() if o == "resolved"]
    assert len(outcomes) == n
    assert len(winners) == 1
    with session_scope(sessions) as s:
        alert = s.get(Alert, alert_id)
        assert alert is not None
        assert alert.resolved_by == f"responder-{winners[0]}"
        # One resolution, one event: the losers wrote nothing.
        events = s.scalars(select(WebhookDelivery.event)).all()
        assert events == ["alert.resolved"]


def test_second_resolve_waits_for_the_first_then_gets_409(
    sessions: sessionmaker[Session], settings: Settings
) -> None:
    """Deterministic version of the race: the first resolve holds the row lock uncommitted, the
    second blocks on it, and after the first commits it finds the alert resolved."""
    alert_id = seed_alert(sessions)
    first = sessions()
    service.resolve(first, alert_id, principal=ALICE, note="first", enqueuer=enqueuer_for(settings))
    errors: list[BaseException] = []

    def second() -> None:
        try:
            with session_scope(sessions) as s:
                service.resolve(
                    s, alert_id, principal=BOB, note="second", enqueuer=enqueuer_for(settings)
                )
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=second)
    thread.start()
    try:
        _wait_for_lock_waiter(sessions)
        assert thread.is_alive()  # blocked on the row lock, not refused from a stale read
    finally:
        first.commit()
        first.close()
    thread.join(timeout=30)
    assert len(errors) == 1
    assert isinstance(errors[0], ConflictError)
    assert "already resolved by alice" in errors[0].message
    with session_scope(sessions) as s:
        alert = s.get(Alert, alert_id)
        assert alert is not None
        assert (alert.resolved_by, alert.resolved_note) == ("alice", "first")


def _wait_for_lock_waiter(sessions: sessionmaker[Session], timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with session_scope(sessions) as s:
            waiting = s.scalar(
                select(func.count())
                .select_from(text("pg_stat_activity"))
                .where(text("datname = current_database() AND wait_event_type = 'Lock'"))
            )
        if waiting:
            return
        time.sleep(0.02)
    raise AssertionError("the second resolve never waited for the first one's row lock")
