"""Alert lifecycle and webhook subscriptions.

**Lifecycle.** open -> acknowledged -> resolved, or open -> resolved; nothing goes backwards.
Acknowledging says "someone is on it": the alert keeps blocking a new alert for the same
(monitor, model, site), so the monitor does not page again for a problem being worked on. Only
resolving frees that key, and a problem that persists or comes back afterwards opens a new alert.
Each transition is one conditional UPDATE (``WHERE state IN (...)``), so of two concurrent
resolves exactly one succeeds and the other gets a 409.

**One owner.** Every alert is opened by :func:`open`, whoever decides it is due (a monitor's
policy, an automatic rollback): it writes the row, the webhook outbox rows and the audit record
in the caller's transaction, so no alert can be stored without being announced and audited.

**Outbox.** Every change (opened, acknowledged, resolved) writes one delivery row per matching
active subscription in the caller's transaction: if the change rolls back, so do its deliveries.
Services never commit; the edge does, and a worker is nudged after that commit
(:mod:`services.alerts.dispatch`).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from services.alerts import dispatch, repository, webhooks
from services.audit import actions
from services.audit import service as audit
from services.auth.service import Principal
from services.core.errors import ConflictError, NotFoundError
from services.core.models import (
    Alert,
    AlertState,
    DeliveryStatus,
    WebhookDelivery,
    WebhookSubscription,
    utcnow,
)
from services.core.ports import Enqueuer

log = logging.getLogger(__name__)

EVENT_OPENED = "alert.opened"
EVENT_ACKNOWLEDGED = "alert.acknowledged"
EVENT_RESOLVED = "alert.resolved"


# --- alerts -------------------------------------------------------------------------------------


def get_alert(session: Session, alert_id: int) -> Alert:
    alert = repository.get_alert(session, alert_id)
    if alert is None:
        raise NotFoundError(
            f"No alert with id {alert_id}; list alerts with GET /v1/alerts.",
            details={"alert_id": alert_id},
        )
    return alert


def open(
    session: Session,
    *,
    enqueuer: Enqueuer,
    monitor: str,
    model_name: str,
    site: str,
    severity: str,
    detail: str,
    result_id: int,
    opened_after_predictions: int,
    actor: str,
    reason: str | None = None,
    context: Mapping[str, Any] | None = None,
) -> Alert | None:
    """Open an alert: the row, its webhook outbox rows and its ``alert.opened`` audit record, all
    in the caller's transaction. Returns None when an unresolved alert already holds the key
    (monitor, model, site): at most one per key, also when two workers race (the partial unique
    index refuses the second; its savepoint rolls back alone). ``context`` is added to the audit
    payload (e.g. the window that fired)."""
    if repository.open_alert(session, monitor=monitor, model_name=model_name, site=site):
        return None
    try:
        with session.begin_nested():
            alert = repository.add_alert(
                session,
                Alert(
                    monitor=monitor,
                    model_name=model_name,
                    site=site,
                    severity=severity,
                    detail=detail,
                    result_id=result_id,
                    opened_after_predictions=opened_after_predictions,
                ),
            )
            _record_event(session, alert, EVENT_OPENED, enqueuer=enqueuer)
            audit.record(
                session,
                actor=actor,
                action=actions.ALERT_OPENED,
                entity_type=actions.ALERT,
                entity_id=alert.id,
                reason=reason,
                payload={
                    "monitor": monitor,
                    "model": model_name,
                    "site": site,
                    "severity": severity,
                    **dict(context or {}),
                },
            )
    except IntegrityError:
        return None
    log.info(
        "alert opened: monitor=%s model=%s site=%s severity=%s", monitor, model_name, site, severity
    )
    return alert


def acknowledge(
    session: Session,
    alert_id: int,
    *,
    principal: Principal,
    note: str | None,
    enqueuer: Enqueuer,
    now: datetime | None = None,
) -> Alert:
    """open -> acknowledged. 404 for an unknown id, 409 if it is not open."""
    changed = repository.transition(
        session,
        alert_id,
        from_states=[AlertState.OPEN],
        values={
            "state": AlertState.ACKNOWLEDGED,
            "acknowledged_at": now or utcnow(),
            "acknowledged_by": principal.name,
            "acknowledged_by_key_id": principal.key_id,
            "acknowledged_note": note,
        },
    )
    alert = _after_transition(session, alert_id, changed, EVENT_ACKNOWLEDGED, enqueuer=enqueuer)
    _audit(session, alert, actions.ALERT_ACKNOWLEDGED, principal=principal, note=note)
    return alert


def resolve(
    session: Session,
    alert_id: int,
    *,
    principal: Principal,
    note: str | None,
    enqueuer: Enqueuer,
    now: datetime | None = None,
) -> Alert:
    """open or acknowledged -> resolved. 404 for an unknown id, 409 if already resolved."""
    changed = repository.transition(
        session,
        alert_id,
        from_states=[AlertState.OPEN, AlertState.ACKNOWLEDGED],
        values={
            "state": AlertState.RESOLVED,
            "resolved_at": now or utcnow(),
            "resolved_by": principal.name,
            "resolved_by_key_id": principal.key_id,
            "resolved_note": note,
        },
    )
    alert = _after_transition(session, alert_id, changed, EVENT_RESOLVED, enqueuer=enqueuer)
    _audit(session, alert, actions.ALERT_RESOLVED, principal=principal, note=note)
    return alert


def _after_transition(
    session: Session, alert_id: int, changed: bool, event: str, *, enqueuer: Enqueuer
) -> Alert:
    # Re-read: the UPDATE bypassed the identity map. After a refused transition, READ COMMITTED
    # shows the state the winning transaction committed, which the 409 message reports.
    alert = repository.get_alert(session, alert_id, fresh=True)
    if alert is None:
        raise NotFoundError(
            f"No alert with id {alert_id}; list alerts with GET /v1/alerts.",
            details={"alert_id": alert_id},
        )
    if not changed:
        raise _conflict(alert, event)
    _record_event(session, alert, event, enqueuer=enqueuer)
    return alert


def _audit(
    session: Session, alert: Alert, action: str, *, principal: Principal, note: str | None
) -> None:
    """The audit record of a person's transition, last in the transaction (the audit lock is
    held until commit). The note is the stated reason."""
    audit.record(
        session,
        actor=principal.name,
        action=action,
        entity_type=actions.ALERT,
        entity_id=alert.id,
        reason=note,
        payload={
            "key_id": principal.key_id,
            "role": principal.role,
            "state": alert.state,
            "monitor": alert.monitor,
            "model": alert.model_name,
            "site": alert.site,
            "severity": alert.severity,
        },
    )


def _by_at(who: str | None, when: datetime | None) -> str:
    """The 'by NAME at TIME' part of a message, without what was not recorded (alerts resolved
    before migration 0003 have no name or time)."""
    return (f" by {who}" if who else "") + (f" at {webhooks.iso_utc(when)}" if when else "")


def _conflict(alert: Alert, event: str) -> ConflictError:
    details: dict[str, Any] = {"alert_id": alert.id, "state": str(alert.state)}
    if alert.state == AlertState.RESOLVED:
        action = "acknowledged" if event == EVENT_ACKNOWLEDGED else "resolved again"
        return ConflictError(
            f"Alert {alert.id} was already resolved{_by_at(alert.resolved_by, alert.resolved_at)}"
            f"; a resolved alert cannot be {action}. If the problem is back, the monitor opens a "
            "new alert.",
            details=details,
        )
    # Only "acknowledge an acknowledged alert" is left.
    return ConflictError(
        f"Alert {alert.id} was already acknowledged"
        f"{_by_at(alert.acknowledged_by, alert.acknowledged_at)}; resolve it with "
        f"POST /v1/alerts/{alert.id}/resolve when the problem is fixed.",
        details=details,
    )


def _record_event(session: Session, alert: Alert, event: str, *, enqueuer: Enqueuer) -> int:
    """Write the outbox rows of one alert event and nudge a worker after the commit."""
    targets = repository.receivers(session, alert.severity)
    if not targets:
        return 0
    body = webhooks.payload(event, alert)
    now = utcnow()
    repository.add_deliveries(
        session,
        [
            WebhookDelivery(
                subscription_id=sub.id,
                alert_id=alert.id,
                event=event,
                payload=body,
                status=DeliveryStatus.PENDING,
                attempts=0,
                next_attempt_at=now,
                created_at=now,
            )
            for sub in targets
        ],
    )
    dispatch.nudge_after_commit(session, enqueuer)
    return len(targets)


# --- subscriptions ------------------------------------------------------------------------------


def new_secret() -> str:
    """A 256-bit signing secret, hex-encoded."""
    return f"whsec_{secrets.token_hex(32)}"


def create_subscription(
    session: Session, *, url: str, secret: str | None, min_severity: str
) -> WebhookSubscription:
    """Store a subscription. The returned object carries the secret, to be shown once."""
    return repository.add_subscription(
        session,
        WebhookSubscription(
            url=url, secret=secret or new_secret(), active=True, min_severity=min_severity
        ),
    )


def list_subscriptions(
    session: Session, *, include_inactive: bool = False
) -> Sequence[WebhookSubscription]:
    return repository.subscriptions(session, include_inactive=include_inactive)


def deactivate_subscription(session: Session, subscription_id: int) -> WebhookSubscription:
    """Stop sending to a subscription and drop its pending deliveries (marked failed, with the
    reason). Idempotent. The row is kept so past deliveries still name their subscription."""
    sub = repository.get_subscription(session, subscription_id)
    if sub is None:
        raise NotFoundError(
            f"No webhook subscription with id {subscription_id}; list them with GET /v1/webhooks.",
            details={"subscription_id": subscription_id},
        )
    if sub.active:
        sub.active = False
        session.flush()
        repository.cancel_pending(session, subscription_id, reason="unsubscribed")
    return sub
