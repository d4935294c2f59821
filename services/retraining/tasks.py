"""Celery tasks of retraining: the run itself (``training.*``, routed to the training queue, where
GPU workers listen) and the beat sweep that turns persistent monitor evidence into runs
(``lifecycle.*``, monitoring queue). Both are thin: they load by id and call the service or the
flow."""

from __future__ import annotations

from celery import shared_task

from services.audit import actions
from services.core import runtime
from services.core.db import session_scope
from services.retraining import flows, service

TRIGGER_TASK = "lifecycle.retraining_triggers"


@shared_task(name=service.TASK_NAME)
def retrain(run_id: int) -> str:
    """Run a queued retraining run; returns its final state ("skipped" if it was not queued)."""
    rt = runtime.current()
    run = flows.execute_run(
        rt.sessions, rt.registry, run_id, actor=actions.ACTOR_WORKER, runtime=rt
    )
    return "skipped" if run is None else run.state


@shared_task(name=TRIGGER_TASK)
def retraining_triggers() -> int:
    """Fail runs abandoned by a lost worker, request runs whose protocol's persistence rule is
    met, and re-send queued runs whose message may have been lost (sent after the commit).
    Returns the number of runs created."""
    rt = runtime.current()
    with session_scope(rt.sessions) as session:
        service.fail_abandoned(session)
        created = service.trigger_due_runs(session)
        resend = service.stale_queued(session)
        service.enqueue_after_commit(
            session,
            enqueuer=rt.enqueuer,
            queue=rt.settings.training_queue,
            run_ids=[r.id for r in created] + [r.id for r in resend],
        )
    return len(created)
