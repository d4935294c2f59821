"""Celery task of the alerts domain: the webhook delivery sweep. Thin: the sweep is a flow that
owns its short transactions (see :func:`services.alerts.flows.deliver_due`)."""

from __future__ import annotations

from celery import shared_task

from services.alerts import flows
from services.alerts.dispatch import TASK_NAME
from services.core import runtime


@shared_task(name=TASK_NAME)
def deliver_webhooks() -> int:
    """Send due webhook deliveries; returns how many attempts were made. Runs from beat every
    ``RADWATCH_WEBHOOK_INTERVAL_S`` and right after an alert change; overlapping runs are safe
    because each delivery is claimed with FOR UPDATE SKIP LOCKED."""
    rt = runtime.current()
    return flows.deliver_due(rt.sessions, settings=rt.settings).attempted
