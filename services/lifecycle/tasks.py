"""Celery tasks of the lifecycle domain that run on the monitoring queue (sign-off deadlines and
the post-promotion rollback watch). Retraining runs have their own module on the training queue
(:mod:`services.lifecycle.retraining_tasks`)."""

from __future__ import annotations

from services.audit import actions
from services.core.db import session_scope
from services.core.errors import ConflictError
from services.lifecycle import approvals, promotion, repository
from services.worker.app import celery_app
from services.worker.context import get_context

EXPIRE_TASK = "lifecycle.expire_approvals"


@celery_app.task(name=EXPIRE_TASK)
def expire_approvals() -> int:
    """Mark pending approval requests past their deadline as expired; returns how many."""
    ctx = get_context()
    with session_scope(ctx.sessions) as session:
        return approvals.expire_due(session)


ADVANCE_TASK = "lifecycle.advance_promotions"
WATCH_TASK = "lifecycle.rollback_watch"


def _lifecycle() -> promotion.Lifecycle:
    ctx = get_context()
    return promotion.Lifecycle(
        sessions=ctx.sessions,
        registry=ctx.registry,
        triton=ctx.triton,
        repository_dir=ctx.settings.triton_repository,
    )


@celery_app.task(name=ADVANCE_TASK)
def advance_promotions() -> int:
    """Advance every promotion whose current stage has met its rollout plan; returns how many
    moved. Stages that are not ready yet are left alone (a 409 from the service)."""
    lc = _lifecycle()
    with session_scope(lc.sessions) as session:
        models = repository.models_promoting(session)
    moved = 0
    for model_name in models:
        try:
            promotion.advance(lc, model_name=model_name, actor=actions.ACTOR_SYSTEM)
            moved += 1
        except ConflictError:
            continue
    return moved


@celery_app.task(name=WATCH_TASK)
def rollback_watch() -> int:
    """Roll back models whose change protocol's rollback trigger fired; returns how many."""
    return len(promotion.watch(_lifecycle()))
