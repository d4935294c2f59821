"""Alerts and the webhook outbox that announces them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Enum,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from services.core.models.base import (
    AlertState,
    Base,
    BigIntPK,
    DeliveryStatus,
    _enum_values,
    utcnow,
)


class Alert(Base):
    """An alert and its lifecycle: open -> acknowledged -> resolved (open -> resolved is allowed;
    nothing goes backwards).

    At most one *unresolved* alert per (monitor, model, site): a partial unique index enforces the
    de-duplication even when two workers race. An acknowledged alert still holds the key, because
    acknowledged means someone is working on the problem; a new alert for the same key would be a
    duplicate page. Only resolving frees the key, so a problem that comes back after it was
    resolved opens a fresh alert.
    """

    __tablename__ = "alerts"
    __table_args__ = (
        Index(
            "uq_alerts_one_unresolved",
            "monitor",
            "model_name",
            "site",
            unique=True,
            postgresql_where=text("state <> 'resolved'"),
            sqlite_where=text("state <> 'resolved'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    monitor: Mapped[str] = mapped_column(String(64))
    model_name: Mapped[str] = mapped_column(String(128))
    site: Mapped[str] = mapped_column(String(64))
    state: Mapped[AlertState] = mapped_column(
        Enum(AlertState, native_enum=False, length=16, values_callable=_enum_values),
        default=AlertState.OPEN,
    )
    severity: Mapped[str] = mapped_column(String(16))
    detail: Mapped[str] = mapped_column(Text)
    result_id: Mapped[int] = mapped_column(ForeignKey("monitor_results.id"))
    opened_after_predictions: Mapped[int] = mapped_column(BigInteger)
    opened_at: Mapped[datetime] = mapped_column(default=utcnow)
    #: Who acknowledged or resolved it: the API key's name (as shown in ``radwatch keys list``)
    #: and id. The name is copied so the record survives a key being renamed or revoked.
    acknowledged_at: Mapped[datetime | None] = mapped_column(default=None)
    acknowledged_by: Mapped[str | None] = mapped_column(String(128), default=None)
    acknowledged_by_key_id: Mapped[int | None] = mapped_column(BigInteger, default=None)
    acknowledged_note: Mapped[str | None] = mapped_column(Text, default=None)
    resolved_at: Mapped[datetime | None] = mapped_column(default=None)
    resolved_by: Mapped[str | None] = mapped_column(String(128), default=None)
    resolved_by_key_id: Mapped[int | None] = mapped_column(BigInteger, default=None)
    resolved_note: Mapped[str | None] = mapped_column(Text, default=None)


class WebhookSubscription(Base):
    """A receiver of alert events. The secret is stored in clear because it is the HMAC key that
    signs every delivery (a hash could not sign); it is shown once, when the subscription is
    created, and never returned by the API again."""

    __tablename__ = "webhook_subscriptions"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    url: Mapped[str] = mapped_column(String(2048))
    secret: Mapped[str] = mapped_column(String(256))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    #: ``warning`` receives warning and critical alerts, ``critical`` only critical ones.
    min_severity: Mapped[str] = mapped_column(String(16), default="warning")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookDelivery(Base):
    """One event for one subscription: the outbox row.

    It is written in the same transaction as the alert change, so an event is never announced for
    a change that rolled back, and never lost for one that committed. A worker claims due rows
    (``status = 'pending' AND next_attempt_at <= now``), sends them, and records the outcome;
    ``attempts`` doubles as the claim's fencing token. The partial index holds only pending rows,
    so the sweep stays cheap however many delivered rows pile up.
    """

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index(
            "ix_webhook_deliveries_due",
            "next_attempt_at",
            postgresql_where=text("status = 'pending'"),
            sqlite_where=text("status = 'pending'"),
        ),
        Index("ix_webhook_deliveries_alert", "alert_id"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    subscription_id: Mapped[int] = mapped_column(ForeignKey("webhook_subscriptions.id"))
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id"))
    event: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[DeliveryStatus] = mapped_column(
        Enum(DeliveryStatus, native_enum=False, length=16, values_callable=_enum_values),
        default=DeliveryStatus.PENDING,
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_status_code: Mapped[int | None] = mapped_column(Integer, default=None)
    #: Short and secret-free: an HTTP status or an exception class name, never a response body.
    last_error: Mapped[str | None] = mapped_column(String(200), default=None)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
