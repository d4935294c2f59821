"""Thresholds shared by the alert rules and the dashboards that draw them, so a red line on a
panel and the rule that pages someone always agree. Units are in the names."""

from __future__ import annotations

from services.monitoring.specs import FairnessSpec

#: Share of API requests answered with 5xx: orange on the dashboard / critical alert.
ERROR_RATIO_WARNING = 0.01
ERROR_RATIO_CRITICAL = 0.05
#: p99 API latency that pages. Predictions call Triton on CPU; 2.5 s is well above a healthy
#: single-study inference and below a client's usual time-out.
API_P99_SECONDS = 2.5
#: Messages waiting in a Celery queue. The monitoring beat enqueues a handful per tick, so a
#: backlog of hundreds means the workers are not keeping up.
QUEUE_DEPTH_HIGH = 100
#: p95 seconds from publish to the start of a task. Monitor windows are due every few seconds;
#: a minute of waiting means results (and alerts) lag behind the stream.
QUEUE_LAG_HIGH_S = 60
#: A pending approval older than this needs chasing (the request itself expires later).
PENDING_APPROVAL_MAX_S = 3 * 86400
#: The fairness monitors' default tolerated gap between the worst subgroup and the rest (taken
#: from the spec, so the rule moves with the default).
SUBGROUP_MAX_GAP: float = float(FairnessSpec.model_fields["max_gap"].default)
#: Share of Triton requests that failed.
TRITON_FAILURE_RATIO = 0.01
