"""Sending Celery tasks from outside a worker, only after the caller's transaction commits.

A task sent before the commit could run before its rows are visible, and one sent for a change
that rolled back would act on nothing; so callers register a send with :func:`after_commit` and
it happens when (and only if) the session commits. Each send is best effort: the work it nudges
is also picked up by a beat sweep, so a refused broker is logged, never raised.

:class:`CeleryEnqueuer` is the one adapter of the :class:`~services.core.ports.Enqueuer` port.
Its producer is built on first use and cached per broker URL, never at import: the API process
does not otherwise need a Celery app, and importing ``services.worker.app`` would build one from
the process-wide settings rather than the ones the caller runs with. It fails fast: this runs
inside an API request (after its commit), and kombu would otherwise retry a refused connection
for seconds before giving up.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Hashable, Sequence
from pathlib import Path
from typing import Any

from celery import Celery
from sqlalchemy import event
from sqlalchemy.orm import Session

from services.core.ports import Enqueuer

log = logging.getLogger(__name__)

#: Longest wait for the broker's connection; a nudge is not worth a slow API answer.
CONNECT_TIMEOUT_S = 2.0

_PENDING_KEY = "radwatch.enqueue.after_commit"
_HOOKED_KEY = "radwatch.enqueue.hooks_installed"
_lock = threading.Lock()
_producers: dict[str, Celery] = {}


def producer(broker_url: str) -> Celery:
    with _lock:
        app = _producers.get(broker_url)
        if app is None:
            if broker_url.startswith("sqla+sqlite:///"):
                # The embedded broker is a SQLite file that the worker creates; the API may
                # publish before a worker ever ran.
                Path(broker_url.split("///", 1)[1]).parent.mkdir(parents=True, exist_ok=True)
            app = Celery("radwatch-producer", broker=broker_url, set_as_current=False)
            app.conf.broker_connection_retry_on_startup = False
            app.conf.broker_connection_timeout = CONNECT_TIMEOUT_S
            app.conf.broker_transport_options = {"max_retries": 0}
            _producers[broker_url] = app
        return app


class CeleryEnqueuer:
    """Publishes task messages to the configured broker, failing fast (see the module doc)."""

    def __init__(self, broker_url: str) -> None:
        self.broker_url = broker_url

    def send(
        self, task: str, args: Sequence[Any], *, queue: str, expires_s: float | None = None
    ) -> bool:
        options: dict[str, Any] = {"queue": queue, "retry": False}
        if expires_s is not None:
            options["expires"] = expires_s
        try:
            producer(self.broker_url).send_task(task, args=list(args), **options)
        except Exception as exc:  # best effort by design: a beat sweep does the work anyway
            log.warning(
                "could not enqueue %s (%s); the next beat sweep will do the work",
                task,
                type(exc).__name__,
            )
            return False
        return True


def after_commit(session: Session, key: Hashable, send: Callable[[], object]) -> None:
    """Call ``send`` once ``session``'s transaction commits, at most once per ``key``; forget it
    on rollback."""
    pending: dict[Hashable, Callable[[], object]] = session.info.setdefault(_PENDING_KEY, {})
    pending[key] = send
    if not session.info.get(_HOOKED_KEY):
        event.listen(session, "after_commit", _after_commit)
        event.listen(session, "after_rollback", _after_rollback)
        session.info[_HOOKED_KEY] = True


def send_after_commit(
    session: Session,
    enqueuer: Enqueuer,
    task: str,
    args: Sequence[Any] = (),
    *,
    queue: str,
    expires_s: float | None = None,
) -> None:
    """Publish ``task(*args)`` through ``enqueuer`` once ``session`` commits (at most once per
    task and arguments); nothing on rollback."""
    frozen = tuple(args)
    after_commit(
        session,
        (task, frozen),
        lambda: enqueuer.send(task, frozen, queue=queue, expires_s=expires_s),
    )


def _after_commit(session: Session) -> None:
    for send in session.info.pop(_PENDING_KEY, {}).values():
        send()


def _after_rollback(session: Session) -> None:
    session.info.pop(_PENDING_KEY, None)
