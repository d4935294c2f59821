"""Sending the outbox to a real HTTP receiver: signatures, retries with backoff on a controllable
clock, giving up, timeouts and refused connections, and what reaches the logs."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from services.alerts import service, webhooks
from services.alerts.flows import deliver_due
from services.alerts.webhooks import verify_signature
from services.auth.service import Principal
from services.core.db import session_scope
from services.core.models import DeliveryStatus, Role, WebhookDelivery
from services.core.processes import free_port
from services.core.settings import Settings
from tests.conftest import enqueuer_for
from tests.fixtures.webhooks import Receiver
from tests.services.alerts.conftest import Clock, seed_alert

ALICE = Principal(key_id=1, name="alice", role=Role.MLOPS_ENGINEER)
SECRET = "s3cret-" + "k" * 40


def _subscribe(sessions: sessionmaker[Session], url: str, secret: str = SECRET) -> int:
    with session_scope(sessions) as s:
        return service.create_subscription(s, url=url, secret=secret, min_severity="warning").id


def _acknowledge(sessions: sessionmaker[Session], settings: Settings) -> int:
    alert_id = seed_alert(sessions)
    with session_scope(sessions) as s:
        service.acknowledge(
            s, alert_id, principal=ALICE, note=None, enqueuer=enqueuer_for(settings)
        )
    return alert_id


def _delivery(sessions: sessionmaker[Session]) -> WebhookDelivery:
    with session_scope(sessions) as s:
        rows = s.scalars(select(WebhookDelivery)).all()
        assert len(rows) == 1
        return rows[0]


def test_delivery_is_signed_and_verifies_only_with_its_secret(
    sessions: sessionmaker[Session], settings: Settings, receiver: Receiver, clock: Clock
) -> None:
    _subscribe(sessions, receiver.url)
    alert_id = _acknowledge(sessions, settings)

    result = deliver_due(sessions, settings=settings, now=clock)
    assert (result.attempted, result.delivered) == (1, 1)
    assert len(receiver.requests) == 1
    got = receiver.requests[0]
    row = _delivery(sessions)
    assert got.path == "/hooks/radwatch"
    assert got.headers["X-Radwatch-Event"] == "alert.acknowledged"
    assert got.headers["X-Radwatch-Delivery"] == str(row.id)
    assert got.headers["Content-Type"] == "application/json"
    ts = got.headers["X-Radwatch-Timestamp"]
    assert int(ts) == int(clock().timestamp())
    sig = got.headers["X-Radwatch-Signature"]
    assert sig.startswith("sha256=")
    assert got.json() == row.payload
    assert got.json()["alert"]["id"] == alert_id

    now = float(ts)
    assert verify_signature(SECRET, got.body, ts, sig, now=now)
    assert not verify_signature("another-secret-" + "x" * 40, got.body, ts, sig, now=now)
    assert not verify_signature(SECRET, got.body.replace(b"north", b"south"), ts, sig, now=now)
    assert not verify_signature(SECRET, got.body, str(int(ts) + 1), sig, now=now)
    assert verify_signature(SECRET, got.body, ts, sig, now=now + 300)
    assert not verify_signature(SECRET, got.body, ts, sig, now=now + 301)  # a replay
    assert not verify_signature(SECRET, got.body, ts, sig, now=now - 301)
    assert not verify_signature(SECRET, got.body, "12ab", sig, now=now)

    assert row.status == DeliveryStatus.DELIVERED
    assert (row.attempts, row.last_status_code, row.last_error) == (1, 200, None)
    assert row.delivered_at is not None
    assert deliver_due(sessions, settings=settings, now=clock).attempted == 0  # sent once


def test_failures_are_retried_with_backoff_then_delivered(
    sessions: sessionmaker[Session], settings: Settings, receiver: Receiver, clock: Clock
) -> None:
    receiver.fail_first = 2
    _subscribe(sessions, receiver.url)
    _acknowledge(sessions, settings)
    t0 = clock()

    assert deliver_due(sessions, settings=settings, now=clock).retrying == 1
    row = _delivery(sessions)
    assert (row.status, row.attempts, row.last_status_code) == (DeliveryStatus.PENDING, 1, 500)
    assert row.last_error == "HTTP 500"
    assert row.next_attempt_at == t0 + timedelta(seconds=10)

    clock.advance(9)
    assert deliver_due(sessions, settings=settings, now=clock).attempted == 0  # not due yet
    clock.advance(1)
    assert deliver_due(sessions, settings=settings, now=clock).retrying == 1
    row = _delivery(sessions)
    assert row.attempts == 2
    assert row.next_attempt_at == clock() + timedelta(seconds=30)

    clock.advance(29)
    assert deliver_due(sessions, settings=settings, now=clock).attempted == 0
    clock.advance(1)
    assert deliver_due(sessions, settings=settings, now=clock).delivered == 1
    row = _delivery(sessions)
    assert (row.status, row.attempts, row.last_status_code, row.last_error) == (
        DeliveryStatus.DELIVERED,
        3,
        200,
        None,
    )
    # Every retry is the same delivery: same id, same body, a fresh timestamp and signature.
    assert [r.headers["X-Radwatch-Delivery"] for r in receiver.requests] == [str(row.id)] * 3
    assert len({r.body for r in receiver.requests}) == 1
    assert len({r.headers["X-Radwatch-Timestamp"] for r in receiver.requests}) == 3
    for r in receiver.requests:
        ts = r.headers["X-Radwatch-Timestamp"]
        assert verify_signature(SECRET, r.body, ts, r.headers["X-Radwatch-Signature"], now=int(ts))


def test_backoff_schedule_grows_by_three_and_is_capped(settings: Settings) -> None:
    delays = [webhooks.backoff_s(n, settings) for n in range(1, 9)]
    assert delays == [10, 30, 90, 270, 810, 2430, 3600, 3600]


def test_gives_up_after_max_attempts(
    sessions: sessionmaker[Session], settings: Settings, receiver: Receiver, clock: Clock
) -> None:
    cfg = settings.model_copy(update={"webhook_max_attempts": 3})
    receiver.fail_first = 100
    receiver.fail_status = 503
    _subscribe(sessions, receiver.url)
    _acknowledge(sessions, cfg)

    assert deliver_due(sessions, settings=cfg, now=clock).retrying == 1
    clock.advance(10)
    assert deliver_due(sessions, settings=cfg, now=clock).retrying == 1
    clock.advance(30)
    assert deliver_due(sessions, settings=cfg, now=clock).failed == 1
    row = _delivery(sessions)
    assert (row.status, row.attempts, row.last_status_code, row.last_error) == (
        DeliveryStatus.FAILED,
        3,
        503,
        "HTTP 503",
    )
    assert row.delivered_at is None
    clock.advance(86400)
    assert deliver_due(sessions, settings=cfg, now=clock).attempted == 0
    assert len(receiver.requests) == 3


def test_timeouts_and_refused_connections_are_retried(
    sessions: sessionmaker[Session], settings: Settings, receiver: Receiver, clock: Clock
) -> None:
    cfg = settings.model_copy(update={"webhook_timeout_s": 0.2})
    receiver.delay_s = 5  # answers long after the timeout (released when the test ends)
    _subscribe(sessions, receiver.url)
    _subscribe(sessions, f"http://127.0.0.1:{free_port()}/nobody-listens")
    _acknowledge(sessions, cfg)

    result = deliver_due(sessions, settings=cfg, now=clock)
    assert (result.attempted, result.retrying) == (2, 2)
    with session_scope(sessions) as s:
        rows = s.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)).all()
    assert [r.last_error for r in rows] == [
        "timeout (ReadTimeout)",
        "connection error (ConnectError)",
    ]
    assert all(r.status == DeliveryStatus.PENDING and r.last_status_code is None for r in rows)
    assert all(r.next_attempt_at == clock() + timedelta(seconds=10) for r in rows)
    assert len(receiver.requests) == 1  # the slow receiver did get the request


def test_deactivated_subscription_gets_nothing_more(
    sessions: sessionmaker[Session], settings: Settings, receiver: Receiver, clock: Clock
) -> None:
    sub_id = _subscribe(sessions, receiver.url)
    _acknowledge(sessions, settings)
    with session_scope(sessions) as s:
        service.deactivate_subscription(s, sub_id)
    row = _delivery(sessions)
    assert (row.status, row.last_error) == (DeliveryStatus.FAILED, "unsubscribed")
    assert deliver_due(sessions, settings=settings, now=clock).attempted == 0
    assert receiver.requests == []
    # And later changes no longer write deliveries for it.
    other = seed_alert(sessions, site="south")
    with session_scope(sessions) as s:
        service.resolve(s, other, principal=ALICE, note=None, enqueuer=enqueuer_for(settings))
        assert len(s.scalars(select(WebhookDelivery)).all()) == 1


def test_every_attempt_is_logged_without_secret_or_url_path(
    sessions: sessionmaker[Session],
    settings: Settings,
    receiver: Receiver,
    clock: Clock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    receiver.fail_first = 1
    _subscribe(sessions, receiver.url)
    _acknowledge(sessions, settings)
    deliver_due(sessions, settings=settings, now=clock)
    clock.advance(10)
    deliver_due(sessions, settings=settings, now=clock)

    ours = [r for r in caplog.records if r.name.startswith("services.alerts")]
    messages = [r.getMessage() for r in ours]
    host = receiver.url.rsplit("/hooks", 1)[0]
    assert len(messages) == 2, messages
    assert f"attempt 1/8 to {host}: HTTP 500; retrying in 10 s" in messages[0]
    assert f"attempt 2/8 to {host}: delivered, HTTP 200" in messages[1]
    assert [r.levelno for r in ours] == [logging.WARNING, logging.INFO]
    assert not any("/hooks/radwatch" in m for m in messages)
    assert SECRET not in caplog.text  # no logger at all, httpx's included
    signatures = {r.headers["X-Radwatch-Signature"] for r in receiver.requests}
    assert not any(sig in caplog.text for sig in signatures)
