"""Celery tasks of the monitoring domain. Thin: they own the transactions and call the
scheduler (see :mod:`services.monitoring.scheduler` for the exactly-once rules)."""

from __future__ import annotations

import logging

from sqlalchemy.exc import IntegrityError

from services.core.db import session_scope
from services.core.models import Deployment, Monitor
from services.events import repository as events
from services.monitoring import scheduler
from services.worker.app import celery_app
from services.worker.context import get_context

log = logging.getLogger(__name__)

#: Windows one tick computes for one (monitor, site) before moving on, so a backlog on one
#: monitor cannot starve the others; the next tick continues.
MAX_WINDOWS_PER_TARGET = 50


@celery_app.task(name="monitoring.tick")
def tick() -> int:
    """Compute every due window of every active monitor, one transaction per window."""
    ctx = get_context()
    with session_scope(ctx.sessions) as session:
        targets = scheduler.due_targets(session)
        # One watermark per tick: each read briefly takes the ingest lock exclusively.
        mark = events.committed_watermark_at(session)
    computed = 0
    for target in targets:
        for _ in range(MAX_WINDOWS_PER_TARGET):
            try:
                with session_scope(ctx.sessions) as session:
                    monitor = session.get(Monitor, target.monitor_id)
                    deployment = session.get(Deployment, target.deployment_id)
                    if monitor is None or deployment is None or not monitor.active:
                        break
                    profile = ctx.profile(deployment.model_name, deployment.model_version)
                    result = scheduler.compute_next_window(
                        session,
                        settings=ctx.settings,
                        monitor=monitor,
                        deployment=deployment,
                        profile=profile,
                        site=target.site,
                        mark=mark,
                    )
            except IntegrityError:
                log.info("window already computed by another worker; skipping")
                break
            except Exception:
                # One broken monitor (a bad spec, a finding the model lacks) must not stop the
                # others; its window stays due and is retried on the next tick.
                log.exception(
                    "monitor %s site %s failed; will retry", target.monitor_id, target.site
                )
                break
            if result is None:
                break
            computed += 1
    return computed
