"""Metrics stay right when the work is spread over processes: an API with two uvicorn workers,
and a prefork Celery worker with two children (real Redis broker, real PostgreSQL).

Without the shared stores, each scrape would see one process's counts, and repeated scrapes
would disagree; these tests count exactly and scrape several times.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from services.core.processes import api_process, free_port, settings_env, worker_process
from services.core.settings import Settings
from services.metrics.celery import CeleryCollector
from services.registry.mlflow_registry import MlflowRegistry
from services.worker.app import create_celery


def _values(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name:
                out[tuple(sorted(s.labels.items()))] = s.value
    return out


def test_api_counters_agree_across_worker_processes(settings: Settings, tmp_path: Path) -> None:
    port = free_port()
    env = settings_env(
        {
            "environment": "test",
            "data_dir": (tmp_path / "data").resolve(),
            "database_url": settings.resolved_database_url,
            "triton_url": f"127.0.0.1:{free_port()}",
        }
    )
    with api_process(env, port=port, log_path=tmp_path / "api.log", workers=2) as api:
        base = f"http://127.0.0.1:{port}"
        api.wait_http(f"{base}/healthz", timeout_s=60)
        n = 60
        for _ in range(n):  # a new connection each time, so both workers get requests
            r = httpx.get(f"{base}/v1/alerts", headers={"Connection": "close"})
            assert r.status_code == 401
        seen = []
        for _ in range(4):
            text = httpx.get(f"{base}/metrics", headers={"Connection": "close"}).text
            counts = _values(text, "radwatch_http_requests_total")
            seen.append(sum(v for k, v in counts.items() if dict(k).get("route") == "/v1/alerts"))
        assert seen == [n] * 4, seen
        pids = {
            int(p.name.split("_")[-1].split(".")[0])
            for p in (tmp_path / f"prometheus-{port}").glob("counter_*.db")
        }
        assert len(pids) == 2, f"expected both workers to have counted: {pids}"


@pytest.fixture
def broker_url(redis_db_url: str) -> str:
    """A Redis database leased for this test (tests/fixtures/redis_db.py)."""
    return redis_db_url


def _celery_samples(broker_url: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(CeleryCollector(broker_url))
    text = generate_latest(registry).decode()
    return {
        name: _values(text, name)
        for name in (
            "radwatch_celery_tasks_total",
            "radwatch_celery_task_duration_seconds_count",
            "radwatch_celery_queue_lag_seconds_count",
            "radwatch_celery_metrics_up",
        )
    }


def test_celery_task_metrics_agree_across_prefork_children(
    settings: Settings, broker_url: str, tmp_path: Path
) -> None:
    # The worker's context opens the MLflow store; create it first, or two children racing to
    # create the same SQLite store collide (in production it is the tracking server).
    mlflow_uri = f"sqlite:///{(tmp_path / 'mlflow.db').resolve()}"
    MlflowRegistry(mlflow_uri)
    env = settings_env(
        {
            "environment": "test",
            "data_dir": (tmp_path / "data").resolve(),
            "database_url": settings.resolved_database_url,
            "broker_url": broker_url,
            "mlflow_tracking_uri": mlflow_uri,
        }
    )
    publisher = create_celery(settings.model_copy(update={"broker_url": broker_url}))
    ok, bad = 20, 2
    with worker_process(
        env, log_path=tmp_path / "worker.log", beat=False, concurrency=2, pool="prefork"
    ) as worker:
        worker.wait_log("ready", timeout_s=60)
        for _ in range(ok):
            publisher.send_task("alerts.deliver_webhooks", queue="monitoring")
        for _ in range(bad):  # wrong arguments: the task fails in the worker
            publisher.send_task("alerts.deliver_webhooks", args=[1, 2, 3], queue="monitoring")
        key_ok = (
            ("outcome", "succeeded"),
            ("queue", "monitoring"),
            ("task", "alerts.deliver_webhooks"),
        )
        key_bad = (
            ("outcome", "failed"),
            ("queue", "monitoring"),
            ("task", "alerts.deliver_webhooks"),
        )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            tasks = _celery_samples(broker_url)["radwatch_celery_tasks_total"]
            if tasks.get(key_ok, 0) >= ok and tasks.get(key_bad, 0) >= bad:
                break
            time.sleep(0.5)
    samples = _celery_samples(broker_url)
    assert samples["radwatch_celery_metrics_up"] == {(): 1.0}
    assert samples["radwatch_celery_tasks_total"].get(key_ok) == ok, samples
    assert samples["radwatch_celery_tasks_total"].get(key_bad) == bad, samples
    durations = samples["radwatch_celery_task_duration_seconds_count"]
    assert sum(durations.values()) == ok + bad
    lags = samples["radwatch_celery_queue_lag_seconds_count"]
    assert lags == {(("queue", "monitoring"),): ok + bad}
    children = {
        line.split("ForkPoolWorker-")[1].split("]")[0]
        for line in (tmp_path / "worker.log").read_text().splitlines()
        if "ForkPoolWorker-" in line and "succeeded" in line
    }
    assert len(children) == 2, f"both prefork children should have run tasks: {children}"


def test_without_redis_the_collector_says_so() -> None:
    samples = _celery_samples("sqla+sqlite:////tmp/none.db")
    assert samples["radwatch_celery_metrics_up"] == {(): 0.0}
    assert samples["radwatch_celery_tasks_total"] == {}
