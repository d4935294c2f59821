"""Queue lag from a real Redis broker (and the embedded SQLite transport), at scrape time."""

from __future__ import annotations

from pathlib import Path

import pytest
from kombu import Connection
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from services.core.processes import free_port
from services.metrics.broker import BrokerCollector


def scrape(collector: BrokerCollector) -> dict[str, dict[tuple[str, ...], float]]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    out: dict[str, dict[tuple[str, ...], float]] = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for s in family.samples:
            out.setdefault(s.name, {})[tuple(s.labels.values())] = s.value
    return out


@pytest.fixture
def redis_url(redis_db_url: str) -> str:
    """A Redis database leased for this test (tests/fixtures/redis_db.py)."""
    return redis_db_url


def _publish(url: str, queue: str, n: int) -> None:
    with Connection(url) as conn:
        q = conn.SimpleQueue(queue)
        for i in range(n):
            q.put({"i": i})
        q.close()


def test_depth_counts_waiting_messages_on_redis(redis_url: str) -> None:
    collector = BrokerCollector(redis_url, ["monitoring", "never-declared"])
    before = scrape(collector)
    assert before["radwatch_queue_depth"] == {("monitoring",): 0.0, ("never-declared",): 0.0}
    _publish(redis_url, "monitoring", 7)
    after = scrape(collector)
    assert after["radwatch_queue_depth"][("monitoring",)] == 7.0
    assert after["radwatch_broker_up"] == {(): 1.0}
    collector.close()


def test_depth_on_the_embedded_sqlite_transport(tmp_path: Path) -> None:
    url = f"sqla+sqlite:///{tmp_path / 'broker.db'}"
    _publish(url, "monitoring", 3)
    assert scrape(BrokerCollector(url, ["monitoring"]))["radwatch_queue_depth"] == {
        ("monitoring",): 3.0
    }


def test_unreachable_broker_is_reported_not_raised() -> None:
    collector = BrokerCollector(f"redis://127.0.0.1:{free_port()}/0", ["monitoring"])
    got = scrape(collector)
    assert got["radwatch_broker_up"] == {(): 0.0}
    assert "radwatch_queue_depth" not in got
