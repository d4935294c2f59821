"""audit_log is append-only: PostgreSQL refuses UPDATE, DELETE and TRUNCATE on it

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 09:00:00

The hash chain *detects* tampering; this trigger *prevents* the ordinary kind, so an application
bug or an operator's stray ``DELETE`` cannot touch the log. It is a statement-level trigger, so
even an UPDATE or DELETE that matches no row is refused (nobody has a reason to issue one).

What it cannot stop: a superuser or the table's owner can ``ALTER TABLE audit_log DISABLE
TRIGGER`` or ``SET session_replication_role = replica``. That is what the hash chain and
``radwatch audit verify`` are for. In production, run the migrations as the owning role and the
application as a role with only SELECT and INSERT on ``audit_log``.

SQLite has no such triggers worth the name here (a RAISE trigger is as easily dropped by anyone
who can write the file), so this revision is a no-op there; the chain still detects edits.
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_FUNCTION = """
CREATE FUNCTION audit_log_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'Audit records are never changed or removed; record a correction as a '
                     'new audit record instead.';
END
$$
"""

_TRIGGER = """
CREATE TRIGGER audit_log_append_only
BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_log
FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()
"""


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(_FUNCTION)
    op.execute(_TRIGGER)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER IF EXISTS audit_log_append_only ON audit_log")
    op.execute("DROP FUNCTION IF EXISTS audit_log_append_only()")
