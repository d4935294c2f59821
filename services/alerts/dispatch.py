"""Best-effort "deliver now" after a commit.

The webhook outbox is swept by beat every ``RADWATCH_WEBHOOK_INTERVAL_S``, which is what
guarantees delivery. To avoid waiting for the next sweep, a change that wrote outbox rows also
asks a worker to sweep right away, *after* its transaction commits (a task sent before the
commit could run before the rows are visible, and one sent for a rolled-back change would be
noise). If the broker is unreachable the nudge is logged and dropped; the sweep still delivers.

The producer is built on first use and cached per broker URL, never at import: the API process
does not otherwise need a Celery app, and importing ``services.worker.app`` would build one from
the process-wide settings rather than the ones the caller runs with.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from celery import Celery
from sqlalchemy import event
from sqlalchemy.orm import Session

from services.core.settings import Settings

log = logging.getLogger(__name__)

TASK_NAME = "alerts.deliver_webhooks"
#: The worker's queue (``services.worker.app.QUEUE_MONITORING``; not imported, see above).
QUEUE = "monitoring"
#: A nudge older than this is useless: the beat sweep has run by then.
EXPIRES_S = 60
#: Longest wait for the broker's connection; a nudge is not worth a slow API answer.
CONNECT_TIMEOUT_S = 2.0

_PENDING_KEY = "radwatch.alerts.deliver_after_commit"
_HOOKED_KEY = "radwatch.alerts.hooks_installed"

_lock = threading.Lock()
_producers: dict[str, Celery] = {}


def deliver_after_commit(session: Session, settings: Settings) -> None:
    """Send the delivery task once ``session``'s transaction commits; forget it on rollback."""
    session.info[_PENDING_KEY] = settings.resolved_broker_url
    if not session.info.get(_HOOKED_KEY):
        event.listen(session, "after_commit", _after_commit)
        event.listen(session, "after_rollback", _after_rollback)
        session.info[_HOOKED_KEY] = True


def _after_commit(session: Session) -> None:
    broker_url = session.info.pop(_PENDING_KEY, None)
    if broker_url is not None:
        send_delivery_task(broker_url)


def _after_rollback(session: Session) -> None:
    session.info.pop(_PENDING_KEY, None)


def _producer(broker_url: str) -> Celery:
    with _lock:
        app = _producers.get(broker_url)
        if app is None:
            if broker_url.startswith("sqla+sqlite:///"):
                # The embedded broker is a SQLite file that the worker creates; the API may
                # publish before a worker ever ran.
                Path(broker_url.split("///", 1)[1]).parent.mkdir(parents=True, exist_ok=True)
            app = Celery("radwatch-alerts", broker=broker_url, set_as_current=False)
            # Fail fast: this runs inside an API request (after its commit), and kombu would
            # otherwise retry a refused connection for seconds before giving up.
            app.conf.broker_connection_retry_on_startup = False
            app.conf.broker_connection_timeout = CONNECT_TIMEOUT_S
            app.conf.broker_transport_options = {"max_retries": 0}
            _producers[broker_url] = app
        return app


def send_delivery_task(broker_url: str) -> bool:
    """Publish one ``alerts.deliver_webhooks`` message; False (and a warning) if that failed."""
    try:
        options: dict[str, Any] = {"queue": QUEUE, "expires": EXPIRES_S, "retry": False}
        _producer(broker_url).send_task(TASK_NAME, **options)
    except Exception as exc:  # best effort by design: the beat sweep delivers anyway
        log.warning(
            "could not enqueue %s (%s); the next beat sweep will deliver",
            TASK_NAME,
            type(exc).__name__,
        )
        return False
    return True
