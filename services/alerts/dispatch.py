"""Best-effort "deliver now" after a commit.

The webhook outbox is swept by beat every ``RADWATCH_WEBHOOK_INTERVAL_S``, which is what
guarantees delivery. To avoid waiting for the next sweep, a change that wrote outbox rows also
asks a worker to sweep right away, *after* its transaction commits (a task sent before the
commit could run before the rows are visible, and one sent for a rolled-back change would be
noise). If the broker is unreachable the nudge is logged and dropped; the sweep still delivers.

The after-commit hook and the fail-fast producer are :mod:`services.core.enqueue`.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from services.core.enqueue import send_after_commit
from services.core.ports import Enqueuer

TASK_NAME = "alerts.deliver_webhooks"
#: The worker's queue (``services.worker.app.QUEUE_MONITORING``; not imported: a root).
QUEUE = "monitoring"
#: A nudge older than this is useless: the beat sweep has run by then.
EXPIRES_S = 60.0


def nudge_after_commit(session: Session, enqueuer: Enqueuer) -> None:
    """Send the delivery task once ``session``'s transaction commits; forget it on rollback."""
    send_after_commit(session, enqueuer, TASK_NAME, queue=QUEUE, expires_s=EXPIRES_S)
