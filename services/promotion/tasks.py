"""Celery tasks of promotion (beat, monitoring queue): advance promotions whose stage met its
rollout plan, and the post-promotion rollback watch. Thin: they call the flows."""

from __future__ import annotations

from celery import shared_task

from services.audit import actions
from services.core import runtime
from services.core.db import session_scope
from services.core.errors import ConflictError
from services.promotion import flows as promotion
from services.promotion import repository

ADVANCE_TASK = "lifecycle.advance_promotions"
WATCH_TASK = "lifecycle.rollback_watch"


@shared_task(name=ADVANCE_TASK)
def advance_promotions() -> int:
    """Advance every promotion whose current stage has met its rollout plan; returns how many
    moved. Stages that are not ready yet are left alone (a 409 from the flow)."""
    rt = runtime.current()
    with session_scope(rt.sessions) as session:
        models = repository.models_promoting(session)
    moved = 0
    for model_name in models:
        try:
            promotion.advance(rt, model_name=model_name, actor=actions.ACTOR_SYSTEM)
            moved += 1
        except ConflictError:
            continue
    return moved


@shared_task(name=WATCH_TASK)
def rollback_watch() -> int:
    """Roll back models whose change protocol's rollback trigger fired; returns how many."""
    return len(promotion.watch(runtime.current()))
