"""Celery task metrics that agree across prefork worker processes and hosts.

A prefork worker runs tasks in child processes, and several workers run on several hosts, so
in-process counters would give each scrape one child's view. Instead every child adds to shared
hashes in Redis (HINCRBY / HINCRBYFLOAT are atomic), and the API exposes them on ``/metrics``
(:class:`CeleryCollector`). Histograms are stored per bucket (not cumulative) and cumulated at
scrape time. Redis keeps nothing on disk; after a Redis restart the counters start again from 0,
which ``rate()`` treats as a counter reset.

Queue lag is measured end to end: the publisher stamps ``radwatch_published_at`` (epoch seconds)
into the message headers, and the worker subtracts it from the time the task starts. It assumes
the publisher's and the worker's clocks agree (NTP); negative lags are clamped to 0.

Without a Redis broker (the embedded demo runs kombu's SQLAlchemy transport), nothing is
recorded and ``radwatch_celery_metrics_up`` is 0.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from typing import Any

import redis
from celery import Celery
from celery.signals import before_task_publish, task_postrun, task_prerun, worker_process_init
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.metrics_core import CounterMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

KEY_TASKS = "radwatch:metrics:celery:tasks"
KEY_DURATION = "radwatch:metrics:celery:duration"
KEY_LAG = "radwatch:metrics:celery:lag"
HEADER = "radwatch_published_at"
SEP = "\t"

DURATION_BUCKETS: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
LAG_BUCKETS: tuple[float, ...] = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)

_OUTCOMES = {"SUCCESS": "succeeded", "FAILURE": "failed", "RETRY": "retried"}


def is_redis_url(url: str) -> bool:
    return url.startswith(("redis://", "rediss://", "unix://"))


def bucket_index(value: float, buckets: Sequence[float]) -> int:
    """Index of the first bucket whose upper bound holds ``value``; ``len(buckets)`` is +Inf."""
    for i, upper in enumerate(buckets):
        if value <= upper:
            return i
    return len(buckets)


class _Recorder:
    """Per-process state: the Redis client (rebuilt after fork) and task start times."""

    def __init__(self) -> None:
        self.url: str | None = None
        self.client: redis.Redis | None = None
        self.started: dict[str, tuple[float, str]] = {}

    def redis(self) -> redis.Redis | None:
        if self.url is None:
            return None
        if self.client is None:
            self.client = redis.Redis.from_url(self.url, socket_timeout=1.0)
        return self.client

    def observe(self, key: str, prefix: str, value: float, buckets: Sequence[float]) -> None:
        client = self.redis()
        if client is None:
            return
        pipe = client.pipeline(transaction=False)
        pipe.hincrby(key, f"{prefix}{SEP}{bucket_index(value, buckets)}", 1)
        pipe.hincrbyfloat(key, f"{prefix}{SEP}sum", value)
        pipe.hincrby(key, f"{prefix}{SEP}count", 1)
        pipe.execute()

    def count(self, task: str, queue: str, outcome: str) -> None:
        client = self.redis()
        if client is not None:
            client.hincrby(KEY_TASKS, SEP.join((task, queue, outcome)), 1)


_recorder = _Recorder()


def _queue_of(task: Any) -> str:
    info = getattr(task.request, "delivery_info", None) or {}
    return str(info.get("routing_key") or info.get("exchange") or "unknown")


def _on_publish(headers: dict[str, Any] | None = None, **_: Any) -> None:
    if isinstance(headers, dict):
        headers.setdefault(HEADER, time.time())


def _on_prerun(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    if task is None or task_id is None:
        return
    queue = _queue_of(task)
    _recorder.started[task_id] = (time.perf_counter(), queue)
    published = getattr(task.request, HEADER, None)
    if published is None:
        published = (getattr(task.request, "headers", None) or {}).get(HEADER)
    if published is None:
        return
    try:
        lag = max(0.0, time.time() - float(published))
        _recorder.observe(KEY_LAG, queue, lag, LAG_BUCKETS)
    except Exception as exc:  # metrics must never fail a task
        log.warning("could not record queue lag: %s", type(exc).__name__)


def _on_postrun(
    task_id: str | None = None, task: Any = None, state: str | None = None, **_: Any
) -> None:
    if task is None or task_id is None:
        return
    started = _recorder.started.pop(task_id, None)
    queue = started[1] if started else _queue_of(task)
    outcome = _OUTCOMES.get(str(state), str(state).lower())
    try:
        _recorder.count(task.name, queue, outcome)
        if started is not None:
            duration = time.perf_counter() - started[0]
            _recorder.observe(
                KEY_DURATION, SEP.join((task.name, queue)), duration, DURATION_BUCKETS
            )
    except Exception as exc:
        log.warning("could not record task metrics: %s", type(exc).__name__)


def _after_fork(**_: Any) -> None:
    _recorder.client = None
    _recorder.started.clear()


def install(app: Celery, broker_url: str) -> None:
    """Record task metrics for ``app``'s tasks in the broker's Redis (no-op without Redis)."""
    _recorder.url = broker_url if is_redis_url(broker_url) else None
    _recorder.client = None
    before_task_publish.connect(_on_publish, weak=False, dispatch_uid="radwatch-metrics-publish")
    task_prerun.connect(_on_prerun, weak=False, dispatch_uid="radwatch-metrics-prerun")
    task_postrun.connect(_on_postrun, weak=False, dispatch_uid="radwatch-metrics-postrun")
    worker_process_init.connect(_after_fork, weak=False, dispatch_uid="radwatch-metrics-fork")


def _histogram(
    name: str,
    doc: str,
    labels: list[str],
    raw: dict[str, str],
    buckets: Sequence[float],
) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, doc, labels=labels)
    per: dict[tuple[str, ...], dict[str, float]] = {}
    for field, value in raw.items():
        head, _, part = field.rpartition(SEP)
        per.setdefault(tuple(head.split(SEP)), {})[part] = float(value)
    bounds = [*(str(float(b)) for b in buckets), "+Inf"]
    for prefix, parts in sorted(per.items()):
        if len(prefix) != len(labels):
            continue
        cumulative, running = [], 0.0
        for i, bound in enumerate(bounds):
            running += parts.get(str(i), 0.0)
            cumulative.append((bound, running))
        family.add_metric(list(prefix), cumulative, parts.get("sum", 0.0))
    return family


def _histograms(
    raw_duration: dict[str, str], raw_lag: dict[str, str]
) -> tuple[HistogramMetricFamily, HistogramMetricFamily]:
    return (
        _histogram(
            "radwatch_celery_task_duration_seconds",
            "Celery task run time in seconds.",
            ["task", "queue"],
            raw_duration,
            DURATION_BUCKETS,
        ),
        _histogram(
            "radwatch_celery_queue_lag_seconds",
            "Seconds a task waited in the queue, from publish to start.",
            ["queue"],
            raw_lag,
            LAG_BUCKETS,
        ),
    )


class CeleryCollector(Collector):
    """Reads the shared task metrics from Redis at scrape time."""

    def __init__(self, broker_url: str) -> None:
        self._url = broker_url if is_redis_url(broker_url) else None
        self._client: redis.Redis | None = None

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "radwatch_celery_metrics_up",
            "1 if the metrics scrape could read the Celery task counters from Redis.",
        )
        tasks = CounterMetricFamily(
            "radwatch_celery_tasks",
            "Celery tasks finished, by task name, queue and outcome.",
            labels=["task", "queue", "outcome"],
        )
        raw: tuple[dict[str, str], ...] = ({}, {}, {})
        if self._url is not None:
            try:
                if self._client is None:
                    self._client = redis.Redis.from_url(self._url, socket_timeout=1.0)
                pipe = self._client.pipeline(transaction=False)
                for key in (KEY_TASKS, KEY_DURATION, KEY_LAG):
                    pipe.hgetall(key)
                raw = tuple({k.decode(): v.decode() for k, v in d.items()} for d in pipe.execute())
                up.add_metric([], 1.0)
            except Exception as exc:
                log.warning("metrics scrape could not read Redis: %s", type(exc).__name__)
                self._client = None
        if not up.samples:
            up.add_metric([], 0.0)
        raw_tasks, raw_duration, raw_lag = raw
        for field, value in sorted(raw_tasks.items()):
            parts = field.split(SEP)
            if len(parts) == 3:
                tasks.add_metric(parts, float(value))
        yield from (up, tasks, *_histograms(raw_duration, raw_lag))
