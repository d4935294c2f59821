"""Prometheus alerting rules as code, rendered to ``helm/radwatch/rules/radwatch-rules.yaml``.

Each rule is a *signal* (the quantity watched, which exists in a healthy stack) and a
*condition* on it, so the expression Prometheus evaluates is ``signal condition``. Keeping the
two apart lets the live check ask both "does the signal have data?" and "is the whole
expression accepted?", and lets a reader see the threshold at a glance.

Every rule carries ``for:`` (how long the condition must hold before it fires), a ``severity``
label (``critical`` pages someone, ``warning`` goes to a channel), a ``component`` label for
routing, and ``summary``/``description`` annotations that name the model, site or queue.

Database-backed gauges are identical on every API replica, so rules aggregate them with ``max``
by their own labels: one alert per problem, not one per replica scraped. ``radwatch_broker_up``
and ``radwatch_database_up`` are the exception: each replica's own view of its dependencies is
the point, so they are compared per scraped instance.

Alerts that radwatch itself raises (drift, decay, bias: ``/v1/alerts`` and signed webhooks)
show up here too, through ``radwatch_alerts_open``, so on-call sees them next to the
infrastructure alerts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import yaml

from services.grafana.common import LIFECYCLE_UID, MODEL_SAFETY_UID, OPERATIONS_UID
from services.grafana.promql import check_expr
from services.grafana.thresholds import (
    API_P99_SECONDS,
    ERROR_RATIO_CRITICAL,
    PENDING_APPROVAL_MAX_S,
    QUEUE_DEPTH_HIGH,
    QUEUE_LAG_HIGH_S,
    SUBGROUP_MAX_GAP,
    TRITON_FAILURE_RATIO,
)

Severity = Literal["warning", "critical"]

#: Prometheus rule groups, in file order: (group name, dashboard uid its alerts link to).
GROUPS: tuple[tuple[str, str], ...] = (
    ("radwatch-model-safety", MODEL_SAFETY_UID),
    ("radwatch-api", OPERATIONS_UID),
    ("radwatch-celery", OPERATIONS_UID),
    ("radwatch-triton", OPERATIONS_UID),
    ("radwatch-lifecycle", LIFECYCLE_UID),
)


@dataclass(frozen=True, slots=True)
class Rule:
    alert: str
    group: str
    signal: str
    condition: str
    for_: str
    severity: Severity
    component: str
    summary: str
    description: str
    #: The whole expression when it is not ``signal condition`` (then ``condition`` documents
    #: it and ``signal`` is still what the live check expects data from).
    full_expr: str | None = None

    @property
    def expr(self) -> str:
        return self.full_expr or f"{self.signal} {self.condition}"


_MON = "monitor, model, site"
_PERF = f"{_MON}, finding, metric"
_GAP = f"{_MON}, family, metric"
_HTTP = "radwatch_http_requests_total"
_ROLLBACKS = 'radwatch_promotions{kind="rollback"}'

RULES: tuple[Rule, ...] = (
    # --- model safety ---------------------------------------------------------------------------
    Rule(
        "RadwatchDriftPersisting",
        "radwatch-model-safety",
        f"max by ({_MON}) (radwatch_monitor_drift)",
        "== 1",
        "15m",
        "warning",
        "model-safety",
        "Monitor {{ $labels.monitor }} significant on site {{ $labels.site }}",
        "The latest window of monitor {{ $labels.monitor }} for model {{ $labels.model }} at "
        "site {{ $labels.site }} has been significant (drift, decay or bias) for 15 minutes. "
        "Check the site's scanners and protocols on the model-safety dashboard.",
    ),
    Rule(
        "RadwatchCriticalAlertOpen",
        "radwatch-model-safety",
        'max by (model, site) (radwatch_alerts_open{severity="critical"})',
        "> 0",
        "1m",
        "critical",
        "model-safety",
        "Critical radwatch alert open for {{ $labels.model }} at {{ $labels.site }}",
        "{{ $value }} critical alert(s) for model {{ $labels.model }} at site "
        "{{ $labels.site }} are open and not acknowledged. Review them (GET /v1/alerts) and "
        "acknowledge or resolve.",
    ),
    Rule(
        "RadwatchAlertUnacknowledged",
        "radwatch-model-safety",
        'max by (model, site) (radwatch_alerts_open{severity!="critical"})',
        "> 0",
        "1h",
        "warning",
        "model-safety",
        "radwatch alert unacknowledged for an hour: {{ $labels.model }} at {{ $labels.site }}",
        "{{ $value }} non-critical alert(s) for model {{ $labels.model }} at site "
        "{{ $labels.site }} have been open for an hour without acknowledgement.",
    ),
    Rule(
        "RadwatchSubgroupGapConfirmed",
        "radwatch-model-safety",
        f"max by ({_GAP}) (radwatch_subgroup_gap_lower)",
        f"> {SUBGROUP_MAX_GAP}, or the upper bound < -{SUBGROUP_MAX_GAP}",
        "15m",
        "critical",
        "model-safety",
        "Subgroup gap in {{ $labels.metric }} beyond tolerance ({{ $labels.family }})",
        "For model {{ $labels.model }} (monitor {{ $labels.monitor }}, site {{ $labels.site }}) "
        "the confidence interval of the worst {{ $labels.family }} group's difference from the "
        "rest in {{ $labels.metric }} lies beyond the tolerated "
        f"{SUBGROUP_MAX_GAP} (bound {{{{ $value }}}}): the gap is confirmed, not noise.",
        # The gap is worst group minus the rest, so its sign depends on the metric (negative for
        # TPR/AUROC, positive for FPR/ECE): confirmed when the whole interval is beyond the
        # tolerance on either side.
        full_expr=(
            f"max by ({_GAP}) (radwatch_subgroup_gap_lower) > {SUBGROUP_MAX_GAP} "
            f"or min by ({_GAP}) (radwatch_subgroup_gap_upper) < -{SUBGROUP_MAX_GAP}"
        ),
    ),
    Rule(
        "RadwatchPerformanceBelowFloor",
        "radwatch-model-safety",
        f'max by ({_PERF}) (radwatch_performance_upper{{kind="measured"}})',
        f'< max by ({_PERF}) (radwatch_performance{{kind="floor"}})',
        "15m",
        "critical",
        "model-safety",
        "Measured {{ $labels.metric }} of {{ $labels.finding }} below the floor",
        "On late labels, the upper confidence bound of {{ $labels.metric }} for finding "
        "{{ $labels.finding }} (model {{ $labels.model }}, site {{ $labels.site }}) is "
        "{{ $value }}, below the floor (baseline minus the allowed margin): confirmed decay.",
    ),
    Rule(
        "RadwatchEstimatedPerformanceBelowFloor",
        "radwatch-model-safety",
        f'max by ({_PERF}) (radwatch_performance_upper{{kind="estimated"}})',
        f'< max by ({_PERF}) (radwatch_performance{{kind="floor"}})',
        "30m",
        "warning",
        "model-safety",
        "Estimated {{ $labels.metric }} of {{ $labels.finding }} below the floor",
        "The label-free (CBPE) estimate of {{ $labels.metric }} for finding "
        "{{ $labels.finding }} (model {{ $labels.model }}, site {{ $labels.site }}) has an "
        "upper bound of {{ $value }}, below the floor. Prioritise labelling this site's studies.",
    ),
    # --- API ------------------------------------------------------------------------------------
    Rule(
        "RadwatchApiHigh5xxRatio",
        "radwatch-api",
        f'(sum(rate({_HTTP}{{status=~"5.."}}[5m])) or vector(0)) / sum(rate({_HTTP}[5m]))',
        f"> {ERROR_RATIO_CRITICAL}",
        "5m",
        "critical",
        "api",
        "radwatch API answers more than {{ $value | humanizePercentage }} with 5xx",
        "Over 5 minutes {{ $value | humanizePercentage }} of API requests failed with a 5xx "
        f"(threshold {ERROR_RATIO_CRITICAL:.0%}). See 'Errors by code' on the operations "
        "dashboard: serving_unavailable and database_unavailable name the dependency.",
    ),
    Rule(
        "RadwatchApiSlowP99",
        "radwatch-api",
        "histogram_quantile(0.99, sum by (le) "
        "(rate(radwatch_http_request_duration_seconds_bucket[5m])))",
        f"> {API_P99_SECONDS}",
        "10m",
        "warning",
        "api",
        "radwatch API p99 latency is {{ $value | humanizeDuration }}",
        f"The 99th percentile of API request latency has been above {API_P99_SECONDS} s for "
        "10 minutes. Check Triton queue time and the database.",
    ),
    # --- Celery, broker, database ---------------------------------------------------------------
    Rule(
        "RadwatchBrokerDown",
        "radwatch-celery",
        "radwatch_broker_up",
        "== 0",
        "2m",
        "critical",
        "celery",
        "Celery broker unreachable from {{ $labels.instance }}",
        "The metrics scrape of {{ $labels.instance }} could not reach the Celery broker for "
        "2 minutes: monitor windows are not being scheduled.",
    ),
    Rule(
        "RadwatchDatabaseDown",
        "radwatch-celery",
        "radwatch_database_up",
        "== 0",
        "2m",
        "critical",
        "database",
        "Database unreachable from {{ $labels.instance }}",
        "The metrics scrape of {{ $labels.instance }} could not read the database for "
        "2 minutes: predictions are refused with 503 and monitors stop.",
    ),
    Rule(
        "RadwatchTaskMetricsUnavailable",
        "radwatch-celery",
        "radwatch_celery_metrics_up",
        "== 0",
        "10m",
        "warning",
        "celery",
        "Celery task metrics unreadable from {{ $labels.instance }}",
        "The scrape of {{ $labels.instance }} could not read the Celery task counters in "
        "Redis for 10 minutes; queue-lag and task-failure alerts are blind meanwhile.",
    ),
    Rule(
        "RadwatchQueueDepthHigh",
        "radwatch-celery",
        "max by (queue) (radwatch_queue_depth)",
        f"> {QUEUE_DEPTH_HIGH}",
        "10m",
        "warning",
        "celery",
        "Celery queue {{ $labels.queue }} has {{ $value }} waiting messages",
        f"More than {QUEUE_DEPTH_HIGH} messages have waited in queue {{{{ $labels.queue }}}} "
        "for 10 minutes: the workers are not keeping up. Add workers or check for stuck tasks.",
    ),
    Rule(
        "RadwatchQueueLagHigh",
        "radwatch-celery",
        "histogram_quantile(0.95, sum by (le, queue) "
        "(rate(radwatch_celery_queue_lag_seconds_bucket[5m])))",
        f"> {QUEUE_LAG_HIGH_S}",
        "10m",
        "warning",
        "celery",
        "Tasks wait {{ $value | humanizeDuration }} in queue {{ $labels.queue }}",
        f"The p95 time from publish to start in queue {{{{ $labels.queue }}}} has been above "
        f"{QUEUE_LAG_HIGH_S} s for 10 minutes: monitor results and alerts lag the stream.",
    ),
    Rule(
        "RadwatchTaskFailures",
        "radwatch-celery",
        'sum by (task, queue) (rate(radwatch_celery_tasks_total{outcome="failed"}[15m])) '
        "/ sum by (task, queue) (rate(radwatch_celery_tasks_total[15m]))",
        "> 0.1",
        "15m",
        "warning",
        "celery",
        "Celery task {{ $labels.task }} fails ({{ $value | humanizePercentage }})",
        "More than 10% of {{ $labels.task }} runs on queue {{ $labels.queue }} failed over "
        "15 minutes. The worker log has the exception.",
    ),
    # --- Triton ---------------------------------------------------------------------------------
    Rule(
        "RadwatchTritonFailures",
        "radwatch-triton",
        "sum by (model, version) (rate(nv_inference_request_failure[5m])) / "
        "(sum by (model, version) (rate(nv_inference_request_success[5m])) "
        "+ sum by (model, version) (rate(nv_inference_request_failure[5m])))",
        f"> {TRITON_FAILURE_RATIO}",
        "5m",
        "critical",
        "triton",
        "Triton fails {{ $value | humanizePercentage }} of requests for "
        "{{ $labels.model }} v{{ $labels.version }}",
        f"More than {TRITON_FAILURE_RATIO:.0%} of inference requests to "
        "{{ $labels.model }} version {{ $labels.version }} failed over 5 minutes. Check the "
        "tritonserver log and the model's backend.",
    ),
    # --- Lifecycle ------------------------------------------------------------------------------
    Rule(
        "RadwatchApprovalPendingTooLong",
        "radwatch-lifecycle",
        "max by (model) (radwatch_approval_pending_age_seconds)",
        f"> {PENDING_APPROVAL_MAX_S}",
        "10m",
        "warning",
        "lifecycle",
        "Approval for {{ $labels.model }} pending for {{ $value | humanizeDuration }}",
        "A candidate of {{ $labels.model }} has waited for a clinical safety officer's "
        f"decision longer than {PENDING_APPROVAL_MAX_S // 86400} days.",
    ),
    Rule(
        "RadwatchRollback",
        "radwatch-lifecycle",
        f"sum by (model) (max by (model, state) ({_ROLLBACKS}))",
        f"> (sum by (model) (max by (model, state) ({_ROLLBACKS} offset 30m)) "
        f"or sum by (model) (max by (model, state) ({_ROLLBACKS})) * 0)",
        "0m",
        "critical",
        "lifecycle",
        "Model {{ $labels.model }} was rolled back",
        "A rollback of {{ $labels.model }} was recorded in the last 30 minutes. A promoted "
        "version answered patients and was withdrawn: review the post-promotion alert and the "
        "audit trail. (The baseline is 0 for a model's first rollback.)",
    ),
)


class RuleCatalogMismatchError(ValueError):
    """A rule expression names a metric or label the catalog does not have."""


def rule_problems() -> list[str]:
    problems = []
    known = {g for g, _ in GROUPS}
    for r in RULES:
        if r.group not in known:
            problems.append(f"{r.alert}: unknown group {r.group}")
        problems += [f"{r.alert}: {p}" for p in check_expr(r.expr).problems]
    names = [r.alert for r in RULES]
    problems += [
        f"duplicate alert name {n}" for n in sorted({n for n in names if names.count(n) > 1})
    ]
    return problems


def to_document() -> dict[str, Any]:
    """The rule file as data (Prometheus' ``groups:`` format)."""
    problems = rule_problems()
    if problems:
        raise RuleCatalogMismatchError("; ".join(problems))
    groups = []
    for name, uid in GROUPS:
        rules = [
            {
                "alert": r.alert,
                "expr": r.expr,
                "for": r.for_,
                "labels": {"severity": r.severity, "component": r.component},
                "annotations": {
                    "summary": r.summary,
                    "description": r.description,
                    "dashboard": f"/d/{uid}",
                },
            }
            for r in RULES
            if r.group == name
        ]
        groups.append({"name": name, "rules": rules})
    return {"groups": groups}


HEADER = (
    "# Generated by `radwatch grafana generate` from services/grafana/rules.py; do not edit.\n"
    "# Prometheus alerting rules (rule_files format). Metric names: services/metrics/catalog.py.\n"
)


def render_yaml() -> str:
    """The rule file's text; lines are not wrapped, so a diff shows whole expressions."""
    body = yaml.safe_dump(
        to_document(), sort_keys=False, width=4096, allow_unicode=True, default_flow_style=False
    )
    return HEADER + body
