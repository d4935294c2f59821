"""Celery queue lag, read from the broker at scrape time.

``radwatch_queue_depth`` is the number of task messages waiting in each queue: a growing depth
means the workers fall behind (monitor windows and webhook deliveries wait). It works for every
kombu transport (Redis in production, the SQLite transport of the embedded demo). A broker that
cannot be reached is reported as ``radwatch_broker_up 0``; the scrape itself still succeeds.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from kombu import connection as kombu_connection
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

#: kombu ships without complete type hints; its connection is used through ``Any``.
_Connection: Any = kombu_connection.Connection


class BrokerCollector(Collector):
    """Keeps one broker connection per API process and re-opens it after a failure."""

    def __init__(self, broker_url: str, queues: Sequence[str]) -> None:
        self._url = broker_url
        self._queues = tuple(queues)
        self._lock = threading.Lock()
        self._conn: Any = None

    def _depths(self) -> dict[str, int]:
        if self._conn is None:
            self._conn = _Connection(self._url, connect_timeout=2, transport_options={})
            self._conn.ensure_connection(max_retries=1)
        out: dict[str, int] = {}
        for queue in self._queues:
            channel = self._conn.channel()
            try:
                _, count, _ = channel.queue_declare(queue=queue, passive=True)
            except Exception as exc:  # a queue nobody declared yet holds no messages
                if "NOT_FOUND" not in str(exc) and "404" not in str(exc):
                    raise
                count = 0
            finally:
                channel.close()
            out[queue] = int(count)
        return out

    def collect(self) -> Iterator[GaugeMetricFamily]:
        depth = GaugeMetricFamily(
            "radwatch_queue_depth",
            "Celery task messages waiting in the broker, by queue (queue lag).",
            labels=["queue"],
        )
        up = GaugeMetricFamily("radwatch_broker_up", "1 if the scrape could read the broker.")
        with self._lock:
            try:
                for queue, count in self._depths().items():
                    depth.add_metric([queue], float(count))
                up.add_metric([], 1.0)
            except Exception as exc:
                log.warning("metrics scrape could not read the broker: %s", type(exc).__name__)
                if self._conn is not None:
                    self._conn.release()
                self._conn = None
                up.add_metric([], 0.0)
        yield from (depth, up)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.release()
                self._conn = None
