"""Metrics read from the system of record at scrape time.

Monitor statistics, alerts and lifecycle state come from PostgreSQL/SQLite on each scrape, so
every API replica reports the same numbers and a restart loses nothing. Queries are small: one
row per (monitor, model, site) plus grouped counts. Names, types and labels are listed in
:mod:`services.metrics.catalog`.

Lifecycle families emit every known state for every deployed model, with 0 where there are no
rows, so a dashboard shows "0 pending approvals" instead of "no data".
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.orm import Session, sessionmaker

from services.alerts import repository as alerts
from services.approvals import repository as approvals
from services.core.models import (
    AlertState,
    ApprovalState,
    MonitorResult,
    PromotionKind,
    PromotionState,
    RetrainingState,
    RoutingMode,
)
from services.monitoring import repository as monitoring
from services.promotion import repository as promotions
from services.retraining import repository as retraining
from services.serving import repository as serving

log = logging.getLogger(__name__)

RUN_STATES = tuple(RetrainingState)
APPROVAL_STATES = tuple(ApprovalState)
PROMOTION_KINDS = tuple(PromotionKind)
PROMOTION_STATES = tuple(PromotionState)
ALERT_STATES = tuple(AlertState)

_MON = ["monitor", "model", "site"]


def _gauge(name: str, doc: str, labels: list[str] | None = None) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=labels or [])


def _num(value: Any) -> float | None:
    if value is None:
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


class DatabaseCollector(Collector):
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def collect(self) -> Iterator[GaugeMetricFamily]:
        f = {
            "stat": _gauge("radwatch_monitor_statistic", "Latest statistic of each monitor.", _MON),
            "pval": _gauge("radwatch_monitor_p_value", "Latest p-value of each monitor.", _MON),
            "drift": _gauge(
                "radwatch_monitor_drift", "1 if the latest window was significant.", _MON
            ),
            "windows": _gauge("radwatch_monitor_windows", "Windows computed so far.", _MON),
            "fstat": _gauge(
                "radwatch_monitor_feature_statistic",
                "Drift statistic of each feature, latest window.",
                [*_MON, "feature"],
            ),
            "fpval": _gauge(
                "radwatch_monitor_feature_p_value",
                "Corrected p-value of each feature, latest window.",
                [*_MON, "feature"],
            ),
            "fdrift": _gauge(
                "radwatch_monitor_feature_drift",
                "1 if the feature drifted in the latest window.",
                [*_MON, "feature"],
            ),
            "gap": _gauge(
                "radwatch_subgroup_gap",
                "Worst group minus the rest, latest window.",
                [*_MON, "family", "metric"],
            ),
            "gap_lo": _gauge(
                "radwatch_subgroup_gap_lower",
                "Lower CI bound of radwatch_subgroup_gap.",
                [*_MON, "family", "metric"],
            ),
            "gap_hi": _gauge(
                "radwatch_subgroup_gap_upper",
                "Upper CI bound of radwatch_subgroup_gap.",
                [*_MON, "family", "metric"],
            ),
            "perf": _gauge(
                "radwatch_performance",
                "Latest window's measured or estimated performance, and its floor.",
                [*_MON, "finding", "metric", "kind"],
            ),
            "perf_lo": _gauge(
                "radwatch_performance_lower",
                "Lower confidence bound of radwatch_performance.",
                [*_MON, "finding", "metric", "kind"],
            ),
            "perf_hi": _gauge(
                "radwatch_performance_upper",
                "Upper confidence bound of radwatch_performance.",
                [*_MON, "finding", "metric", "kind"],
            ),
            "alerts": _gauge(
                "radwatch_alerts",
                "Alerts by state and severity.",
                ["model", "site", "severity", "state"],
            ),
            "alerts_open": _gauge(
                "radwatch_alerts_open", "Open alerts.", ["model", "site", "severity"]
            ),
            "runs": _gauge(
                "radwatch_retraining_runs", "Retraining runs by state.", ["model", "state"]
            ),
            "approvals": _gauge(
                "radwatch_approval_requests", "Approval requests by state.", ["model", "state"]
            ),
            "pending_age": _gauge(
                "radwatch_approval_pending_age_seconds",
                "Age of the oldest pending approval request.",
                ["model"],
            ),
            "promotions": _gauge(
                "radwatch_promotions",
                "Promotions and rollbacks by state.",
                ["model", "kind", "state"],
            ),
            "routing": _gauge(
                "radwatch_model_routing",
                "1 for each model's current routing.",
                ["model", "mode", "champion_version", "candidate_version"],
            ),
            "canary": _gauge(
                "radwatch_canary_share", "Share of requests answered by the candidate.", ["model"]
            ),
        }
        up = _gauge("radwatch_database_up", "1 if the metrics scrape could read the database.")
        try:
            with self._sessions() as session:
                self._monitors(session, f)
                self._alerts(session, f)
                self._lifecycle(session, f)
            up.add_metric([], 1.0)
        except Exception as exc:
            log.warning("metrics scrape could not read the database: %s", type(exc).__name__)
            up.add_metric([], 0.0)
        yield from f.values()
        yield up

    @staticmethod
    def _monitors(session: Session, f: dict[str, GaugeMetricFamily]) -> None:
        kinds = monitoring.monitor_kinds(session)
        for row in monitoring.latest_results(session):
            labels = [row.monitor, row.model_name, row.site]
            f["stat"].add_metric(labels, row.statistic)
            f["pval"].add_metric(labels, row.p_value)
            f["drift"].add_metric(labels, 1.0 if row.drift else 0.0)
            f["windows"].add_metric(labels, float(row.window_index + 1))
            kind = kinds.get(row.monitor_id or -1) or _kind_from_details(row.details)
            if kind == "drift":
                _features(row, labels, f)
            elif kind == "fairness":
                _gaps(row, labels, f)
            elif kind in ("performance", "estimate"):
                _performance(row, labels, "measured" if kind == "performance" else "estimated", f)

    @staticmethod
    def _alerts(session: Session, f: dict[str, GaugeMetricFamily]) -> None:
        for (model, site, severity, state), n in alerts.alert_counts(session).items():
            f["alerts"].add_metric([model, site, severity, state], float(n))
        for (model, site, severity), n in alerts.open_alert_counts(session).items():
            f["alerts_open"].add_metric([model, site, severity], float(n))

    @staticmethod
    def _lifecycle(session: Session, f: dict[str, GaugeMetricFamily]) -> None:
        runs = retraining.counts(session)
        requests = approvals.counts(session)
        promoted = promotions.counts(session)
        champions = serving.champions(session)
        models = sorted(
            set(champions)
            | {m for m, _ in runs}
            | {m for m, _ in requests}
            | {m for m, _, _ in promoted}
        )
        oldest = approvals.oldest_pending(session)
        now = datetime.now(UTC)
        for model in models:
            for run_state in RUN_STATES:
                n = runs.get((model, run_state), 0)
                f["runs"].add_metric([model, run_state], float(n))
            for request_state in APPROVAL_STATES:
                n = requests.get((model, request_state), 0)
                f["approvals"].add_metric([model, request_state], float(n))
            for kind in PROMOTION_KINDS:
                for promotion_state in PROMOTION_STATES:
                    n = promoted.get((model, kind, promotion_state), 0)
                    f["promotions"].add_metric([model, kind, promotion_state], float(n))
            at = oldest.get(model)
            age = max(0.0, (now - at).total_seconds()) if at is not None else 0.0
            f["pending_age"].add_metric([model], age)
        routed = set()
        for r in serving.all_routing(session):
            routed.add(r.model_name)
            candidate = "" if r.candidate_version is None else str(r.candidate_version)
            f["routing"].add_metric([r.model_name, r.mode, str(r.champion_version), candidate], 1.0)
            f["canary"].add_metric(
                [r.model_name], r.canary_share if r.mode == RoutingMode.CANARY else 0.0
            )
        # A model never promoted by radwatch has no routing row: its champion answers everything.
        for model, version in champions.items():
            if model not in routed:
                f["routing"].add_metric([model, RoutingMode.CHAMPION, str(version), ""], 1.0)
                f["canary"].add_metric([model], 0.0)


def _kind_from_details(details: dict[str, Any]) -> str | None:
    """Kind of a result written before monitors were declared (no ``monitor_id``)."""
    if "columns" in details or "multivariate" in details:
        return "drift"
    return None


def _features(row: MonitorResult, labels: list[str], f: dict[str, GaugeMetricFamily]) -> None:
    d = row.details
    items = [(str(name), r) for name, r in (d.get("columns") or {}).items()]
    items += [(f"embedding:{test}", r) for test, r in (d.get("multivariate") or {}).items()]
    for feature, r in items:
        if not isinstance(r, dict):
            continue
        stat, p = _num(r.get("statistic")), _num(r.get("p_value"))
        if stat is not None:
            f["fstat"].add_metric([*labels, feature], stat)
        if p is not None:
            f["fpval"].add_metric([*labels, feature], p)
        f["fdrift"].add_metric([*labels, feature], 1.0 if r.get("drift") else 0.0)


def _gaps(row: MonitorResult, labels: list[str], f: dict[str, GaugeMetricFamily]) -> None:
    report = row.details.get("report") or {}
    for w in report.get("worst_vs_rest") or []:
        value = _num(w.get("difference"))
        if value is None:
            continue
        key = [*labels, str(w.get("family")), str(w.get("metric"))]
        f["gap"].add_metric(key, value)
        lo, hi = _num(w.get("lower")), _num(w.get("upper"))
        if lo is not None:
            f["gap_lo"].add_metric(key, lo)
        if hi is not None:
            f["gap_hi"].add_metric(key, hi)


def _performance(
    row: MonitorResult, labels: list[str], kind: str, f: dict[str, GaugeMetricFamily]
) -> None:
    d = row.details
    finding = str(d.get("finding", ""))
    metrics = (d.get("report") or {}).get("metrics") or {}
    for metric, m in metrics.items():
        if not isinstance(m, dict):
            continue
        key = [*labels, finding, str(metric), kind]
        value, lo, hi = _num(m.get("value")), _num(m.get("lower")), _num(m.get("upper"))
        if value is not None:
            f["perf"].add_metric(key, value)
        if lo is not None:
            f["perf_lo"].add_metric(key, lo)
        if hi is not None:
            f["perf_hi"].add_metric(key, hi)
    floor = _num(d.get("floor"))
    if floor is not None and d.get("metric"):
        f["perf"].add_metric([*labels, finding, str(d["metric"]), "floor"], floor)
