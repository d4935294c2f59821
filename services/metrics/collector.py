"""Metrics read from the system of record at scrape time.

Monitor statistics and alert counts come from PostgreSQL/SQLite on each scrape, so every API
replica reports the same numbers and a restart loses nothing. Queries are small: one row per
(monitor, model, site) and one grouped count.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.orm import Session, sessionmaker

from services.monitoring import repository

log = logging.getLogger(__name__)


class DatabaseCollector(Collector):
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def collect(self) -> Iterator[GaugeMetricFamily]:
        stat = GaugeMetricFamily(
            "radwatch_monitor_statistic",
            "Latest test statistic of each monitor window, by monitor, model and site.",
            labels=["monitor", "model", "site"],
        )
        pval = GaugeMetricFamily(
            "radwatch_monitor_p_value",
            "Latest p-value of each monitor, by monitor, model and site.",
            labels=["monitor", "model", "site"],
        )
        drift = GaugeMetricFamily(
            "radwatch_monitor_drift",
            "1 if the latest window of the monitor was judged drifted, else 0.",
            labels=["monitor", "model", "site"],
        )
        windows = GaugeMetricFamily(
            "radwatch_monitor_windows",
            "Number of windows computed, by monitor, model and site.",
            labels=["monitor", "model", "site"],
        )
        alerts = GaugeMetricFamily(
            "radwatch_alerts_open",
            "Open alerts, by model, site and severity.",
            labels=["model", "site", "severity"],
        )
        up = GaugeMetricFamily(
            "radwatch_database_up", "1 if the metrics scrape could read the database."
        )
        try:
            with self._sessions() as session:
                for row in repository.latest_results(session):
                    labels = [row.monitor, row.model_name, row.site]
                    stat.add_metric(labels, row.statistic)
                    pval.add_metric(labels, row.p_value)
                    drift.add_metric(labels, 1.0 if row.drift else 0.0)
                    windows.add_metric(labels, float(row.window_index + 1))
                for (model, site, severity), n in repository.open_alert_counts(session).items():
                    alerts.add_metric([model, site, severity], float(n))
            up.add_metric([], 1.0)
        except Exception as exc:
            log.warning("metrics scrape could not read the database: %s", type(exc).__name__)
            up.add_metric([], 0.0)
        yield from (stat, pval, drift, windows, alerts, up)
