"""Celery tasks of retraining: the run itself (``training.*``, routed to the training queue, where
GPU workers listen) and the beat sweep that turns persistent monitor evidence into runs
(``lifecycle.*``, monitoring queue). Both are thin: they load by id and call the service."""

from __future__ import annotations

from services.audit import actions
from services.core.db import session_scope
from services.lifecycle import retraining, retraining_runner
from services.worker.app import celery_app
from services.worker.context import get_context

TRIGGER_TASK = "lifecycle.retraining_triggers"

# The ignores below: Celery's decorator is untyped, and pyproject's mypy override for it matches
# ``services.*.tasks`` only, not this module's name.


@celery_app.task(name=retraining.TASK_NAME)  # type: ignore[untyped-decorator,misc]
def retrain(run_id: int) -> str:
    """Run a queued retraining run; returns its final state ("skipped" if it was not queued)."""
    ctx = get_context()
    run = retraining_runner.execute_run(
        ctx.sessions, ctx.registry, run_id, actor=actions.ACTOR_WORKER
    )
    return "skipped" if run is None else run.state


@celery_app.task(name=TRIGGER_TASK)  # type: ignore[untyped-decorator,misc]
def retraining_triggers() -> int:
    """Fail runs abandoned by a lost worker, request runs whose protocol's persistence rule is
    met, and re-send queued runs whose message may have been lost (sent after the commit).
    Returns the number of runs created."""
    ctx = get_context()
    with session_scope(ctx.sessions) as session:
        retraining.fail_abandoned(session)
        created = retraining.trigger_due_runs(session)
        resend = retraining.stale_queued(session)
        retraining.enqueue_after_commit(
            session,
            broker_url=ctx.settings.resolved_broker_url,
            queue=ctx.settings.training_queue,
            run_ids=[r.id for r in created] + [r.id for r in resend],
        )
    return len(created)
