"""alert lifecycle and outgoing webhooks

Adds who/when/note columns for acknowledging and resolving alerts, widens the de-duplication
index from "one open alert per key" to "one unresolved alert per key" (an acknowledged alert
still blocks a new one), and adds the webhook subscriptions and the delivery outbox.

Before this revision nothing could set an alert to ``acknowledged``, so existing rows satisfy
the wider index; a database edited by hand to hold an acknowledged and an open alert for the
same key makes the upgrade stop with a unique violation rather than guess which one to keep.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 14:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_BIGINT_PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_OLD_WHERE = sa.text("state = 'open'")
_NEW_WHERE = sa.text("state <> 'resolved'")
_PENDING = sa.text("status = 'pending'")


def upgrade() -> None:
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("acknowledged_at", sa.DateTime(timezone=True)))
        batch_op.add_column(sa.Column("acknowledged_by", sa.String(length=128)))
        batch_op.add_column(sa.Column("acknowledged_by_key_id", sa.BigInteger()))
        batch_op.add_column(sa.Column("acknowledged_note", sa.Text()))
        batch_op.add_column(sa.Column("resolved_at", sa.DateTime(timezone=True)))
        batch_op.add_column(sa.Column("resolved_by", sa.String(length=128)))
        batch_op.add_column(sa.Column("resolved_by_key_id", sa.BigInteger()))
        batch_op.add_column(sa.Column("resolved_note", sa.Text()))
        batch_op.drop_index(
            "uq_alerts_one_open", postgresql_where=_OLD_WHERE, sqlite_where=_OLD_WHERE
        )
        batch_op.create_index(
            "uq_alerts_one_unresolved",
            ["monitor", "model_name", "site"],
            unique=True,
            postgresql_where=_NEW_WHERE,
            sqlite_where=_NEW_WHERE,
        )

    op.create_table(
        "webhook_subscriptions",
        sa.Column("id", _BIGINT_PK, autoincrement=True, nullable=False),
        sa.Column("url", sa.String(length=2048), nullable=False),
        sa.Column("secret", sa.String(length=256), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("min_severity", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", _BIGINT_PK, autoincrement=True, nullable=False),
        sa.Column("subscription_id", _BIGINT_PK, nullable=False),
        sa.Column("alert_id", _BIGINT_PK, nullable=False),
        sa.Column("event", sa.String(length=32), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "pending",
                "delivered",
                "failed",
                name="deliverystatus",
                native_enum=False,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.String(length=200), nullable=True),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["subscription_id"], ["webhook_subscriptions.id"]),
        sa.ForeignKeyConstraint(["alert_id"], ["alerts.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_webhook_deliveries_due",
        "webhook_deliveries",
        ["next_attempt_at"],
        unique=False,
        postgresql_where=_PENDING,
        sqlite_where=_PENDING,
    )
    op.create_index("ix_webhook_deliveries_alert", "webhook_deliveries", ["alert_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_webhook_deliveries_alert", table_name="webhook_deliveries")
    op.drop_index(
        "ix_webhook_deliveries_due",
        table_name="webhook_deliveries",
        postgresql_where=_PENDING,
        sqlite_where=_PENDING,
    )
    op.drop_table("webhook_deliveries")
    op.drop_table("webhook_subscriptions")
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_alerts_one_unresolved", postgresql_where=_NEW_WHERE, sqlite_where=_NEW_WHERE
        )
        # The narrower index of 0002 holds whenever the wider one did.
        batch_op.create_index(
            "uq_alerts_one_open",
            ["monitor", "model_name", "site"],
            unique=True,
            postgresql_where=_OLD_WHERE,
            sqlite_where=_OLD_WHERE,
        )
        for column in (
            "resolved_note",
            "resolved_by_key_id",
            "resolved_by",
            "resolved_at",
            "acknowledged_note",
            "acknowledged_by_key_id",
            "acknowledged_by",
            "acknowledged_at",
        ):
            batch_op.drop_column(column)
