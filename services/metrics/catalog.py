"""The metrics catalog: every metric radwatch exposes, in one place.

``docs/metrics.md`` is rendered from this list (``radwatch metrics catalog``), dashboards and
alert rules query only names listed here, and a test scrapes a running API and checks that the
exposition and this list agree (names, types, labels). Add a metric here first.

Where the values come from matters when the API runs several worker processes and Celery runs
prefork, because each process has its own memory:

- ``process``: counters and histograms of the API processes, aggregated across processes by
  ``prometheus_client``'s multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``), so any replica's
  scrape covers all of its worker processes.
- ``redis``: Celery task counters and histograms. Each worker process adds to shared hashes in
  Redis (HINCRBY/HINCRBYFLOAT are atomic); the API exposes them. Redis keeps nothing on disk, so
  a Redis restart resets them, which Prometheus' ``rate()`` treats as a counter reset.
- ``database``: state read from the system of record at scrape time (monitor results, alerts,
  lifecycle), identical whichever replica is scraped.
- ``broker``: read from the broker at scrape time (queue depth).
- ``triton``: exposed by ``tritonserver`` itself on its metrics port (8002), scraped directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["counter", "gauge", "histogram", "info"]
Source = Literal["process", "redis", "database", "broker", "triton"]
Group = Literal["API", "Ingestion", "Celery", "Monitors", "Alerts", "Lifecycle", "Triton"]


@dataclass(frozen=True, slots=True)
class MetricSpec:
    name: str
    kind: Kind
    labels: tuple[str, ...]
    help: str
    group: Group
    source: Source


_MON = ("monitor", "model", "site")

CATALOG: tuple[MetricSpec, ...] = (
    # --- API -----------------------------------------------------------------------------------
    MetricSpec(
        "radwatch_http_requests_total",
        "counter",
        ("route", "method", "status"),
        "HTTP requests handled, by route template, method and status code (errors are "
        "status >= 400).",
        "API",
        "process",
    ),
    MetricSpec(
        "radwatch_http_request_duration_seconds",
        "histogram",
        ("route", "method"),
        "HTTP request latency in seconds, by route template and method.",
        "API",
        "process",
    ),
    MetricSpec(
        "radwatch_api_errors_total",
        "counter",
        ("code", "status"),
        "Error responses by radwatch error code (e.g. invalid_image, unknown_model) and status.",
        "API",
        "process",
    ),
    # --- Ingestion -----------------------------------------------------------------------------
    MetricSpec(
        "radwatch_predictions_total",
        "counter",
        ("model", "site"),
        "Prediction events recorded (gateway and batch), by model and site.",
        "Ingestion",
        "process",
    ),
    MetricSpec(
        "radwatch_events_ingested_total",
        "counter",
        ("model", "source"),
        "Prediction events stored, by model and source (gateway or batch).",
        "Ingestion",
        "process",
    ),
    MetricSpec(
        "radwatch_events_duplicate_total",
        "counter",
        ("source",),
        "Events whose event_id was already stored (acknowledged, nothing stored).",
        "Ingestion",
        "process",
    ),
    MetricSpec(
        "radwatch_events_rejected_total",
        "counter",
        ("source", "reason"),
        "Events refused with a 4xx, by source and error code.",
        "Ingestion",
        "process",
    ),
    MetricSpec(
        "radwatch_labels_ingested_total",
        "counter",
        ("outcome",),
        "Ground-truth labels received, by outcome (stored, duplicate, rejected).",
        "Ingestion",
        "process",
    ),
    # --- Celery --------------------------------------------------------------------------------
    MetricSpec(
        "radwatch_celery_tasks_total",
        "counter",
        ("task", "queue", "outcome"),
        "Celery tasks finished, by task name, queue and outcome (succeeded, failed, retried).",
        "Celery",
        "redis",
    ),
    MetricSpec(
        "radwatch_celery_task_duration_seconds",
        "histogram",
        ("task", "queue"),
        "Celery task run time in seconds (start to finish, in the worker).",
        "Celery",
        "redis",
    ),
    MetricSpec(
        "radwatch_celery_queue_lag_seconds",
        "histogram",
        ("queue",),
        "Seconds a task waited in the queue: from publish to the start of its run.",
        "Celery",
        "redis",
    ),
    MetricSpec(
        "radwatch_queue_depth",
        "gauge",
        ("queue",),
        "Messages waiting in each Celery queue.",
        "Celery",
        "broker",
    ),
    MetricSpec(
        "radwatch_broker_up",
        "gauge",
        (),
        "1 if the metrics scrape could reach the Celery broker.",
        "Celery",
        "broker",
    ),
    MetricSpec(
        "radwatch_celery_metrics_up",
        "gauge",
        (),
        "1 if the metrics scrape could read the Celery task counters from Redis.",
        "Celery",
        "redis",
    ),
    # --- Monitors ------------------------------------------------------------------------------
    MetricSpec(
        "radwatch_monitor_statistic",
        "gauge",
        _MON,
        "Headline statistic of the latest window of each monitor (site '*' = global).",
        "Monitors",
        "database",
    ),
    MetricSpec(
        "radwatch_monitor_p_value",
        "gauge",
        _MON,
        "p-value of the latest window of each monitor.",
        "Monitors",
        "database",
    ),
    MetricSpec(
        "radwatch_monitor_drift",
        "gauge",
        _MON,
        "Decision of the latest window: 1 if significant (drift, decay or bias), else 0.",
        "Monitors",
        "database",
    ),
    MetricSpec(
        "radwatch_monitor_windows",
        "gauge",
        _MON,
        "Windows computed so far, by monitor, model and site.",
        "Monitors",
        "database",
    ),
    MetricSpec(
        "radwatch_monitor_feature_statistic",
        "gauge",
        (*_MON, "feature"),
        "Drift statistic of each tested feature in the latest window (feature 'embedding:mmd' "
        "is the multivariate embedding test).",
        "Monitors",
        "database",
    ),
    MetricSpec(
        "radwatch_monitor_feature_p_value",
        "gauge",
        (*_MON, "feature"),
        "Corrected p-value of each tested feature in the latest window.",
        "Monitors",
        "database",
    ),
    MetricSpec(
        "radwatch_monitor_feature_drift",
        "gauge",
        (*_MON, "feature"),
        "1 if the feature drifted in the latest window (after the multiple-test correction).",
        "Monitors",
        "database",
    ),
    MetricSpec(
        "radwatch_subgroup_gap",
        "gauge",
        (*_MON, "family", "metric"),
        "Worst group minus the rest for each attribute family and metric, latest window.",
        "Monitors",
        "database",
    ),
    MetricSpec(
        "radwatch_subgroup_gap_lower",
        "gauge",
        (*_MON, "family", "metric"),
        "Lower bound of the bootstrap confidence interval of radwatch_subgroup_gap.",
        "Monitors",
        "database",
    ),
    MetricSpec(
        "radwatch_subgroup_gap_upper",
        "gauge",
        (*_MON, "family", "metric"),
        "Upper bound of the bootstrap confidence interval of radwatch_subgroup_gap.",
        "Monitors",
        "database",
    ),
    MetricSpec(
        "radwatch_performance",
        "gauge",
        (*_MON, "finding", "metric", "kind"),
        "Latest window's performance: kind 'measured' (on late labels) or 'estimated' "
        "(label-free CBPE), plus 'floor' (baseline minus the allowed margin).",
        "Monitors",
        "database",
    ),
    MetricSpec(
        "radwatch_performance_lower",
        "gauge",
        (*_MON, "finding", "metric", "kind"),
        "Lower confidence bound of radwatch_performance (measured and estimated).",
        "Monitors",
        "database",
    ),
    MetricSpec(
        "radwatch_performance_upper",
        "gauge",
        (*_MON, "finding", "metric", "kind"),
        "Upper confidence bound of radwatch_performance (measured and estimated).",
        "Monitors",
        "database",
    ),
    # --- Alerts --------------------------------------------------------------------------------
    MetricSpec(
        "radwatch_alerts",
        "gauge",
        ("model", "site", "severity", "state"),
        "Alerts by state (open, acknowledged, resolved) and severity.",
        "Alerts",
        "database",
    ),
    MetricSpec(
        "radwatch_alerts_open",
        "gauge",
        ("model", "site", "severity"),
        "Open (not yet acknowledged) alerts, by model, site and severity.",
        "Alerts",
        "database",
    ),
    MetricSpec(
        "radwatch_database_up",
        "gauge",
        (),
        "1 if the metrics scrape could read the database.",
        "Alerts",
        "database",
    ),
    # --- Lifecycle -----------------------------------------------------------------------------
    MetricSpec(
        "radwatch_retraining_runs",
        "gauge",
        ("model", "state"),
        "Retraining runs by state (queued, running, succeeded, failed).",
        "Lifecycle",
        "database",
    ),
    MetricSpec(
        "radwatch_approval_requests",
        "gauge",
        ("model", "state"),
        "Approval requests by state (pending, approved, rejected, withdrawn, expired).",
        "Lifecycle",
        "database",
    ),
    MetricSpec(
        "radwatch_approval_pending_age_seconds",
        "gauge",
        ("model",),
        "Age of the oldest pending approval request, in seconds (0 when none is pending).",
        "Lifecycle",
        "database",
    ),
    MetricSpec(
        "radwatch_promotions",
        "gauge",
        ("model", "kind", "state"),
        "Promotions and rollbacks (kind) by state (in_progress, succeeded, failed).",
        "Lifecycle",
        "database",
    ),
    MetricSpec(
        "radwatch_shadow_predictions_total",
        "counter",
        ("model", "outcome"),
        "Mirrored candidate inferences during shadow, by model and outcome (stored, failed, "
        "skipped: shed because the candidate fell behind).",
        "Lifecycle",
        "process",
    ),
    MetricSpec(
        "radwatch_model_routing",
        "gauge",
        ("model", "mode", "champion_version", "candidate_version"),
        "1 for each model's current routing (mode champion, shadow or canary).",
        "Lifecycle",
        "database",
    ),
    MetricSpec(
        "radwatch_canary_share",
        "gauge",
        ("model",),
        "Share of a model's requests answered by the candidate (0 outside canary).",
        "Lifecycle",
        "database",
    ),
    # --- Triton (scraped from tritonserver :8002, not from radwatch) ----------------------------
    MetricSpec(
        "nv_inference_request_success",
        "counter",
        ("model", "version"),
        "Triton: successful inference requests.",
        "Triton",
        "triton",
    ),
    MetricSpec(
        "nv_inference_request_failure",
        "counter",
        ("model", "version", "reason"),
        "Triton: failed inference requests.",
        "Triton",
        "triton",
    ),
    MetricSpec(
        "nv_inference_count",
        "counter",
        ("model", "version"),
        "Triton: inferences performed (a batch of n counts n).",
        "Triton",
        "triton",
    ),
    MetricSpec(
        "nv_inference_exec_count",
        "counter",
        ("model", "version"),
        "Triton: model executions (batches).",
        "Triton",
        "triton",
    ),
    MetricSpec(
        "nv_inference_request_duration_us",
        "counter",
        ("model", "version"),
        "Triton: cumulative end-to-end request time in microseconds.",
        "Triton",
        "triton",
    ),
    MetricSpec(
        "nv_inference_queue_duration_us",
        "counter",
        ("model", "version"),
        "Triton: cumulative time requests waited in the scheduler queue, in microseconds.",
        "Triton",
        "triton",
    ),
    MetricSpec(
        "nv_inference_compute_infer_duration_us",
        "counter",
        ("model", "version"),
        "Triton: cumulative model compute time in microseconds.",
        "Triton",
        "triton",
    ),
)

BY_NAME: dict[str, MetricSpec] = {m.name: m for m in CATALOG}


def spec(name: str) -> MetricSpec:
    return BY_NAME[name]


def render_markdown() -> str:
    """``docs/metrics.md``: one table per group."""
    lines = [
        "# Metrics catalog",
        "",
        "Generated from `services/metrics/catalog.py` by `radwatch metrics catalog > "
        "docs/metrics.md`; a test fails when the two differ. radwatch's own metrics are served "
        "by the API at `GET /metrics`; `nv_inference_*` come from `tritonserver` on port 8002.",
        "",
        "Source says where a value lives, which is why it is the same on every replica: "
        "`process` = API counters merged across worker processes (multiprocess mode); `redis` = "
        "Celery task counters shared by all worker processes in Redis; `database` = read from "
        "PostgreSQL at scrape time; `broker` = read from the broker at scrape time; `triton` = "
        "Triton's own.",
        "",
    ]
    groups: list[str] = []
    for m in CATALOG:
        if m.group not in groups:
            groups.append(m.group)
    for group in groups:
        lines += [
            f"## {group}",
            "",
            "| metric | type | labels | source | meaning |",
            "|---|---|---|---|---|",
        ]
        for m in CATALOG:
            if m.group != group:
                continue
            labels = ", ".join(f"`{label}`" for label in m.labels) or "-"
            lines.append(f"| `{m.name}` | {m.kind} | {labels} | {m.source} | {m.help} |")
        lines.append("")
    return "\n".join(lines)
