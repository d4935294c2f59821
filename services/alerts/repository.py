"""Queries for alert transitions, webhook subscriptions and the delivery outbox."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, func, select, update
from sqlalchemy.orm import Session

from services.core.models import (
    Alert,
    AlertState,
    DeliveryStatus,
    WebhookDelivery,
    WebhookSubscription,
)

#: Subscriptions' ``min_severity`` values that receive an alert of a given severity.
RECEIVERS_OF = {"critical": ("warning", "critical"), "warning": ("warning",)}


# --- alerts -------------------------------------------------------------------------------------


def get_alert(session: Session, alert_id: int, *, fresh: bool = False) -> Alert | None:
    """The alert by id. ``fresh`` re-reads the row even when the session already holds it, which
    is needed after a Core UPDATE (the identity map does not see those)."""
    return session.get(Alert, alert_id, populate_existing=fresh)


def transition(
    session: Session,
    alert_id: int,
    *,
    from_states: Iterable[AlertState],
    values: dict[str, Any],
) -> bool:
    """Move one alert to a new state if, and only if, it is in one of ``from_states``.

    A single conditional UPDATE, so it is atomic: of two concurrent transitions of the same
    alert, PostgreSQL makes the second wait for the first's row lock, re-checks the state after
    the first commits, and updates nothing. Returns whether this call made the change.
    """
    stmt = (
        update(Alert)
        .where(Alert.id == alert_id, Alert.state.in_(list(from_states)))
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    result = cast(CursorResult[Any], session.execute(stmt))
    return result.rowcount == 1


def open_alert(session: Session, *, monitor: str, model_name: str, site: str) -> Alert | None:
    """The alert that blocks a new one for this key: open *or acknowledged*.

    Acknowledged means someone is working on the problem, so it still counts; only a resolved
    alert frees the key. The predicate matches the partial unique index
    ``uq_alerts_one_unresolved``, which enforces the same rule when two workers race.
    """
    stmt = select(Alert).where(
        Alert.monitor == monitor,
        Alert.model_name == model_name,
        Alert.site == site,
        Alert.state != AlertState.RESOLVED,
    )
    return session.scalars(stmt).first()


def add_alert(session: Session, alert: Alert) -> Alert:
    session.add(alert)
    session.flush()
    return alert


def alerts(
    session: Session,
    *,
    model_name: str | None = None,
    site: str | None = None,
    state: AlertState | None = None,
    severity: str | None = None,
    limit: int = 500,
) -> Sequence[Alert]:
    stmt = select(Alert).order_by(Alert.id)
    if model_name:
        stmt = stmt.where(Alert.model_name == model_name)
    if site:
        stmt = stmt.where(Alert.site == site)
    if state:
        stmt = stmt.where(Alert.state == state)
    if severity:
        stmt = stmt.where(Alert.severity == severity)
    return session.scalars(stmt.limit(limit)).all()


def open_alert_counts(session: Session) -> dict[tuple[str, str, str], int]:
    stmt = (
        select(Alert.model_name, Alert.site, Alert.severity, func.count(Alert.id))
        .where(Alert.state == AlertState.OPEN)
        .group_by(Alert.model_name, Alert.site, Alert.severity)
    )
    return {(m, s, sev): int(n) for m, s, sev, n in session.execute(stmt)}


def alert_counts(session: Session) -> dict[tuple[str, str, str, str], int]:
    """Alerts by (model, site, severity, state)."""
    stmt = select(Alert.model_name, Alert.site, Alert.severity, Alert.state, func.count()).group_by(
        Alert.model_name, Alert.site, Alert.severity, Alert.state
    )
    return {(m, s, sev, str(st)): int(n) for m, s, sev, st, n in session.execute(stmt)}


def unresolved(
    session: Session,
    model_name: str,
    *,
    opened_since: datetime | None = None,
    exclude_monitor: str | None = None,
    ids: Sequence[int] | None = None,
) -> Sequence[Alert]:
    """The model's alerts that are not resolved, oldest first; optionally opened since a time,
    without one monitor's, or only the given ids."""
    stmt = select(Alert).where(Alert.model_name == model_name, Alert.state != AlertState.RESOLVED)
    if opened_since is not None:
        stmt = stmt.where(Alert.opened_at >= opened_since)
    if exclude_monitor is not None:
        stmt = stmt.where(Alert.monitor != exclude_monitor)
    if ids is not None:
        stmt = stmt.where(Alert.id.in_(list(ids)))
    return session.scalars(stmt.order_by(Alert.id)).all()


def by_ids(session: Session, ids: Sequence[int]) -> Sequence[Alert]:
    return session.scalars(select(Alert).where(Alert.id.in_(list(ids))).order_by(Alert.id)).all()


# --- subscriptions ------------------------------------------------------------------------------


def add_subscription(session: Session, sub: WebhookSubscription) -> WebhookSubscription:
    session.add(sub)
    session.flush()
    return sub


def get_subscription(session: Session, subscription_id: int) -> WebhookSubscription | None:
    return session.get(WebhookSubscription, subscription_id)


def subscriptions(session: Session, *, include_inactive: bool) -> Sequence[WebhookSubscription]:
    stmt = select(WebhookSubscription).order_by(WebhookSubscription.id)
    if not include_inactive:
        stmt = stmt.where(WebhookSubscription.active.is_(True))
    return session.scalars(stmt).all()


def receivers(session: Session, severity: str) -> Sequence[WebhookSubscription]:
    """Active subscriptions whose ``min_severity`` admits an alert of ``severity``."""
    levels = RECEIVERS_OF.get(severity, ())
    if not levels:
        return []
    stmt = (
        select(WebhookSubscription)
        .where(
            WebhookSubscription.active.is_(True),
            WebhookSubscription.min_severity.in_(levels),
        )
        .order_by(WebhookSubscription.id)
    )
    return session.scalars(stmt).all()


def cancel_pending(session: Session, subscription_id: int, *, reason: str) -> int:
    """Mark the pending deliveries of a subscription failed; returns how many."""
    stmt = (
        update(WebhookDelivery)
        .where(
            WebhookDelivery.subscription_id == subscription_id,
            WebhookDelivery.status == DeliveryStatus.PENDING,
        )
        .values(status=DeliveryStatus.FAILED, last_error=reason)
        .execution_options(synchronize_session=False)
    )
    return cast(CursorResult[Any], session.execute(stmt)).rowcount


# --- deliveries (the outbox) --------------------------------------------------------------------


def add_deliveries(session: Session, rows: Sequence[WebhookDelivery]) -> None:
    session.add_all(rows)
    session.flush()


def deliveries(
    session: Session, *, alert_id: int | None = None, subscription_id: int | None = None
) -> Sequence[WebhookDelivery]:
    stmt = select(WebhookDelivery).order_by(WebhookDelivery.id)
    if alert_id is not None:
        stmt = stmt.where(WebhookDelivery.alert_id == alert_id)
    if subscription_id is not None:
        stmt = stmt.where(WebhookDelivery.subscription_id == subscription_id)
    return session.scalars(stmt).all()


def any_due(session: Session, now: datetime) -> bool:
    """Whether a delivery is waiting. A read, so an idle sweep takes no write lock (on SQLite a
    write lock would stall the API's writers, if only for a moment)."""
    stmt = (
        select(WebhookDelivery.id)
        .where(
            WebhookDelivery.status == DeliveryStatus.PENDING,
            WebhookDelivery.next_attempt_at <= now,
        )
        .limit(1)
    )
    return session.scalar(stmt) is not None


def claim_due(
    session: Session, *, now: datetime, lease_until: datetime, limit: int
) -> list[tuple[int, int]]:
    """Claim up to ``limit`` due deliveries for this worker; returns (id, attempt number) pairs.

    ``WITH picked AS MATERIALIZED (SELECT id ... ORDER BY next_attempt_at LIMIT n FOR UPDATE
    SKIP LOCKED) UPDATE ... WHERE id IN (SELECT id FROM picked) RETURNING id, attempts``. On
    PostgreSQL a concurrent claimer skips the rows this one has locked instead of waiting for
    them, so two workers never claim the same row. The CTE must be MATERIALIZED: written as a
    plain ``IN (subquery)``, the planner may run the subquery once per outer row (nested-loop
    semi join), each rerun skips the row this statement just updated, and ``LIMIT 1`` claims
    every due row (a test pins this).

    Claiming moves ``next_attempt_at`` to ``lease_until``, so once this transaction commits the
    row is not due again until the lease runs out (a worker that dies mid-send is retried then),
    and increments ``attempts``, which the outcome's write checks (a fencing token: a worker
    whose lease ran out cannot overwrite the next attempt's outcome). SQLite renders no FOR
    UPDATE, but it has a single writer and the outer WHERE re-checks that the row is still due,
    so the claim is just as exclusive there.
    """
    due = (
        WebhookDelivery.status == DeliveryStatus.PENDING,
        WebhookDelivery.next_attempt_at <= now,
    )
    picked = (
        select(WebhookDelivery.id)
        .where(*due)
        .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .cte("picked")
        .prefix_with("MATERIALIZED", dialect="postgresql")
    )
    stmt = (
        update(WebhookDelivery)
        .where(WebhookDelivery.id.in_(select(picked.c.id)), *due)
        .values(attempts=WebhookDelivery.attempts + 1, next_attempt_at=lease_until)
        .returning(WebhookDelivery.id, WebhookDelivery.attempts)
        .execution_options(synchronize_session=False)
    )
    return sorted((int(i), int(a)) for i, a in session.execute(stmt))


def record_outcome(
    session: Session, delivery_id: int, *, attempt: int, values: dict[str, Any]
) -> bool:
    """Write an attempt's outcome if the row is still this attempt's (see :func:`claim_due`)."""
    stmt = (
        update(WebhookDelivery)
        .where(
            WebhookDelivery.id == delivery_id,
            WebhookDelivery.attempts == attempt,
            WebhookDelivery.status == DeliveryStatus.PENDING,
        )
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return cast(CursorResult[Any], session.execute(stmt)).rowcount == 1


def delivery_with_subscription(
    session: Session, delivery_id: int
) -> tuple[WebhookDelivery, WebhookSubscription] | None:
    stmt = (
        select(WebhookDelivery, WebhookSubscription)
        .join(WebhookSubscription, WebhookSubscription.id == WebhookDelivery.subscription_id)
        .where(WebhookDelivery.id == delivery_id)
    )
    row = session.execute(stmt).first()
    return None if row is None else (row[0], row[1])
