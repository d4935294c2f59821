"""Celery task of sign-off: expire pending requests past their deadline (beat, monitoring
queue). Thin: it calls the service in one transaction."""

from __future__ import annotations

from celery import shared_task

from services.approvals import service as approvals
from services.core import runtime
from services.core.db import session_scope

EXPIRE_TASK = "lifecycle.expire_approvals"


@shared_task(name=EXPIRE_TASK)
def expire_approvals() -> int:
    """Mark pending approval requests past their deadline as expired; returns how many."""
    with session_scope(runtime.current().sessions) as session:
        return approvals.expire_due(session)
