"""The alerting rules: generated from code, accepted by ``promtool check rules``, and firing
(or not) on synthetic series under ``promtool test rules``.

promtool comes with Debian's ``prometheus`` package (``scripts/install.sh --dev`` installs it).
The unit tests give each rule the series a real scrape would produce (including ``instance`` and
``job``, which Prometheus adds) and check the alert labels and annotations Prometheus renders.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.grafana.generate import DEFAULT_RULES_PATH
from services.grafana.promql import check_expr
from services.grafana.rules import GROUPS, RULES, Rule, render_yaml

ROOT = Path(__file__).resolve().parents[3]
RULES_FILE = ROOT / DEFAULT_RULES_PATH
PROMTOOL = shutil.which("promtool")


@pytest.fixture
def _promtool() -> str:
    # Installed by the test command (scripts/install.sh --dev); missing means a broken setup.
    if PROMTOOL is None:
        pytest.fail("promtool is missing: apt-get install prometheus (scripts/install.sh --dev)")
    return PROMTOOL


needs_promtool = pytest.mark.usefixtures("_promtool")
BY_NAME = {r.alert: r for r in RULES}


def test_committed_rule_file_equals_generated() -> None:
    assert RULES_FILE.read_text() == render_yaml(), "run `radwatch grafana generate`"


def test_every_rule_is_complete() -> None:
    doc = yaml.safe_load(RULES_FILE.read_text())
    assert [g["name"] for g in doc["groups"]] == [g for g, _ in GROUPS]
    seen = set()
    for group in doc["groups"]:
        assert group["rules"], group["name"]
        for rule in group["rules"]:
            assert rule["alert"] not in seen
            seen.add(rule["alert"])
            assert re.fullmatch(r"\d+[smh]", rule["for"]), rule
            assert rule["labels"]["severity"] in ("warning", "critical")
            assert rule["labels"]["component"]
            assert rule["annotations"]["summary"]
            assert rule["annotations"]["description"]
            assert rule["annotations"]["dashboard"].startswith("/d/radwatch-")
            assert not check_expr(rule["expr"]).problems, rule["alert"]


def test_the_conditions_the_issue_asks_for_are_covered() -> None:
    exprs = " | ".join(r.expr for r in RULES)
    for needle in (
        "radwatch_monitor_drift",
        'radwatch_alerts_open{severity="critical"}',
        "radwatch_subgroup_gap_lower",
        "radwatch_subgroup_gap_upper",
        'radwatch_performance_upper{kind="measured"}',
        'status=~"5.."',
        "histogram_quantile(0.99",
        "radwatch_queue_depth",
        "radwatch_celery_queue_lag_seconds_bucket",
        "radwatch_broker_up == 0",
        "radwatch_database_up == 0",
        "radwatch_approval_pending_age_seconds",
        'kind="rollback"',
        "nv_inference_request_failure",
    ):
        assert needle in exprs, needle


@needs_promtool
def test_promtool_accepts_the_rule_file() -> None:
    assert PROMTOOL is not None
    out = subprocess.run(
        [PROMTOOL, "check", "rules", str(RULES_FILE)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(RULES)} rules found" in out.stdout


# --- promtool unit tests --------------------------------------------------------------------------

SCRAPE = {"instance": "api-0:8080", "job": "radwatch-api"}


def _series(name: str, labels: dict[str, str], values: str) -> dict[str, str]:
    inner = ",".join(f'{k}="{v}"' for k, v in {**labels, **SCRAPE}.items())
    return {"series": f"{name}{{{inner}}}", "values": values}


def _go_value(v: float) -> str:
    """How Go's text/template prints a float64 ``$value`` (shortest form, no trailing .0)."""
    text = repr(float(v))
    return text[:-2] if text.endswith(".0") else text


def _expand(template: str, labels: dict[str, str], value: float) -> str:
    def repl(m: re.Match[str]) -> str:
        inner = m.group(1).strip()
        if inner == "$value":
            return _go_value(value)
        assert inner.startswith("$labels."), f"no expansion for {inner} in this test"
        return labels[inner.removeprefix("$labels.")]

    return re.sub(r"\{\{(.*?)\}\}", repl, template)


def _expected(rule: Rule, labels: dict[str, str], value: float) -> dict[str, Any]:
    """The alert promtool should report: the series' labels plus the rule's, and the
    annotations rendered with them."""
    all_labels = {**labels, "severity": rule.severity, "component": rule.component}
    doc = yaml.safe_load(RULES_FILE.read_text())
    raw = next(r for g in doc["groups"] for r in g["rules"] if r["alert"] == rule.alert)
    return {
        "exp_labels": all_labels,
        "exp_annotations": {
            k: _expand(v, all_labels, value) for k, v in raw["annotations"].items()
        },
    }


def _run_promtool(tmp_path: Path, tests: list[dict[str, Any]]) -> None:
    assert PROMTOOL is not None
    spec = {
        "rule_files": [str(RULES_FILE)],
        "evaluation_interval": "1m",
        "tests": tests,
    }
    path = tmp_path / "rules-test.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    out = subprocess.run(
        [PROMTOOL, "test", "rules", str(path)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stdout + out.stderr


@needs_promtool
def test_model_safety_rules_fire_after_their_for_duration(tmp_path: Path) -> None:
    mon = {"monitor": "drift-default", "model": "cxr", "site": "site-c"}
    quiet = {"monitor": "drift-default", "model": "cxr", "site": "site-a"}
    perf = {"monitor": "auroc", "model": "cxr", "site": "site-c", "finding": "effusion"}
    # the gap is worst minus rest: positive is worse for FPR, negative for TPR
    fpr = {"monitor": "fair", "model": "cxr", "site": "*", "family": "sex", "metric": "fpr"}
    tpr = {**fpr, "family": "age_band", "metric": "tpr"}
    unsure = {**fpr, "family": "race_ethnicity", "metric": "tpr"}
    drift = BY_NAME["RadwatchDriftPersisting"]
    crit = BY_NAME["RadwatchCriticalAlertOpen"]
    below = BY_NAME["RadwatchPerformanceBelowFloor"]
    gap_rule = BY_NAME["RadwatchSubgroupGapConfirmed"]
    tests = [
        {
            "interval": "1m",
            "input_series": [
                # drift from minute 5 on at site-c; site-a never drifts
                _series("radwatch_monitor_drift", mon, "0x4 1x40"),
                _series("radwatch_monitor_drift", quiet, "0x45"),
                _series(
                    "radwatch_alerts_open",
                    {"model": "cxr", "site": "site-c", "severity": "critical"},
                    "_x9 1x30",
                ),
                _series(
                    "radwatch_performance_upper",
                    {**perf, "metric": "auroc", "kind": "measured"},
                    "0.9x9 0.7x30",
                ),
                _series(
                    "radwatch_performance", {**perf, "metric": "auroc", "kind": "floor"}, "0.8x40"
                ),
                _series("radwatch_subgroup_gap_lower", fpr, "0.05x9 0.15x30"),
                _series("radwatch_subgroup_gap_upper", fpr, "0.3x40"),
                _series("radwatch_subgroup_gap_lower", tpr, "-0.3x40"),
                _series("radwatch_subgroup_gap_upper", tpr, "-0.05x9 -0.15x30"),
                # a wide interval that straddles the tolerance: not confirmed
                _series("radwatch_subgroup_gap_lower", unsure, "-0.4x40"),
                _series("radwatch_subgroup_gap_upper", unsure, "0.02x40"),
            ],
            "alert_rule_test": [
                {"eval_time": "10m", "alertname": drift.alert, "exp_alerts": []},
                {
                    "eval_time": "25m",
                    "alertname": drift.alert,
                    "exp_alerts": [_expected(drift, mon, 1)],
                },
                {
                    "eval_time": "15m",
                    "alertname": crit.alert,
                    "exp_alerts": [_expected(crit, {"model": "cxr", "site": "site-c"}, 1)],
                },
                {"eval_time": "20m", "alertname": below.alert, "exp_alerts": []},
                {
                    "eval_time": "30m",
                    "alertname": below.alert,
                    "exp_alerts": [_expected(below, {**perf, "metric": "auroc"}, 0.7)],
                },
                {
                    "eval_time": "30m",
                    "alertname": gap_rule.alert,
                    "exp_alerts": [
                        _expected(gap_rule, fpr, 0.15),
                        _expected(gap_rule, tpr, -0.15),
                    ],
                },
            ],
        }
    ]
    _run_promtool(tmp_path, tests)


@needs_promtool
def test_dependency_and_rollback_rules(tmp_path: Path) -> None:
    broker = BY_NAME["RadwatchBrokerDown"]
    db = BY_NAME["RadwatchDatabaseDown"]
    rollback = BY_NAME["RadwatchRollback"]
    rb = {"model": "cxr", "kind": "rollback", "state": "succeeded"}
    tests = [
        {
            "interval": "1m",
            "input_series": [
                _series("radwatch_broker_up", {}, "1x4 0x10 1x20"),
                _series("radwatch_database_up", {}, "1x40"),
                # the first rollback ever: the series appears at minute 10
                _series("radwatch_promotions", rb, "_x9 1x60"),
            ],
            "alert_rule_test": [
                {"eval_time": "5m", "alertname": broker.alert, "exp_alerts": []},
                {
                    "eval_time": "8m",
                    "alertname": broker.alert,
                    "exp_alerts": [_expected(broker, dict(SCRAPE), 0)],
                },
                {"eval_time": "20m", "alertname": broker.alert, "exp_alerts": []},
                {"eval_time": "20m", "alertname": db.alert, "exp_alerts": []},
                {
                    "eval_time": "12m",
                    "alertname": rollback.alert,
                    "exp_alerts": [_expected(rollback, {"model": "cxr"}, 1)],
                },
                # 30 minutes later the baseline has caught up: no longer firing
                {"eval_time": "50m", "alertname": rollback.alert, "exp_alerts": []},
            ],
        }
    ]
    _run_promtool(tmp_path, tests)


@needs_promtool
def test_a_healthy_stack_fires_nothing(tmp_path: Path) -> None:
    """Series as a healthy stack exposes them: nothing fires at any rule."""
    route = {"route": "/v1/predictions", "method": "POST"}
    tests = [
        {
            "interval": "1m",
            "input_series": [
                _series("radwatch_broker_up", {}, "1x60"),
                _series("radwatch_database_up", {}, "1x60"),
                _series("radwatch_celery_metrics_up", {}, "1x60"),
                _series("radwatch_queue_depth", {"queue": "monitoring"}, "0x60"),
                _series(
                    "radwatch_monitor_drift", {"monitor": "d", "model": "cxr", "site": "a"}, "0x60"
                ),
                _series("radwatch_http_requests_total", {**route, "status": "200"}, "0+60x60"),
                _series("radwatch_http_requests_total", {**route, "status": "400"}, "0+1x60"),
                *[
                    _series(
                        "radwatch_http_request_duration_seconds_bucket",
                        {**route, "le": le},
                        f"0+{n}x60",
                    )
                    for le, n in (("0.1", 50), ("0.5", 59), ("2.5", 60), ("+Inf", 60))
                ],
                _series("radwatch_approval_pending_age_seconds", {"model": "cxr"}, "0x60"),
                _series(
                    "radwatch_promotions",
                    {"model": "cxr", "kind": "rollback", "state": "succeeded"},
                    "2x60",
                ),
                _series(
                    "nv_inference_request_success", {"model": "cxr", "version": "1"}, "0+30x60"
                ),
                _series(
                    "nv_inference_request_failure",
                    {"model": "cxr", "version": "1", "reason": "BACKEND"},
                    "0x60",
                ),
            ],
            "alert_rule_test": [
                {"eval_time": "59m", "alertname": r.alert, "exp_alerts": []} for r in RULES
            ],
        }
    ]
    _run_promtool(tmp_path, tests)
