"""The Celery application and its beat schedule.

The broker is Redis when ``RADWATCH_BROKER_URL`` is set, otherwise kombu's SQLAlchemy transport on
a SQLite file, so the embedded demo needs no server. Results are not stored: tasks write their
outcome to the database, the system of record.

Run a worker with ``radwatch worker`` (or ``celery -A services.worker.app worker -Q monitoring``).
The webhook deliveries (``alerts.*``) share the monitoring queue, so the same worker sends them.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.signals import worker_process_init

from services.core import runtime
from services.core.settings import Settings, get_settings
from services.metrics import celery as celery_metrics
from services.wiring import build_runtime

QUEUE_MONITORING = "monitoring"


def create_celery(settings: Settings) -> Celery:
    app = Celery(
        "radwatch",
        broker=settings.resolved_broker_url,
        include=[
            "services.monitoring.tasks",
            "services.alerts.tasks",
            "services.promotion.tasks",
            "services.retraining.tasks",
        ],
    )
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    app.conf.update(
        task_ignore_result=True,
        # A task interrupted by a crash is redelivered; windows are idempotent by their unique key.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_connection_retry_on_startup=True,
        task_default_queue=QUEUE_MONITORING,
        task_routes={
            "monitoring.*": {"queue": QUEUE_MONITORING},
            "alerts.*": {"queue": QUEUE_MONITORING},
            "lifecycle.*": {"queue": QUEUE_MONITORING},
            # Retraining runs go to GPU workers (``radwatch worker --queues training``).
            "training.*": {"queue": settings.training_queue},
        },
        beat_schedule_filename=str((settings.data_dir / "celerybeat-schedule").resolve()),
        beat_schedule={
            "monitoring-tick": {
                "task": "monitoring.tick",
                "schedule": settings.monitor_interval_s,
                # A tick that waited longer than two periods is stale; the next one does its work.
                "options": {"queue": QUEUE_MONITORING, "expires": 2 * settings.monitor_interval_s},
            },
            # The outbox sweep is what guarantees webhook delivery; the task sent after each
            # alert change only makes it faster. Overlapping sweeps are safe (SKIP LOCKED).
            "alerts-deliver-webhooks": {
                "task": "alerts.deliver_webhooks",
                "schedule": settings.webhook_interval_s,
                "options": {"queue": QUEUE_MONITORING, "expires": 2 * settings.webhook_interval_s},
            },
            "lifecycle-advance-promotions": {
                "task": "lifecycle.advance_promotions",
                "schedule": settings.monitor_interval_s,
                "options": {"queue": QUEUE_MONITORING, "expires": 2 * settings.monitor_interval_s},
            },
            "lifecycle-rollback-watch": {
                "task": "lifecycle.rollback_watch",
                "schedule": settings.monitor_interval_s,
                "options": {"queue": QUEUE_MONITORING, "expires": 2 * settings.monitor_interval_s},
            },
            # Persistent monitor evidence -> retraining runs (the protocol's rules decide).
            "lifecycle-retraining-triggers": {
                "task": "lifecycle.retraining_triggers",
                "schedule": 60.0,
                "options": {"queue": QUEUE_MONITORING, "expires": 120.0},
            },
            "lifecycle-expire-approvals": {
                "task": "lifecycle.expire_approvals",
                "schedule": 60.0,
                "options": {"queue": QUEUE_MONITORING, "expires": 120.0},
            },
        },
        worker_hijack_root_logger=False,
    )
    celery_metrics.install(app, settings.resolved_broker_url)
    return app


celery_app = create_celery(get_settings())
# Tasks reach this process's runtime (database, Triton, MLflow, broker) through
# services.core.runtime.current(); it is built on first use, after the fork.
runtime.install(build_runtime)


@worker_process_init.connect
def _fresh_clients_after_fork(**_: Any) -> None:
    runtime.reset()
