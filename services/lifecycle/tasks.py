"""Celery tasks of the lifecycle domain that run on the monitoring queue (sign-off deadlines and
the post-promotion rollback watch). Retraining runs have their own module on the training queue
(:mod:`services.lifecycle.retraining_tasks`)."""

from __future__ import annotations

from services.core.db import session_scope
from services.lifecycle import approvals
from services.worker.app import celery_app
from services.worker.context import get_context

EXPIRE_TASK = "lifecycle.expire_approvals"


@celery_app.task(name=EXPIRE_TASK)
def expire_approvals() -> int:
    """Mark pending approval requests past their deadline as expired; returns how many."""
    ctx = get_context()
    with session_scope(ctx.sessions) as session:
        return approvals.expire_due(session)
