"""Celery task of the alerts domain: the webhook delivery sweep. Thin: the sweep owns its short
transactions (see :func:`services.alerts.webhooks.deliver_due`)."""

from __future__ import annotations

from services.alerts import webhooks
from services.alerts.dispatch import TASK_NAME
from services.worker.app import celery_app
from services.worker.context import get_context


@celery_app.task(name=TASK_NAME)
def deliver_webhooks() -> int:
    """Send due webhook deliveries; returns how many attempts were made. Runs from beat every
    ``RADWATCH_WEBHOOK_INTERVAL_S`` and right after an alert change; overlapping runs are safe
    because each delivery is claimed with FOR UPDATE SKIP LOCKED."""
    ctx = get_context()
    return webhooks.deliver_due(ctx.sessions, settings=ctx.settings).attempted
