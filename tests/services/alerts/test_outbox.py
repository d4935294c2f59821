"""The webhook outbox on PostgreSQL: one delivery per matching subscription, written in the same
transaction as the alert change (a rollback leaves none), and a worker nudged only after commit."""

from __future__ import annotations

import json
import logging
import time

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from services.alerts import service
from services.auth.service import Principal
from services.core import enqueue
from services.core.db import session_scope
from services.core.models import Alert, AlertState, DeliveryStatus, Role, WebhookDelivery
from services.core.processes import free_port
from services.core.settings import Settings
from services.monitoring.alerting import open_alert_if_due
from services.monitoring.specs import DriftSpec
from tests.conftest import enqueuer_for
from tests.fixtures.broker import queued
from tests.services.alerts.conftest import auth, seed_alert, seed_result
from tests.services.alerts.test_dedup_and_races import _drifted_window

ALICE = Principal(key_id=1, name="alice", role=Role.MLOPS_ENGINEER)


def _subscribe(sessions: sessionmaker[Session], min_severity: str, *, active: bool = True) -> int:
    with session_scope(sessions) as s:
        sub = service.create_subscription(
            s, url="http://127.0.0.1:9/hook", secret=None, min_severity=min_severity
        )
        sub.active = active
        return sub.id


def _deliveries(sessions: sessionmaker[Session]) -> list[WebhookDelivery]:
    with session_scope(sessions) as s:
        return list(s.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)))


def _nudges(settings: Settings) -> list[str]:
    """Task names waiting in the monitoring queue of the embedded broker."""
    return [task for task, _ in queued(settings, "monitoring")]


def test_each_change_writes_one_delivery_per_matching_active_subscription(
    sessions: sessionmaker[Session], settings: Settings
) -> None:
    everything = _subscribe(sessions, "warning")
    critical_only = _subscribe(sessions, "critical")
    _subscribe(sessions, "warning", active=False)
    with session_scope(sessions) as s:
        opened = [
            service.open(
                s,
                enqueuer=enqueuer_for(settings),
                monitor="acquisition_drift",
                model_name="m",
                site=site,
                severity=severity,
                detail=f"Acquisition drift at site '{site}'",
                result_id=seed_result(s, site=site),
                opened_after_predictions=100,
                actor="test",
            )
            for site, severity in (("north", "critical"), ("south", "warning"))
        ]
        assert opened[0] is not None
        assert opened[1] is not None
        critical, warning = opened[0].id, opened[1].id
        service.acknowledge(
            s, critical, principal=ALICE, note="on it: MRN 12345", enqueuer=enqueuer_for(settings)
        )
        service.resolve(s, critical, principal=ALICE, note="done", enqueuer=enqueuer_for(settings))

    got = [(d.alert_id, d.subscription_id, d.event) for d in _deliveries(sessions)]
    assert got == [
        (critical, everything, "alert.opened"),
        (critical, critical_only, "alert.opened"),
        (warning, everything, "alert.opened"),
        (critical, everything, "alert.acknowledged"),
        (critical, critical_only, "alert.acknowledged"),
        (critical, everything, "alert.resolved"),
        (critical, critical_only, "alert.resolved"),
    ]
    rows = _deliveries(sessions)
    assert {(d.status, d.attempts) for d in rows} == {(DeliveryStatus.PENDING, 0)}
    resolved = rows[-1].payload
    assert resolved["event"] == "alert.resolved"
    assert resolved["alert"]["state"] == "resolved"
    assert resolved["alert"]["resolved_at"] is not None
    assert resolved["alert"]["acknowledged_at"] is not None
    assert set(resolved["alert"]) == {
        "id",
        "monitor",
        "model_name",
        "site",
        "severity",
        "state",
        "detail",
        "opened_at",
        "acknowledged_at",
        "resolved_at",
    }
    # Notes are free text and may hold patient details; key names are internal. Neither leaves.
    text = json.dumps([d.payload for d in rows])
    assert "MRN" not in text
    assert "alice" not in text
    assert rows[0].payload["alert"]["state"] == "open"  # a snapshot at the time of the event


def test_rolled_back_change_leaves_no_delivery_and_no_nudge(
    sessions: sessionmaker[Session], settings: Settings
) -> None:
    _subscribe(sessions, "warning")
    alert_id = seed_alert(sessions)
    s = sessions()
    try:
        service.acknowledge(
            s, alert_id, principal=ALICE, note=None, enqueuer=enqueuer_for(settings)
        )
        assert s.scalar(select(func.count(WebhookDelivery.id))) == 1  # written, same transaction
        s.rollback()
    finally:
        s.close()
    assert _deliveries(sessions) == []
    with session_scope(sessions) as s2:
        alert = s2.get(Alert, alert_id)
        assert alert is not None
        assert alert.state == AlertState.OPEN
    assert _nudges(settings) == []

    # The same change committed: its delivery stays and a worker is asked to send it.
    with session_scope(sessions) as s3:
        service.acknowledge(
            s3, alert_id, principal=ALICE, note=None, enqueuer=enqueuer_for(settings)
        )
    assert [d.event for d in _deliveries(sessions)] == ["alert.acknowledged"]
    assert _nudges(settings) == ["alerts.deliver_webhooks"]


def test_opening_an_alert_writes_its_delivery_in_the_monitors_transaction(
    sessions: sessionmaker[Session], settings: Settings
) -> None:
    _subscribe(sessions, "warning")
    with session_scope(sessions) as s:
        _drifted_window(s, 0)
    s = sessions()
    try:
        window = _drifted_window(s, 1)
        alert = open_alert_if_due(
            s, enqueuer=enqueuer_for(settings), spec=DriftSpec(), result=window
        )
        assert alert is not None
        assert s.scalar(select(func.count(WebhookDelivery.id))) == 1
        s.rollback()  # e.g. the window's transaction failed after the alert was added
    finally:
        s.close()
    assert _deliveries(sessions) == []
    with session_scope(sessions) as s:
        assert s.scalar(select(func.count(Alert.id))) == 0
        _drifted_window(s, 1)
        window = _drifted_window(s, 2)
        opened = open_alert_if_due(
            s, enqueuer=enqueuer_for(settings), spec=DriftSpec(), result=window
        )
        assert opened is not None
        opened_id = opened.id
    rows = _deliveries(sessions)
    assert [(d.alert_id, d.event) for d in rows] == [(opened_id, "alert.opened")]
    assert rows[0].payload["alert"]["detail"].startswith("Acquisition drift at site 'south'")


def test_no_subscription_no_delivery_no_nudge(
    sessions: sessionmaker[Session], settings: Settings
) -> None:
    alert_id = seed_alert(sessions)
    with session_scope(sessions) as s:
        service.resolve(s, alert_id, principal=ALICE, note=None, enqueuer=enqueuer_for(settings))
    assert _deliveries(sessions) == []
    assert _nudges(settings) == []


def test_unreachable_broker_does_not_fail_the_change(
    settings: Settings,
    keys: dict[str, str],
    sessions: sessionmaker[Session],
    caplog: pytest.LogCaptureFixture,
) -> None:
    from services.api.app import create_app

    dead = settings.model_copy(update={"broker_url": f"redis://127.0.0.1:{free_port()}/0"})
    _subscribe(sessions, "warning")
    alert_id = seed_alert(sessions)
    caplog.set_level(logging.WARNING, logger=enqueue.__name__)
    with TestClient(create_app(dead), raise_server_exceptions=False) as api:
        started = time.monotonic()
        resp = api.post(
            f"/v1/alerts/{alert_id}/acknowledge", headers=auth(keys, "clinical_safety_officer")
        )
        elapsed = time.monotonic() - started
    assert resp.status_code == 200, resp.text
    # kombu's own connection retries would hold the answer for about 6 s; the nudge gives up
    # at once on a refused connection (and after CONNECT_TIMEOUT_S on a silent one).
    assert elapsed < 1 + enqueue.CONNECT_TIMEOUT_S
    assert "the next beat sweep will do the work" in caplog.text
    assert [(d.event, d.status) for d in _deliveries(sessions)] == [
        ("alert.acknowledged", DeliveryStatus.PENDING)
    ]
