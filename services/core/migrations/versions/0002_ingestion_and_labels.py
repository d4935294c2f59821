"""batch ingestion and late labels

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 11:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_BIGINT_PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("deployments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("embedding_dim", sa.Integer(), nullable=True))
    with op.batch_alter_table("prediction_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "ground_truth_labels",
        sa.Column("id", _BIGINT_PK, autoincrement=True, nullable=False),
        sa.Column("study_pid", sa.String(length=32), nullable=False),
        sa.Column("finding", sa.String(length=64), nullable=False),
        sa.Column("label", sa.Boolean(), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("reported_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("study_pid", "finding", "source", "reported_at"),
    )
    op.create_index(
        "ix_labels_study_finding", "ground_truth_labels", ["study_pid", "finding"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_labels_study_finding", table_name="ground_truth_labels")
    op.drop_table("ground_truth_labels")
    with op.batch_alter_table("prediction_events", schema=None) as batch_op:
        batch_op.drop_column("occurred_at")
    with op.batch_alter_table("deployments", schema=None) as batch_op:
        batch_op.drop_column("embedding_dim")
