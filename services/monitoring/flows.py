"""Monitoring flows (they own their transactions):

- :func:`run_due_windows`: one scheduler tick, one transaction per window, so a broken monitor
  or a lost race affects one window only (see :mod:`services.monitoring.scheduler` for the
  exactly-once rules);
- :func:`deploy`: make a registered version the champion on Triton and in the database, and give
  a model deployed for the first time its default drift monitor. It lives here, not in serving,
  because deploying is what starts the watching.
"""

from __future__ import annotations

import logging

from sqlalchemy.exc import IntegrityError

from services.audit import actions
from services.core.db import session_scope
from services.core.runtime import Runtime
from services.events import repository as events
from services.monitoring import repository, scheduler
from services.monitoring import service as monitors
from services.serving import repository as serving
from services.serving.service import deploy_champion, export_and_load, served_by

log = logging.getLogger(__name__)

#: Windows one tick computes for one (monitor, site) before moving on, so a backlog on one
#: monitor cannot starve the others; the next tick continues.
MAX_WINDOWS_PER_TARGET = 50


def run_due_windows(rt: Runtime) -> int:
    """Compute every due window of every active monitor; returns how many were stored."""
    with session_scope(rt.sessions) as session:
        targets = scheduler.due_targets(session)
        # One watermark per tick: each read briefly takes the ingest lock exclusively.
        mark = events.committed_watermark_at(session)
    computed = 0
    for target in targets:
        for _ in range(MAX_WINDOWS_PER_TARGET):
            try:
                with session_scope(rt.sessions) as session:
                    monitor = repository.get_monitor(session, target.monitor_id)
                    deployment = serving.get(session, target.deployment_id)
                    if monitor is None or deployment is None or not monitor.active:
                        break
                    profile = rt.profile(deployment.model_name, deployment.model_version)
                    result = scheduler.compute_next_window(
                        session,
                        enqueuer=rt.enqueuer,
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


def deploy(
    rt: Runtime,
    *,
    model_name: str,
    version: int,
    operating_threshold: float = 0.5,
    default_monitor: bool = True,
    actor: str = actions.ACTOR_SYSTEM,
) -> int:
    """Export a registered version to the Triton repository, load it, and make it champion;
    returns the deployment id. With ``default_monitor``, a model that has no monitors yet gets
    the acquisition drift monitor of the settings (window, alpha, persistence).

    Triton loads the model before the deployment row changes, so a failed load leaves the
    previous champion serving and recorded. A probe makes its encoder version ready instead, and
    its row names the encoder as the Triton model.
    """
    info = rt.registry.get_version(model_name, version)
    spec = export_and_load(rt.triton, rt.registry, rt.model_repository, model_name, version)
    with session_scope(rt.sessions) as session:
        deployment = deploy_champion(
            session,
            model_name=model_name,
            model_version=version,
            mlflow_run_id=info.run_id,
            triton_model=served_by(spec, model_name, version)[0],
            operating_threshold=operating_threshold,
            spec=spec,
            actor=actor,
        )
        if default_monitor:
            monitors.ensure_default_drift(
                session,
                model_name=model_name,
                settings=rt.settings,
                embeddings="embedding_drift" in spec.enabled_monitors(),
            )
        return deployment.id
