"""Process-level Prometheus instruments.

Counters and histograms here are per process. State that must agree across API replicas and
worker processes (monitor statistics, open alerts) is not kept in process memory at all: it is
read from the database at scrape time by :mod:`services.metrics.collector`.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

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
PREDICTIONS = Counter(
    "radwatch_predictions_total",
    "Predictions recorded by the gateway, by model and site.",
    ["model", "site"],
)
