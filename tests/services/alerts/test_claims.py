"""Claiming outbox rows: exactly ``limit`` rows, never the same row for two claimers (FOR UPDATE
SKIP LOCKED on PostgreSQL), leases that expire, and an attempt number that fences late writers.
The same claim and a whole delivery also run on SQLite, the embedded demo's database."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import delete, func, select, text
from sqlalchemy.orm import Session, sessionmaker

from services.alerts import repository, service
from services.alerts.flows import deliver_due
from services.alerts.webhooks import verify_signature
from services.auth.service import Principal
from services.core.db import make_engine, make_sessionmaker, migrate, session_scope
from services.core.models import DeliveryStatus, Role, WebhookDelivery
from services.core.settings import Settings
from tests.conftest import enqueuer_for
from tests.fixtures.webhooks import Receiver
from tests.services.alerts.conftest import Clock, seed_alert

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
LEASE = NOW + timedelta(seconds=60)


def _seed_deliveries(sessions: sessionmaker[Session], n: int) -> list[int]:
    alert_id = seed_alert(sessions)
    with session_scope(sessions) as s:
        sub = service.create_subscription(
            s, url="http://127.0.0.1:9/x", secret=None, min_severity="warning"
        )
        rows = [
            WebhookDelivery(
                subscription_id=sub.id,
                alert_id=alert_id,
                event="alert.opened",
                payload={"n": i},
                next_attempt_at=NOW - timedelta(seconds=n - i),
            )
            for i in range(n)
        ]
        repository.add_deliveries(s, rows)
        return [r.id for r in rows]


def _claim(s: Session, limit: int, now: datetime = NOW) -> list[int]:
    return [i for i, _ in repository.claim_due(s, now=now, lease_until=LEASE, limit=limit)]


def test_claim_takes_exactly_limit_rows_oldest_first(sessions: sessionmaker[Session]) -> None:
    ids = _seed_deliveries(sessions, 5)
    with session_scope(sessions) as s:
        assert _claim(s, 1) == ids[:1]
    with session_scope(sessions) as s:
        assert _claim(s, 2) == ids[1:3]
        claimed = s.scalar(select(func.count()).where(WebhookDelivery.attempts == 1))
    assert claimed == 3  # nothing claimed beyond the limit


def test_two_concurrent_claimers_never_get_the_same_row(sessions: sessionmaker[Session]) -> None:
    ids = _seed_deliveries(sessions, 20)
    first, second = sessions(), sessions()
    try:
        mine = _claim(first, 5)  # locked, not yet committed
        # Would block on first's locks without SKIP LOCKED; fail fast instead of hanging.
        second.execute(text("SET LOCAL lock_timeout = '2s'"))
        theirs = _claim(second, 5)
        assert len(mine) == len(theirs) == 5
        assert not set(mine) & set(theirs)
        first.commit()
        second.commit()
    finally:
        first.close()
        second.close()
    with session_scope(sessions) as s:
        rest = _claim(s, 100)
    assert sorted(mine + theirs + rest) == ids
    with session_scope(sessions) as s:
        assert _claim(s, 100) == []  # all leased


def test_many_threads_claim_every_row_exactly_once(sessions: sessionmaker[Session]) -> None:
    ids = _seed_deliveries(sessions, 60)
    start = threading.Barrier(6)
    claims: list[list[int]] = [[] for _ in range(6)]

    def worker(k: int) -> None:
        start.wait()
        while True:
            with session_scope(sessions) as s:
                got = _claim(s, 3)
            if not got:
                return
            claims[k].extend(got)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    everything = [i for c in claims for i in c]
    assert sorted(everything) == ids  # every row once: no duplicates, none missed
    assert sum(1 for c in claims if c) >= 2  # the claimers really did run side by side


def test_lease_expires_and_the_attempt_number_fences_a_late_writer(
    sessions: sessionmaker[Session],
) -> None:
    (delivery_id,) = _seed_deliveries(sessions, 1)
    with session_scope(sessions) as s:
        assert repository.claim_due(s, now=NOW, lease_until=LEASE, limit=1) == [(delivery_id, 1)]
    with session_scope(sessions) as s:  # still leased
        assert (
            repository.claim_due(s, now=LEASE - timedelta(seconds=1), lease_until=LEASE, limit=1)
            == []
        )
    later = LEASE + timedelta(seconds=1)
    with session_scope(sessions) as s:  # the first worker died; the lease ran out
        assert repository.claim_due(
            s, now=later, lease_until=later + timedelta(seconds=60), limit=1
        ) == [(delivery_id, 2)]
    done = {"status": DeliveryStatus.DELIVERED, "last_status_code": 200, "last_error": None}
    with session_scope(sessions) as s:
        assert not repository.record_outcome(s, delivery_id, attempt=1, values=done)
        assert repository.record_outcome(s, delivery_id, attempt=2, values=done)


def test_claims_and_deliveries_work_on_sqlite(
    tmp_path: Path, settings: Settings, receiver: Receiver, clock: Clock
) -> None:
    url = f"sqlite:///{tmp_path}/radwatch.db"
    migrate(url)
    engine = make_engine(url)
    try:
        lite = make_sessionmaker(engine)
        cfg = settings.model_copy(update={"database_url": url})
        ids = _seed_deliveries(lite, 3)
        with session_scope(lite) as s:
            assert _claim(s, 1) == ids[:1]
        with session_scope(lite) as s:
            assert _claim(s, 1) == ids[1:2]
            assert s.scalar(select(func.count()).where(WebhookDelivery.attempts == 1)) == 2
            s.execute(delete(WebhookDelivery))  # their fixed lease must not meet the real clock

        with session_scope(lite) as s:
            sub = service.create_subscription(
                s, url=receiver.url, secret="sqlite-secret-" + "z" * 30, min_severity="critical"
            )
            secret = sub.secret
        alert_id = seed_alert(lite, site="south")
        who = Principal(key_id=1, name="alice", role=Role.MLOPS_ENGINEER)
        with session_scope(lite) as s:
            service.resolve(s, alert_id, principal=who, note=None, enqueuer=enqueuer_for(cfg))
        result = deliver_due(lite, settings=cfg, now=clock)
        # Two subscriptions match: the seeding one (a closed port, retried) and the receiver.
        assert (result.attempted, result.delivered, result.retrying) == (2, 1, 1)
        (got,) = receiver.requests
        assert got.json()["alert"]["state"] == "resolved"
        assert got.json()["alert"]["resolved_at"].endswith("+00:00")
        ts = got.headers["X-Radwatch-Timestamp"]
        assert verify_signature(
            secret, got.body, ts, got.headers["X-Radwatch-Signature"], now=int(ts)
        )
    finally:
        engine.dispose()
