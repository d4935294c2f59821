"""deployments.spec and deployments.spec_sha256: the model spec a deployment serves

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04 18:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Existing rows keep NULL: they serve the built-in model, whose spec the code knows.
    with op.batch_alter_table("deployments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("spec", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("spec_sha256", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("deployments", schema=None) as batch_op:
        batch_op.drop_column("spec_sha256")
        batch_op.drop_column("spec")
