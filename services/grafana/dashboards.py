"""The three radwatch dashboards, built as code with ``grafana-foundation-sdk``.

- **Operations** (``radwatch-operations``): is the service healthy? Traffic, latency
  percentiles, errors, Celery queues and tasks, Triton throughput and latency.
- **Model safety** (``radwatch-model-safety``): is the model still safe? Drift per site and
  feature, subgroup gaps with their confidence intervals, measured and estimated performance
  against the floor, open alerts.
- **Lifecycle** (``radwatch-lifecycle``): what is changing? Retraining runs, approvals and
  their age, promotions and rollbacks, current routing and canary share.

Every query names only metrics and labels of :mod:`services.metrics.catalog` (checked by
:func:`services.grafana.promql.check_expr`, which :func:`build_all` runs, so a dashboard that
drifts from the catalog cannot even be generated). Gauges read from the database are the same on
every API replica, so they are aggregated with ``max``/``min`` by their own labels: that
collapses the copies Prometheus scrapes from each replica instead of adding them up.

UIDs are fixed so that links and ``radwatch grafana push`` keep pointing at the same dashboard,
and the JSON is rendered deterministically (sorted keys, stable panel ids) so the committed
files in ``helm/radwatch/dashboards`` change only when the code does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, get_args

from grafana_foundation_sdk.builders import dashboard as dash_b
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard

from services.grafana.panels import (
    Q,
    datasource_variable,
    query_variable,
    row,
    stat_panel,
    state_timeline,
    table_panel,
    time_series,
)
from services.grafana.promql import check_expr, check_label_values
from services.grafana.thresholds import (
    API_P99_SECONDS,
    ERROR_RATIO_CRITICAL,
    ERROR_RATIO_WARNING,
    PENDING_APPROVAL_MAX_S,
    QUEUE_DEPTH_HIGH,
    QUEUE_LAG_HIGH_S,
    SUBGROUP_MAX_GAP,
)
from services.monitoring.specs import Metric as PerformanceMetric

TAGS = ["radwatch"]
RI = "$__rate_interval"

OPERATIONS_UID = "radwatch-operations"
MODEL_SAFETY_UID = "radwatch-model-safety"
LIFECYCLE_UID = "radwatch-lifecycle"

#: Label matchers filled by the template variables (multi-value, "All" = ``.*``).
MODEL = 'model=~"$model"'
SITE = 'site=~"$site"'
VERSION = 'version=~"$version"'
MONITOR = 'monitor=~"$monitor"'
SAFETY = f"{{{MODEL}, {SITE}, {MONITOR}}}"
TRITON = f"{{{MODEL}, {VERSION}}}"

UP_DOWN: list[dashboard.ValueMapping] = [
    dashboard.ValueMap(
        options={
            "0": dashboard.ValueMappingResult(text="down", color="red"),
            "1": dashboard.ValueMappingResult(text="up", color="green"),
        }
    )
]


def _base(uid: str, title: str, description: str) -> dash_b.Dashboard:
    return (
        dash_b.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(TAGS)
        .editable()
        .refresh("30s")
        .time("now-6h", "now")
        .timezone("browser")
        .tooltip(dashboard.DashboardCursorSync.CROSSHAIR)
    )


def _hq(q: float, bucket: str, by: str, selector: str = "") -> str:
    return (
        f"histogram_quantile({q}, sum by (le{', ' + by if by else ''}) "
        f"(rate({bucket}_bucket{selector}[{RI}])))"
    )


# --- Operations -------------------------------------------------------------------------------


def operations() -> dash_b.Dashboard:
    http = "radwatch_http_requests_total"
    lat = "radwatch_http_request_duration_seconds"
    d = _base(
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
                Q(_hq(0.5, lat, ""), "p50"),
                Q(_hq(0.95, lat, ""), "p95"),
                Q(_hq(0.99, lat, ""), "p99"),
            ],
            unit="s",
            thresholds=[(None, "green"), (API_P99_SECONDS, "red")],
        )
    )
    d = d.with_panel(
        time_series(
            "p99 latency by route",
            "p99 request latency per route template (method merged).",
            [Q(_hq(0.99, lat, "route"), "{{route}}")],
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
                Q(_hq(0.5, "radwatch_celery_queue_lag_seconds", "queue"), "p50 {{queue}}"),
                Q(_hq(0.95, "radwatch_celery_queue_lag_seconds", "queue"), "p95 {{queue}}"),
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
            [Q(_hq(0.95, "radwatch_celery_task_duration_seconds", "task"), "{{task}}")],
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


# --- Model safety -----------------------------------------------------------------------------


def model_safety() -> dash_b.Dashboard:
    d = _base(
        MODEL_SAFETY_UID,
        "radwatch / Model safety",
        "Drift per site and feature, subgroup gaps with confidence intervals, measured and "
        "estimated performance against the floor, open alerts.",
    )
    d = (
        d.with_variable(datasource_variable())
        .with_variable(
            query_variable(
                "model",
                "Model",
                "label_values(radwatch_monitor_windows, model)",
                "Models with at least one computed monitor window.",
            )
        )
        .with_variable(
            query_variable(
                "site",
                "Site",
                f"label_values(radwatch_monitor_windows{{{MODEL}}}, site)",
                "Sites of the selected models ('*' is a global monitor's result).",
            )
        )
        .with_variable(
            query_variable(
                "monitor",
                "Monitor",
                f"label_values(radwatch_monitor_windows{{{MODEL}}}, monitor)",
                "Declared monitors of the selected models.",
            )
        )
    )
    d = d.with_row(row("Alerts"))
    d = d.with_panel(
        stat_panel(
            "Open alerts",
            "Alerts not yet acknowledged, for the selected models and sites (0 when none).",
            [
                Q(
                    f'sum(radwatch_alerts_open{{{MODEL}, {SITE}, severity="critical"}}) '
                    "or vector(0)",
                    "critical",
                ),
                Q(
                    f'sum(radwatch_alerts_open{{{MODEL}, {SITE}, severity!="critical"}}) '
                    "or vector(0)",
                    "other",
                ),
            ],
            width=6,
            height=8,
            thresholds=[(None, "green"), (1, "red")],
        )
    )
    d = d.with_panel(
        table_panel(
            "Alerts by site, severity and state",
            "Every alert of the selected models and sites, counted by state (open, "
            "acknowledged, resolved).",
            [
                Q(
                    f"max by (model, site, severity, state) (radwatch_alerts{{{MODEL}, {SITE}}})",
                    "",
                )
            ],
            width=18,
        )
    )
    d = d.with_row(row("Drift"))
    d = d.with_panel(
        state_timeline(
            "Drift decision per site",
            "Decision of each monitor's latest window: red when significant (drift, decay or "
            "bias) after the multiple-test correction.",
            [Q(f"max by (monitor, site) (radwatch_monitor_drift{SAFETY})", "{{site}} {{monitor}}")],
        )
    )
    d = d.with_panel(
        time_series(
            "Monitor statistic",
            "Headline statistic of each monitor's latest window (MMD² for drift, the metric for "
            "performance, the worst gap for fairness).",
            [
                Q(
                    f"max by (monitor, site) (radwatch_monitor_statistic{SAFETY})",
                    "{{site}} {{monitor}}",
                )
            ],
            step=True,
        )
    )
    d = d.with_panel(
        time_series(
            "Monitor p-value",
            "p-value of each monitor's latest window (log scale); below alpha is significant.",
            [
                Q(
                    f"min by (monitor, site) (radwatch_monitor_p_value{SAFETY})",
                    "{{site}} {{monitor}}",
                )
            ],
            log_scale=True,
            step=True,
        )
    )
    d = d.with_panel(
        time_series(
            "Windows computed",
            "Monitor windows computed so far: a flat line while events arrive means the worker "
            "is behind or stopped.",
            [
                Q(
                    f"max by (monitor, site) (radwatch_monitor_windows{SAFETY})",
                    "{{site}} {{monitor}}",
                )
            ],
            step=True,
        )
    )
    d = d.with_panel(
        state_timeline(
            "Drifted features per site",
            "Which tested features (acquisition metadata, image statistics, 'embedding:mmd') "
            "drifted in the latest window, after the multiple-test correction.",
            [
                Q(
                    f"max by (site, feature) (radwatch_monitor_feature_drift{SAFETY})",
                    "{{site}} {{feature}}",
                )
            ],
            width=24,
            height=10,
        )
    )
    d = d.with_panel(
        time_series(
            "Feature drift statistic",
            "Test statistic of each feature in the latest window, per site.",
            [
                Q(
                    f"max by (site, feature) (radwatch_monitor_feature_statistic{SAFETY})",
                    "{{site}} {{feature}}",
                )
            ],
            step=True,
        )
    )
    d = d.with_panel(
        time_series(
            "Feature p-value (corrected)",
            "Multiplicity-corrected p-value of each feature in the latest window (log scale).",
            [
                Q(
                    f"min by (site, feature) (radwatch_monitor_feature_p_value{SAFETY})",
                    "{{site}} {{feature}}",
                )
            ],
            log_scale=True,
            step=True,
        )
    )
    d = d.with_row(row("Subgroups"))
    gap = "max by (site, family, metric) ({m}{sel})"
    d = d.with_panel(
        time_series(
            "Subgroup gap with confidence interval",
            "Worst subgroup minus the rest, per attribute family and metric, with the bootstrap "
            "interval (dashed): negative is worse for TPR and AUROC, positive for FPR and ECE. "
            f"The red lines are the default tolerance (±{SUBGROUP_MAX_GAP}); an interval wholly "
            "beyond one is a confirmed gap.",
            [
                Q(gap.format(m="radwatch_subgroup_gap", sel=SAFETY), "{{family}} {{metric}}"),
                Q(
                    gap.format(m="radwatch_subgroup_gap_lower", sel=SAFETY),
                    "{{family}} {{metric}} lower",
                ),
                Q(
                    gap.format(m="radwatch_subgroup_gap_upper", sel=SAFETY),
                    "{{family}} {{metric}} upper",
                ),
            ],
            thresholds=[
                (None, "red"),
                (-SUBGROUP_MAX_GAP, "transparent"),
                (SUBGROUP_MAX_GAP, "red"),
            ],
            dashed_refs=("B", "C"),
            width=24,
            step=True,
        )
    )
    d = d.with_row(row("Performance"))
    perf = "max by (site, finding, metric) ({m}{{{sel}, kind={kind}}})"
    # Only the metrics a performance monitor can be declared on (each has a floor); the
    # monitors also report brier, prevalence and friends, which do not share this axis.
    sel = f'{MODEL}, {SITE}, {MONITOR}, metric=~"{"|".join(get_args(PerformanceMetric))}"'
    d = d.with_panel(
        time_series(
            "Measured vs estimated performance",
            "Latest window's metric measured on late labels and estimated without labels "
            "(CBPE), with their confidence bounds (dashed) and the floor (baseline minus the "
            "allowed margin). An upper bound below the floor is a confirmed decay.",
            [
                *(
                    Q(
                        perf.format(m=f"radwatch_performance{suffix}", sel=sel, kind=f'"{kind}"'),
                        f"{kind}{bound} {{{{site}}}} {{{{finding}}}} {{{{metric}}}}",
                    )
                    for kind in ("measured", "estimated")
                    for suffix, bound in (("", ""), ("_lower", " lower"), ("_upper", " upper"))
                ),
                Q(
                    perf.format(m="radwatch_performance", sel=sel, kind='"floor"'),
                    "floor {{site}} {{finding}} {{metric}}",
                ),
            ],
            unit="none",
            min_value=0,
            dashed_refs=("B", "C", "E", "F"),
            width=24,
            height=10,
            step=True,
        ).override_by_query(
            "G",
            [
                dashboard.DynamicConfigValue(
                    id_val="color", value={"mode": "fixed", "fixedColor": "red"}
                ),
                dashboard.DynamicConfigValue(id_val="custom.lineWidth", value=2),
            ],
        )
    )
    return d


# --- Lifecycle --------------------------------------------------------------------------------


def lifecycle() -> dash_b.Dashboard:
    d = _base(
        LIFECYCLE_UID,
        "radwatch / Lifecycle",
        "Retraining runs, approvals waiting for a clinical safety officer, promotions and "
        "rollbacks, current routing and canary share.",
    )
    d = (
        d.with_variable(datasource_variable())
        .with_variable(
            query_variable(
                "model",
                "Model",
                "label_values(radwatch_retraining_runs, model)",
                "Deployed models (the lifecycle gauges list every deployed model, with zeros).",
            )
        )
        .with_variable(
            query_variable(
                "version",
                "Version",
                f"label_values(nv_inference_request_success{{{MODEL}}}, version)",
                "Triton versions of the selected models (champion and candidate).",
            )
        )
    )
    d = d.with_row(row("Routing"))
    d = d.with_panel(
        table_panel(
            "Current routing",
            "Each model's routing now: mode (champion, shadow, canary) with the champion and "
            "candidate versions.",
            [
                Q(
                    "max by (model, mode, champion_version, candidate_version) "
                    f"(radwatch_model_routing{{{MODEL}}})",
                    "",
                )
            ],
        )
    )
    d = d.with_panel(
        time_series(
            "Canary share",
            "Share of each model's requests answered by the candidate (0 outside canary).",
            [Q(f"max by (model) (radwatch_canary_share{{{MODEL}}})", "{{model}}")],
            unit="percentunit",
            min_value=0,
            step=True,
        )
    )
    d = d.with_panel(
        time_series(
            "Traffic per served version",
            "Successful Triton requests per second by version: during shadow and canary the "
            "candidate's share shows here.",
            [
                Q(
                    f"sum by (model, version) (rate(nv_inference_request_success{TRITON}[{RI}]))",
                    "{{model}} v{{version}}",
                )
            ],
            unit="reqps",
            stacked=True,
            width=24,
        )
    )
    d = d.with_row(row("Approvals"))
    d = d.with_panel(
        stat_panel(
            "Pending approvals",
            "Approval requests waiting for a clinical safety officer (0 when none).",
            [
                Q(
                    f'sum(max by (model) (radwatch_approval_requests{{{MODEL}, state="pending"}}))'
                    " or vector(0)",
                    "pending",
                )
            ],
            width=6,
            height=8,
            thresholds=[(None, "green"), (1, "orange")],
        )
    )
    d = d.with_panel(
        stat_panel(
            "Oldest pending approval",
            "Age of the oldest pending approval request (0 when none is pending); the alert "
            f"fires after {PENDING_APPROVAL_MAX_S // 86400} days.",
            [
                Q(
                    f"max(radwatch_approval_pending_age_seconds{{{MODEL}}}) or vector(0)",
                    "age",
                )
            ],
            unit="s",
            width=6,
            height=8,
            thresholds=[(None, "green"), (86400, "orange"), (PENDING_APPROVAL_MAX_S, "red")],
        )
    )
    d = d.with_panel(
        time_series(
            "Approval requests by state",
            "Approval requests by state (pending, approved, rejected, withdrawn, expired).",
            [
                Q(
                    f"max by (model, state) (radwatch_approval_requests{{{MODEL}}})",
                    "{{model}} {{state}}",
                )
            ],
            step=True,
        )
    )
    d = d.with_row(row("Retraining and promotion"))
    rollbacks = f'radwatch_promotions{{{MODEL}, kind="rollback"}}'
    d = d.with_panel(
        time_series(
            "Retraining runs by state",
            "Retraining runs by state (queued, running, succeeded, failed).",
            [
                Q(
                    f"max by (model, state) (radwatch_retraining_runs{{{MODEL}}})",
                    "{{model}} {{state}}",
                )
            ],
            step=True,
        )
    )
    d = d.with_panel(
        time_series(
            "Promotions and rollbacks",
            "Promotions and rollbacks by kind and state (in_progress, succeeded, failed).",
            [
                Q(
                    f"max by (model, kind, state) (radwatch_promotions{{{MODEL}}})",
                    "{{model}} {{kind}} {{state}}",
                )
            ],
            step=True,
        )
    )
    d = d.with_panel(
        stat_panel(
            "Rollbacks in range",
            "Rollbacks recorded during the selected time range (0 when none).",
            [
                Q(
                    f"(sum(max by (model) ({rollbacks})) "
                    f"- (sum(max by (model) ({rollbacks} offset $__range)) or vector(0))) "
                    "or vector(0)",
                    "rollbacks",
                )
            ],
            width=24,
            thresholds=[(None, "green"), (1, "red")],
        )
    )
    return d


# --- Rendering --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rendered:
    uid: str
    filename: str
    model: dict[str, Any]

    def text(self) -> str:
        return render_json(self.model)


BUILDERS: tuple[tuple[str, Any], ...] = (
    (OPERATIONS_UID, operations),
    (MODEL_SAFETY_UID, model_safety),
    (LIFECYCLE_UID, lifecycle),
)


class CatalogMismatchError(ValueError):
    """A dashboard query names a metric or label the catalog does not have."""


def to_dict(builder: cogbuilder.Builder[dashboard.Dashboard]) -> dict[str, Any]:
    """The dashboard as plain JSON data, with panel ids numbered 1.. in layout order (the SDK
    leaves them unset, and Grafana needs them unique for links and "view panel")."""
    data: dict[str, Any] = json.loads(json.dumps(builder.build(), cls=JSONEncoder))
    next_id = 1
    for panel in data.get("panels", []):
        panel["id"] = next_id
        next_id += 1
        for inner in panel.get("panels", []):
            inner["id"] = next_id
            next_id += 1
    return data


def render_json(data: dict[str, Any]) -> str:
    """Deterministic text: sorted keys, two-space indent, trailing newline."""
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def iter_panels(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Every non-row panel, including panels nested in collapsed rows."""
    out: list[dict[str, Any]] = []
    for panel in data.get("panels", []):
        if panel.get("type") == "row":
            out.extend(panel.get("panels", []))
        else:
            out.append(panel)
    return out


def catalog_problems(data: dict[str, Any]) -> list[str]:
    """Every way ``data``'s queries and variable queries disagree with the metrics catalog."""
    problems: list[str] = []
    for panel in iter_panels(data):
        for target in panel.get("targets", []):
            for p in check_expr(target["expr"]).problems:
                problems.append(f"{data['uid']} / {panel['title']}: {p}")
    for var in data.get("templating", {}).get("list", []):
        if var.get("type") == "query":
            for p in check_label_values(str(var["query"])).problems:
                problems.append(f"{data['uid']} / variable {var['name']}: {p}")
    return problems


def build_all() -> list[Rendered]:
    """All dashboards, checked against the catalog."""
    out = []
    for uid, build in BUILDERS:
        data = to_dict(build())
        problems = catalog_problems(data)
        if problems:
            raise CatalogMismatchError("; ".join(problems))
        out.append(Rendered(uid, f"{uid}.json", data))
    return out
