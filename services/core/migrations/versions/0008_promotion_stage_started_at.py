"""promotions.stage_started_at

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30 14:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Existing rows get their start time: a promotion in flight restarts its stage clock from
    # its start, which only lengthens, never shortens, its wait.
    with op.batch_alter_table("promotions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("stage_started_at", sa.DateTime(timezone=True), nullable=True)
        )
    op.execute("UPDATE promotions SET stage_started_at = started_at")
    with op.batch_alter_table("promotions", schema=None) as batch_op:
        batch_op.alter_column(
            "stage_started_at", existing_type=sa.DateTime(timezone=True), nullable=False
        )


def downgrade() -> None:
    with op.batch_alter_table("promotions", schema=None) as batch_op:
        batch_op.drop_column("stage_started_at")
