"""Best-effort "deliver now" after a commit.

The webhook outbox is swept by beat every ``RADWATCH_WEBHOOK_INTERVAL_S``, which is what
guarantees delivery. To avoid waiting for the next sweep, a change that wrote outbox rows also
asks a worker to sweep right away, *after* its transaction commits (a task sent before the
commit could run before the rows are visible, and one sent for a rolled-back change would be
noise). If the broker is unreachable the nudge is logged and dropped; the sweep still delivers.

The after-commit hook and the fail-fast producer are :mod:`services.worker.enqueue`.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.orm import Session

from services.core.settings import Settings
from services.worker import enqueue

log = logging.getLogger(__name__)

TASK_NAME = "alerts.deliver_webhooks"
#: The worker's queue (``services.worker.app.QUEUE_MONITORING``; not imported, see above).
QUEUE = "monitoring"
#: A nudge older than this is useless: the beat sweep has run by then.
EXPIRES_S = 60
#: Longest wait for the broker's connection (see services.worker.enqueue).
CONNECT_TIMEOUT_S = enqueue.CONNECT_TIMEOUT_S


def deliver_after_commit(session: Session, settings: Settings) -> None:
    """Send the delivery task once ``session``'s transaction commits; forget it on rollback."""
    url = settings.resolved_broker_url
    enqueue.after_commit(session, (TASK_NAME, url), lambda: send_delivery_task(url))


def send_delivery_task(broker_url: str) -> bool:
    """Publish one ``alerts.deliver_webhooks`` message; False (and a warning) if that failed."""
    try:
        options: dict[str, Any] = {"queue": QUEUE, "expires": EXPIRES_S, "retry": False}
        enqueue.producer(broker_url).send_task(TASK_NAME, **options)
    except Exception as exc:  # best effort by design: the beat sweep delivers anyway
        log.warning(
            "could not enqueue %s (%s); the next beat sweep will deliver",
            TASK_NAME,
            type(exc).__name__,
        )
        return False
    return True
