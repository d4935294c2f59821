"""The committed dashboards: generated from code, and querying only what the catalog lists.

Reads the JSON files in ``helm/radwatch/dashboards`` (what Grafana will load), not the builder
objects, so the test sees exactly what ships."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from services.grafana.dashboards import (
    LIFECYCLE_UID,
    MODEL_SAFETY_UID,
    OPERATIONS_UID,
    build_all,
    iter_panels,
)
from services.grafana.generate import DEFAULT_DASHBOARDS_DIR, DEFAULT_RULES_PATH, outputs
from services.grafana.promql import check_expr, check_label_values, references, resolve

ROOT = Path(__file__).resolve().parents[3]
DASHBOARDS = ROOT / DEFAULT_DASHBOARDS_DIR
UIDS = (OPERATIONS_UID, MODEL_SAFETY_UID, LIFECYCLE_UID)


def _load(uid: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DASHBOARDS / f"{uid}.json").read_text())
    return data


def _targets(data: dict[str, Any]) -> list[tuple[str, str]]:
    return [(p["title"], t["expr"]) for p in iter_panels(data) for t in p.get("targets", [])]


def test_committed_files_equal_what_the_code_generates() -> None:
    stale = [
        str(f.path.relative_to(ROOT))
        for f in outputs(DASHBOARDS, ROOT / DEFAULT_RULES_PATH)
        if not f.is_current()
    ]
    assert not stale, f"run `radwatch grafana generate` and commit: {stale}"


def test_generation_is_deterministic() -> None:
    assert [r.text() for r in build_all()] == [r.text() for r in build_all()]


def test_three_dashboards_with_fixed_uids() -> None:
    files = sorted(p.name for p in DASHBOARDS.glob("*.json"))
    assert files == sorted(f"{uid}.json" for uid in UIDS)
    for uid in UIDS:
        data = _load(uid)
        assert data["uid"] == uid
        assert "id" not in data or data["id"] is None
        assert data["title"].startswith("radwatch / ")


@pytest.mark.parametrize("uid", UIDS)
def test_every_expression_uses_catalog_metrics_and_labels(uid: str) -> None:
    data = _load(uid)
    targets = _targets(data)
    assert targets
    problems = []
    for title, expr in targets:
        check = check_expr(expr)
        assert check.metrics, f"{title}: no metric in {expr!r}"
        problems += [f"{title}: {p}" for p in check.problems]
    for var in data["templating"]["list"]:
        if var["type"] == "query":
            problems += [f"${var['name']}: {p}" for p in check_label_values(var["query"]).problems]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("uid", UIDS)
def test_second_opinion_every_metric_like_word_is_in_the_catalog(uid: str) -> None:
    """Independent of the PromQL reader: every word that looks like one of our metric names
    resolves to a catalog entry (catches a name the reader might have skipped)."""
    for _, expr in _targets(_load(uid)):
        for word in re.findall(r"\b(?:radwatch|nv)_[a-z0-9_]+\b", expr):
            assert resolve(word) is not None, f"{word} in {expr!r}"


@pytest.mark.parametrize("uid", UIDS)
def test_panels_read_the_datasource_variable_and_fit_the_grid(uid: str) -> None:
    data = _load(uid)
    ids = [p["id"] for p in data["panels"]]
    assert len(ids) == len(set(ids))
    for panel in iter_panels(data):
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["description"], panel["title"]
        for t in panel["targets"]:
            assert t["datasource"]["uid"] == "${datasource}"
        pos = panel["gridPos"]
        assert pos["x"] >= 0, panel["title"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
    names = {v["name"]: v for v in data["templating"]["list"]}
    assert names["datasource"]["type"] == "datasource"
    assert names["datasource"]["query"] == "prometheus"
    assert "model" in names
    for var in names.values():
        if var["type"] == "query":
            assert var["datasource"]["uid"] == "${datasource}"
            assert var["query"].startswith("label_values(")


def test_template_variables_per_dashboard() -> None:
    def names(uid: str) -> set[str]:
        return {v["name"] for v in _load(uid)["templating"]["list"]}

    assert names(OPERATIONS_UID) == {"datasource", "model", "version", "site"}
    assert names(MODEL_SAFETY_UID) == {"datasource", "model", "site", "monitor"}
    assert names(LIFECYCLE_UID) == {"datasource", "model", "version"}


def test_required_content_is_there() -> None:
    """The panels the operations issue asks for, by the metrics they read."""

    def metrics(uid: str) -> set[str]:
        return {m for _, e in _targets(_load(uid)) for m in check_expr(e).metrics}

    ops = metrics(OPERATIONS_UID)
    assert {
        "radwatch_http_requests_total",
        "radwatch_http_request_duration_seconds_bucket",
        "radwatch_api_errors_total",
        "radwatch_queue_depth",
        "radwatch_celery_queue_lag_seconds_bucket",
        "radwatch_celery_task_duration_seconds_bucket",
        "radwatch_celery_tasks_total",
        "nv_inference_count",
        "nv_inference_request_duration_us",
    } <= ops
    safety = metrics(MODEL_SAFETY_UID)
    assert {
        "radwatch_monitor_drift",
        "radwatch_monitor_feature_statistic",
        "radwatch_subgroup_gap",
        "radwatch_subgroup_gap_lower",
        "radwatch_subgroup_gap_upper",
        "radwatch_performance",
        "radwatch_performance_lower",
        "radwatch_performance_upper",
        "radwatch_alerts_open",
    } <= safety
    life = metrics(LIFECYCLE_UID)
    assert {
        "radwatch_retraining_runs",
        "radwatch_approval_requests",
        "radwatch_approval_pending_age_seconds",
        "radwatch_promotions",
        "radwatch_model_routing",
        "radwatch_canary_share",
    } <= life
    latency = [e for _, e in _targets(_load(OPERATIONS_UID)) if "histogram_quantile(0.99" in e]
    assert latency


# --- the PromQL reader itself --------------------------------------------------------------------


def test_reader_rejects_unknown_metric_and_label() -> None:
    assert check_expr("rate(radwatch_nope_total[5m])").problems
    assert check_expr('radwatch_queue_depth{site="a"}').problems
    assert not check_expr('radwatch_queue_depth{queue="monitoring"}').problems


def test_reader_checks_grouping_labels_against_every_aggregated_metric() -> None:
    assert check_expr("sum by (site) (rate(radwatch_http_requests_total[5m]))").problems
    assert check_expr("sum(radwatch_queue_depth) by (model)").problems
    ok = (
        "histogram_quantile(0.9, sum by (le, route) "
        "(rate(radwatch_http_request_duration_seconds_bucket[5m])))"
    )
    assert not check_expr(ok).problems
    # le exists on _bucket only
    assert check_expr("sum by (le) (rate(radwatch_http_request_duration_seconds_sum[5m]))").problems
    # a histogram is not a counter: its bare name is no series
    assert check_expr("rate(radwatch_http_request_duration_seconds[5m])").problems


def test_reader_handles_vector_matching_and_variables() -> None:
    expr = (
        'radwatch_performance_upper{kind="measured", model=~"$model"} '
        '< ignoring(kind) radwatch_performance{kind="floor"}'
    )
    assert not check_expr(expr).problems
    assert check_expr("radwatch_queue_depth / on(model) radwatch_broker_up").problems
    refs = references('rate(radwatch_predictions_total{site=~"$site"}[$__rate_interval])')
    assert refs.metrics == ("radwatch_predictions_total",)
    assert refs.selectors[0].matchers == (("site", "=~", "$site"),)
