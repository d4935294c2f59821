"""Celery task of the monitoring domain. Thin: the tick is a flow
(:func:`services.monitoring.flows.run_due_windows`)."""

from __future__ import annotations

from celery import shared_task

from services.core import runtime
from services.monitoring import flows


@shared_task(name="monitoring.tick")
def tick() -> int:
    """Compute every due window of every active monitor, one transaction per window."""
    return flows.run_due_windows(runtime.current())
