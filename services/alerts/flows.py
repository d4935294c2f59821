"""The webhook delivery sweep: a flow that owns its short transactions (one to claim each
delivery, one to record its outcome), so no transaction stays open during an HTTP call. See
:mod:`services.alerts.webhooks` for what a receiver gets and the guarantees."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy.orm import Session, sessionmaker

from services.alerts import repository
from services.alerts.webhooks import Clock, backoff_s, encode, lease_s, post, target
from services.core.db import session_scope
from services.core.models import DeliveryStatus, utcnow
from services.core.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class SweepResult:
    attempted: int = 0
    delivered: int = 0
    retrying: int = 0
    failed: int = 0


def deliver_due(
    sessions: sessionmaker[Session],
    *,
    settings: Settings,
    now: Clock = utcnow,
    client: httpx.Client | None = None,
    max_deliveries: int = 100,
    budget_s: float = 30.0,
) -> SweepResult:
    """Send every due delivery, one at a time, until none is due, ``max_deliveries`` were tried or
    ``budget_s`` (wall clock) is spent; the next sweep continues from there.

    Each delivery is claimed in its own short transaction and its outcome recorded in another,
    so no transaction stays open during an HTTP call. ``now`` is the clock for timestamps,
    scheduling and signatures (tests pass a controllable one).
    """
    result = SweepResult()
    with session_scope(sessions) as session:
        if not repository.any_due(session, now()):
            return result
    own_client = client is None
    http = client or httpx.Client(timeout=settings.webhook_timeout_s, follow_redirects=False)
    started = time.monotonic()
    try:
        while result.attempted < max_deliveries and time.monotonic() - started < budget_s:
            with session_scope(sessions) as session:
                claimed = repository.claim_due(
                    session,
                    now=now(),
                    lease_until=now() + timedelta(seconds=lease_s(settings)),
                    limit=1,
                )
            if not claimed:
                break
            for delivery_id, attempt in claimed:
                result.attempted += 1
                outcome = _deliver_one(sessions, http, settings, now, delivery_id, attempt)
                setattr(result, outcome, getattr(result, outcome) + 1)
    finally:
        if own_client:
            http.close()
    return result


def _deliver_one(
    sessions: sessionmaker[Session],
    http: httpx.Client,
    settings: Settings,
    now: Clock,
    delivery_id: int,
    attempt: int,
) -> str:
    """Send one claimed delivery and record the outcome; returns the SweepResult field to count."""
    with session_scope(sessions) as session:
        found = repository.delivery_with_subscription(session, delivery_id)
        assert found is not None, "a claimed delivery cannot vanish: rows are never deleted"
        delivery, sub = found
        event, alert_id, url, secret, active = (
            delivery.event,
            delivery.alert_id,
            sub.url,
            sub.secret,
            sub.active,
        )
        raw = encode(delivery.payload)
    where = target(url)
    if not active:
        _record(sessions, delivery_id, attempt, status=DeliveryStatus.FAILED, error="unsubscribed")
        log.info("webhook delivery %d dropped: subscription deactivated", delivery_id)
        return "failed"

    ts = int(now().timestamp())
    sent = post(http, url=url, secret=secret, event=event, delivery_id=delivery_id, raw=raw, ts=ts)
    max_attempts = settings.webhook_max_attempts
    if sent.ok:
        _record(
            sessions,
            delivery_id,
            attempt,
            status=DeliveryStatus.DELIVERED,
            code=sent.status_code,
            delivered_at=now(),
        )
        log.info(
            "webhook delivery %d (%s, alert %d) attempt %d/%d to %s: delivered, HTTP %s",
            delivery_id,
            event,
            alert_id,
            attempt,
            max_attempts,
            where,
            sent.status_code,
        )
        return "delivered"
    if attempt >= max_attempts:
        _record(
            sessions,
            delivery_id,
            attempt,
            status=DeliveryStatus.FAILED,
            code=sent.status_code,
            error=sent.error,
        )
        log.warning(
            "webhook delivery %d (%s, alert %d) attempt %d/%d to %s: %s; giving up",
            delivery_id,
            event,
            alert_id,
            attempt,
            max_attempts,
            where,
            sent.error,
        )
        return "failed"
    wait = backoff_s(attempt, settings)
    _record(
        sessions,
        delivery_id,
        attempt,
        status=DeliveryStatus.PENDING,
        code=sent.status_code,
        error=sent.error,
        next_attempt_at=now() + timedelta(seconds=wait),
    )
    log.warning(
        "webhook delivery %d (%s, alert %d) attempt %d/%d to %s: %s; retrying in %.0f s",
        delivery_id,
        event,
        alert_id,
        attempt,
        max_attempts,
        where,
        sent.error,
        wait,
    )
    return "retrying"


def _record(
    sessions: sessionmaker[Session],
    delivery_id: int,
    attempt: int,
    *,
    status: DeliveryStatus,
    code: int | None = None,
    error: str | None = None,
    delivered_at: datetime | None = None,
    next_attempt_at: datetime | None = None,
) -> None:
    values: dict[str, Any] = {"status": status, "last_status_code": code, "last_error": error}
    if delivered_at is not None:
        values["delivered_at"] = delivered_at
    if next_attempt_at is not None:
        values["next_attempt_at"] = next_attempt_at
    with session_scope(sessions) as session:
        if not repository.record_outcome(session, delivery_id, attempt=attempt, values=values):
            # The lease ran out and another worker took the row over; its outcome stands.
            log.warning(
                "webhook delivery %d attempt %d: outcome not recorded, the row moved on",
                delivery_id,
                attempt,
            )
