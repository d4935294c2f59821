"""The Operations dashboard (``radwatch-operations``): is the service healthy?"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as dash_b

from services.grafana.common import MODEL, OPERATIONS_UID, RI, SITE, TRITON, UP_DOWN, base, hq
from services.grafana.panels import (
    Q,
    datasource_variable,
    query_variable,
    row,
    stat_panel,
    time_series,
)
from services.grafana.thresholds import (
    API_P99_SECONDS,
    ERROR_RATIO_CRITICAL,
    ERROR_RATIO_WARNING,
    QUEUE_DEPTH_HIGH,
    QUEUE_LAG_HIGH_S,
)


def operations() -> dash_b.Dashboard:
    http = "radwatch_http_requests_total"
    lat = "radwatch_http_request_duration_seconds"
    d = base(
        OPERATIONS_UID,
        "radwatch / Operations",
        "Service health: API traffic, latency and errors, Celery queues and tasks, Triton.",
    )
    d = (
        d.with_variable(datasource_variable())
        .with_variable(
            query_variable(
                "model",
                "Model",
                "label_values(nv_inference_request_success, model)",
                "Models Triton serves (the radwatch model name is the Triton model name).",
            )
        )
        .with_variable(
            query_variable(
                "version",
                "Version",
                f"label_values(nv_inference_request_success{{{MODEL}}}, version)",
                "Triton versions of the selected models (champion, shadow, canary).",
            )
        )
        .with_variable(
            query_variable(
                "site",
                "Site",
                f"label_values(radwatch_predictions_total{{{MODEL}}}, site)",
                "Hospital sites that sent predictions for the selected models.",
            )
        )
    )
    d = d.with_row(row("Traffic"))
    d = d.with_panel(
        time_series(
            "Requests by route and status",
            "API requests per second by route template and HTTP status.",
            [Q(f"sum by (route, status) (rate({http}[{RI}]))", "{{route}} {{status}}")],
            unit="reqps",
        )
    )
    d = d.with_panel(
        time_series(
            "Predictions by model and site",
            "Prediction events recorded per second (gateway and batch), by model and site.",
            [
                Q(
                    f"sum by (model, site) (rate(radwatch_predictions_total{{{MODEL}, {SITE}}}"
                    f"[{RI}]))",
                    "{{model}} {{site}}",
                )
            ],
            unit="reqps",
        )
    )
    d = d.with_panel(
        time_series(
            "Event ingestion",
            "Events stored, acknowledged as duplicates, and rejected (by error code), per "
            "second and source (gateway or batch).",
            [
                Q(
                    f"sum by (source) (rate(radwatch_events_ingested_total{{{MODEL}}}[{RI}]))",
                    "stored {{source}}",
                ),
                Q(
                    f"sum by (source) (rate(radwatch_events_duplicate_total[{RI}]))",
                    "duplicate {{source}}",
                ),
                Q(
                    f"sum by (source, reason) (rate(radwatch_events_rejected_total[{RI}]))",
                    "rejected {{source}} {{reason}}",
                ),
            ],
            unit="reqps",
        )
    )
    d = d.with_panel(
        time_series(
            "Ground-truth labels",
            "Late labels received per second, by outcome (stored, duplicate, rejected).",
            [
                Q(
                    f"sum by (outcome) (rate(radwatch_labels_ingested_total[{RI}]))",
                    "{{outcome}}",
                )
            ],
            unit="reqps",
        )
    )
    d = d.with_row(row("Latency"))
    d = d.with_panel(
        time_series(
            "API latency percentiles",
            "p50, p95 and p99 of request latency over all routes, from the latency histogram "
            f"(the alert threshold on p99 is {API_P99_SECONDS} s).",
            [
                Q(hq(0.5, lat, ""), "p50"),
                Q(hq(0.95, lat, ""), "p95"),
                Q(hq(0.99, lat, ""), "p99"),
            ],
            unit="s",
            thresholds=[(None, "green"), (API_P99_SECONDS, "red")],
        )
    )
    d = d.with_panel(
        time_series(
            "p99 latency by route",
            "p99 request latency per route template (method merged).",
            [Q(hq(0.99, lat, "route"), "{{route}}")],
            unit="s",
        )
    )
    d = d.with_row(row("Errors"))
    d = d.with_panel(
        time_series(
            "Error responses by status",
            "4xx (the caller can fix it) and 5xx (radwatch or a dependency failed) per second. "
            "No series means no such errors.",
            [Q(f'sum by (status) (rate({http}{{status=~"[45].."}}[{RI}]))', "{{status}}")],
            unit="reqps",
            width=9,
        )
    )
    d = d.with_panel(
        time_series(
            "Errors by code",
            "Error responses by radwatch error code (invalid_image, unknown_model, "
            "serving_unavailable...) and status.",
            [
                Q(
                    f"sum by (code, status) (rate(radwatch_api_errors_total[{RI}]))",
                    "{{code}} ({{status}})",
                )
            ],
            unit="reqps",
            width=9,
        )
    )
    d = d.with_panel(
        stat_panel(
            "5xx ratio",
            "Share of requests answered with a 5xx over the rate interval (0 when none).",
            [
                Q(
                    f'(sum(rate({http}{{status=~"5.."}}[{RI}])) or vector(0)) '
                    f"/ sum(rate({http}[{RI}]))",
                    "5xx",
                )
            ],
            unit="percentunit",
            width=6,
            height=8,
            thresholds=[
                (None, "green"),
                (ERROR_RATIO_WARNING, "orange"),
                (ERROR_RATIO_CRITICAL, "red"),
            ],
        )
    )
    d = d.with_row(row("Celery"))
    d = d.with_panel(
        time_series(
            "Queue depth",
            "Messages waiting in each Celery queue (read from the broker at scrape time).",
            [Q("max by (queue) (radwatch_queue_depth)", "{{queue}}")],
            thresholds=[(None, "green"), (QUEUE_DEPTH_HIGH, "red")],
            width=8,
        )
    )
    d = d.with_panel(
        time_series(
            "Queue lag",
            "Seconds from publish to the start of a task's run, p50 and p95 per queue.",
            [
                Q(hq(0.5, "radwatch_celery_queue_lag_seconds", "queue"), "p50 {{queue}}"),
                Q(hq(0.95, "radwatch_celery_queue_lag_seconds", "queue"), "p95 {{queue}}"),
            ],
            unit="s",
            thresholds=[(None, "green"), (QUEUE_LAG_HIGH_S, "red")],
            width=8,
        )
    )
    d = d.with_panel(
        stat_panel(
            "Dependencies",
            "Whether the metrics scrape reached the broker, the database and the Celery task "
            "counters in Redis (worst replica).",
            [
                Q("min(radwatch_broker_up)", "broker"),
                Q("min(radwatch_database_up)", "database"),
                Q("min(radwatch_celery_metrics_up)", "task metrics"),
            ],
            width=8,
            height=8,
            thresholds=[(None, "red"), (1, "green")],
        ).mappings(UP_DOWN)
    )
    d = d.with_panel(
        time_series(
            "Tasks by outcome",
            "Celery tasks finished per second, by task and outcome (succeeded, failed, retried).",
            [
                Q(
                    f"sum by (task, outcome) (rate(radwatch_celery_tasks_total[{RI}]))",
                    "{{task}} {{outcome}}",
                )
            ],
            unit="ops",
            width=8,
        )
    )
    d = d.with_panel(
        time_series(
            "Task duration p95",
            "p95 run time of each Celery task, in the worker.",
            [Q(hq(0.95, "radwatch_celery_task_duration_seconds", "task"), "{{task}}")],
            unit="s",
            width=8,
        )
    )
    d = d.with_panel(
        stat_panel(
            "Task failures",
            "Celery tasks that failed in the selected time range (0 when none).",
            [
                Q(
                    'sum(increase(radwatch_celery_tasks_total{outcome="failed"}[$__range])) '
                    "or vector(0)",
                    "failed",
                )
            ],
            width=8,
            height=8,
            thresholds=[(None, "green"), (1, "red")],
        )
    )
    d = d.with_row(row("Triton"))
    d = d.with_panel(
        time_series(
            "Inference throughput",
            "Inferences per second by model and version (a batch of n counts n).",
            [
                Q(
                    f"sum by (model, version) (rate(nv_inference_count{TRITON}[{RI}]))",
                    "{{model}} v{{version}}",
                )
            ],
            unit="ops",
        )
    )
    d = d.with_panel(
        time_series(
            "Requests succeeded and failed",
            "Triton inference requests per second; failures by reason (REJECTED, CANCELED, "
            "BACKEND, OTHER).",
            [
                Q(
                    f"sum by (model, version) (rate(nv_inference_request_success{TRITON}[{RI}]))",
                    "ok {{model}} v{{version}}",
                ),
                Q(
                    "sum by (model, version, reason) "
                    f"(rate(nv_inference_request_failure{TRITON}[{RI}]))",
                    "failed {{model}} v{{version}} {{reason}}",
                ),
            ],
            unit="reqps",
        )
    )
    per_request = (
        "sum by (model, version) (rate({m}{sel}[{ri}])) / "
        "sum by (model, version) (rate(nv_inference_request_success{sel}[{ri}]))"
    )
    d = d.with_panel(
        time_series(
            "Request latency",
            "Mean time per successful request: end to end, waiting in Triton's queue, and "
            "computing, by model and version (from Triton's cumulative microsecond counters).",
            [
                Q(
                    per_request.format(m="nv_inference_request_duration_us", sel=TRITON, ri=RI),
                    "total {{model}} v{{version}}",
                ),
                Q(
                    per_request.format(m="nv_inference_queue_duration_us", sel=TRITON, ri=RI),
                    "queue {{model}} v{{version}}",
                ),
                Q(
                    per_request.format(
                        m="nv_inference_compute_infer_duration_us", sel=TRITON, ri=RI
                    ),
                    "compute {{model}} v{{version}}",
                ),
            ],
            unit="µs",
        )
    )
    d = d.with_panel(
        time_series(
            "Batch size",
            "Mean inferences per model execution: how well the dynamic batcher groups requests.",
            [
                Q(
                    f"sum by (model, version) (rate(nv_inference_count{TRITON}[{RI}])) / "
                    "sum by (model, version) "
                    f"(rate(nv_inference_exec_count{TRITON}[{RI}]))",
                    "{{model}} v{{version}}",
                )
            ],
        )
    )
    return d
