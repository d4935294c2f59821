"""Celery tasks of the monitoring domain. Thin: they own the transactions and call the service."""

from __future__ import annotations

import logging

from sqlalchemy.exc import IntegrityError

from services.core.db import session_scope
from services.core.models import Deployment
from services.monitoring import service
from services.worker.app import celery_app
from services.worker.context import get_context

log = logging.getLogger(__name__)


@celery_app.task(name="monitoring.tick")
def tick() -> int:
    """Compute every complete window that is waiting, one transaction per window."""
    ctx = get_context()
    with session_scope(ctx.sessions) as session:
        targets = service.due_targets(session)
    computed = 0
    for deployment_id, site in targets:
        while True:
            try:
                with session_scope(ctx.sessions) as session:
                    deployment = session.get(Deployment, deployment_id)
                    if deployment is None:
                        break
                    profile = ctx.profile(deployment.model_name, deployment.model_version)
                    result = service.compute_next_window(
                        session,
                        settings=ctx.settings,
                        deployment=deployment,
                        profile=profile,
                        site=site,
                    )
            except IntegrityError:
                log.info("window already computed by another worker; skipping site")
                break
            if result is None:
                break
            computed += 1
    return computed
