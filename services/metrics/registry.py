"""Process-level Prometheus instruments of the API.

Counters and histograms here live in each process. When the API runs several worker processes
(``radwatch api --workers N``), ``PROMETHEUS_MULTIPROC_DIR`` is set before they start and
``prometheus_client`` writes every process's values to memory-mapped files there, which
``GET /metrics`` merges (see :func:`services.telemetry.endpoints.process_registry`). State that must
agree across replicas (monitor statistics, alerts, lifecycle) is not kept in process memory at
all: :mod:`services.telemetry.collector` reads it from the database at scrape time. Names, types and
labels are listed in :mod:`services.metrics.catalog`.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram, disable_created_metrics

# ``*_created`` series double the exposition and nothing here reads them (multiprocess mode never
# emits them), so every process exposes the same set of series.
disable_created_metrics()  # type: ignore[no-untyped-call]

REQUESTS = Counter(
    "radwatch_http_requests_total",
    "HTTP requests handled, by route template, method and status code.",
    ["route", "method", "status"],
)
REQUEST_LATENCY = Histogram(
    "radwatch_http_request_duration_seconds",
    "HTTP request latency in seconds, by route template and method.",
    ["route", "method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
API_ERRORS = Counter(
    "radwatch_api_errors_total",
    "Error responses by radwatch error code and status.",
    ["code", "status"],
)
PREDICTIONS = Counter(
    "radwatch_predictions_total",
    "Prediction events recorded (gateway and batch), by model and site.",
    ["model", "site"],
)
EVENTS_INGESTED = Counter(
    "radwatch_events_ingested_total",
    "Prediction events stored, by model and source (gateway or batch).",
    ["model", "source"],
)
EVENTS_DUPLICATE = Counter(
    "radwatch_events_duplicate_total",
    "Events whose event_id was already stored (acknowledged, nothing stored).",
    ["source"],
)
EVENTS_REJECTED = Counter(
    "radwatch_events_rejected_total",
    "Events refused with a 4xx, by source and error code.",
    ["source", "reason"],
)
LABELS_INGESTED = Counter(
    "radwatch_labels_ingested_total",
    "Ground-truth labels received, by outcome (stored, duplicate, rejected).",
    ["outcome"],
)
SHADOW_PREDICTIONS = Counter(
    "radwatch_shadow_predictions_total",
    "Mirrored candidate inferences during shadow, by model and outcome (stored, failed).",
    ["model", "outcome"],
)
