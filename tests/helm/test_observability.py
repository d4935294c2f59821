"""ServiceMonitors, the PrometheusRule from rules/radwatch-rules.yaml, and the Grafana dashboard
ConfigMaps from dashboards/*.json. Those files come from another workstream, so most tests
render a copy of the chart holding sample files; the last ones check the chart's real files,
whatever is there."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import helm_python
import pytest
import yaml

from tests.helm.chart import (
    CHART,
    Manifest,
    check_prometheus_rule,
    check_service_monitor,
    containers,
    copy_chart,
    name,
    of_kind,
    one,
    render,
    selects,
    validate,
)

MONITORING_ON = {
    "metrics": {"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True}}
}

# Grafana's and Prometheus' own template syntax must come through untouched.
DASHBOARD = {
    "title": "radwatch overview",
    "uid": "radwatch-overview",
    "panels": [
        {
            "type": "timeseries",
            "targets": [
                {
                    "expr": "sum by (site) (rate(radwatch_events_total[5m]))",
                    "legendFormat": "{{site}}",
                }
            ],
        }
    ],
}
RULES = {
    "groups": [
        {
            "name": "radwatch.drift",
            "rules": [
                {
                    "alert": "RadwatchDriftAlertOpen",
                    "expr": "max by (site) (radwatch_alert_open) > 0",
                    "for": "10m",
                    "labels": {"severity": "warning"},
                    "annotations": {"summary": "Drift alert open at {{ $labels.site }}"},
                },
                {
                    "record": "radwatch:events:rate5m",
                    "expr": "sum(rate(radwatch_events_total[5m]))",
                },
            ],
        },
        {
            "name": "radwatch.api",
            "interval": "30s",
            "rules": [{"alert": "RadwatchApiDown", "expr": "up == 0"}],
        },
    ]
}


@pytest.fixture(scope="module")
def sample_chart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_chart(
        tmp_path_factory.mktemp("chart"),
        {
            "dashboards/radwatch_overview.json": json.dumps(DASHBOARD, indent=2),
            "dashboards/Drift.Alerts.json": json.dumps({"title": "drift", "panels": []}),
            "dashboards/notes.txt": "not a dashboard",
            "rules/radwatch-rules.yaml": yaml.safe_dump(RULES, sort_keys=False),
        },
    )


@pytest.fixture(scope="module")
def bare_chart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The chart before the dashboards and rules exist."""
    return copy_chart(tmp_path_factory.mktemp("bare"))


def _dashboards(manifests: list[Manifest]) -> dict[str, dict[str, Any]]:
    return {
        m.name: m.doc
        for m in manifests
        if m.kind == "ConfigMap"
        and m.doc["metadata"]["labels"].get("app.kubernetes.io/component") == "dashboards"
    }


# --- ServiceMonitor ------------------------------------------------------------------------------


def test_service_monitor_selects_the_api_metrics_port(api_get_routes: set[str]) -> None:
    manifests = render(MONITORING_ON)
    monitors = of_kind(manifests, "ServiceMonitor")
    assert set(monitors) == {name("api"), name("triton")}
    api_monitor = monitors[name("api")]
    assert check_service_monitor(api_monitor) == []
    selector = api_monitor["spec"]["selector"]["matchLabels"]
    services = of_kind(manifests, "Service")
    selected = [n for n, svc in services.items() if selects(selector, svc["metadata"]["labels"])]
    assert selected == [name("api")]
    assert api_monitor["spec"]["namespaceSelector"] == {"matchNames": ["radwatch"]}
    (endpoint,) = api_monitor["spec"]["endpoints"]
    assert endpoint["path"] == "/metrics"
    assert "/metrics" in api_get_routes
    port = {p["name"]: p for p in services[name("api")]["spec"]["ports"]}[endpoint["port"]]
    api = one(manifests, "Deployment", name("api"))
    container_ports = {p["name"]: p["containerPort"] for p in containers(api)[0]["ports"]}
    command = containers(api)[0]["command"]
    assert container_ports[port["targetPort"]] == int(command[command.index("--port") + 1])

    triton_monitor = monitors[name("triton")]
    selected = [
        n
        for n, svc in services.items()
        if selects(triton_monitor["spec"]["selector"]["matchLabels"], svc["metadata"]["labels"])
    ]
    assert selected == [name("triton")]
    assert triton_monitor["spec"]["endpoints"][0]["port"] == "metrics"


def test_service_monitor_toggles_and_labels() -> None:
    assert of_kind(render(), "ServiceMonitor") == {}
    manifests = render(
        {
            "metrics": {
                "serviceMonitor": {"enabled": True, "triton": False, "labels": {"release": "kps"}}
            }
        }
    )
    (monitor,) = of_kind(manifests, "ServiceMonitor").values()
    assert monitor["metadata"]["labels"]["release"] == "kps"


def test_service_monitor_check_can_fail() -> None:
    monitor = one(render(MONITORING_ON), "ServiceMonitor", name("api"))
    monitor["spec"]["selector"]["matchLabels"] = {}
    monitor["spec"]["endpoints"][0]["interval"] = "30 seconds"
    monitor["spec"]["endpoints"][0]["targetPort"] = 8000
    errors = check_service_monitor(monitor)
    assert len(errors) == 3, errors


# --- PrometheusRule ------------------------------------------------------------------------------


def test_prometheus_rule_carries_the_rules_file(sample_chart: Path) -> None:
    extra = [{"name": "site-extra", "rules": [{"alert": "SiteDown", "expr": "up == 0"}]}]
    values = {
        "metrics": {
            "prometheusRule": {
                "enabled": True,
                "labels": {"release": "kps"},
                "additionalGroups": extra,
            }
        }
    }
    manifests = render(values, chart=sample_chart)
    (rule,) = of_kind(manifests, "PrometheusRule").values()
    assert check_prometheus_rule(rule) == []
    assert rule["spec"]["groups"] == [*RULES["groups"], *extra]
    assert rule["metadata"]["labels"]["release"] == "kps"
    annotation = rule["spec"]["groups"][0]["rules"][0]["annotations"]["summary"]
    assert annotation == "Drift alert open at {{ $labels.site }}"


def test_prometheus_rule_is_off_by_default_and_absent_without_groups(
    sample_chart: Path, bare_chart: Path
) -> None:
    assert of_kind(render(chart=sample_chart), "PrometheusRule") == {}
    assert of_kind(render(MONITORING_ON, chart=bare_chart), "PrometheusRule") == {}
    extra = [{"name": "only-extra", "rules": [{"record": "r", "expr": "1"}]}]
    values = {"metrics": {"prometheusRule": {"enabled": True, "additionalGroups": extra}}}
    (rule,) = of_kind(render(values, chart=bare_chart), "PrometheusRule").values()
    assert rule["spec"]["groups"] == extra


def test_a_broken_rules_file_fails_the_render(tmp_path: Path) -> None:
    chart = copy_chart(tmp_path, {"rules/radwatch-rules.yaml": "groups: [\n  - name: x\n"})
    with pytest.raises(helm_python.HelmError, match=r"radwatch-rules\.yaml is not valid YAML"):
        render(MONITORING_ON, chart=chart)


def test_prometheus_rule_check_can_fail() -> None:
    bad = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "x"},
        "spec": {
            "groups": [
                {"name": "g", "rules": [{"alert": "A", "record": "r", "expr": "1"}]},
                {
                    "name": "g",
                    "rules": [
                        {"alert": "B", "expr": "1", "for": "ten minutes", "annotations": {"n": 1}}
                    ],
                },
            ]
        },
    }
    errors = check_prometheus_rule(bad)
    assert len(errors) == 4, errors


# --- Grafana dashboards --------------------------------------------------------------------------


def test_dashboard_configmaps_carry_the_sidecar_label_and_the_json(sample_chart: Path) -> None:
    manifests = render(chart=sample_chart)
    dashboards = _dashboards(manifests)
    assert set(dashboards) == {name("dashboard-radwatch-overview"), name("dashboard-drift-alerts")}
    for manifest in manifests:
        if manifest.name in dashboards:
            assert validate(manifest) == []
    overview = dashboards[name("dashboard-radwatch-overview")]
    assert overview["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert overview["metadata"]["annotations"] == {"grafana_folder": "radwatch"}
    assert overview["metadata"]["namespace"] == "radwatch"
    assert list(overview["data"]) == ["radwatch_overview.json"]
    assert json.loads(overview["data"]["radwatch_overview.json"]) == DASHBOARD
    assert (
        json.loads(dashboards[name("dashboard-drift-alerts")]["data"]["Drift.Alerts.json"])["title"]
        == "drift"
    )


def test_dashboard_label_folder_and_namespace_are_configurable(sample_chart: Path) -> None:
    values = {
        "dashboards": {
            "label": "grafana.example/dashboard",
            "labelValue": "radwatch",
            "folder": "",
            "namespace": "monitoring",
            "labels": {"team": "mlops"},
        }
    }
    for doc in _dashboards(render(values, chart=sample_chart)).values():
        labels = doc["metadata"]["labels"]
        assert labels["grafana.example/dashboard"] == "radwatch"
        assert "grafana_dashboard" not in labels
        assert labels["team"] == "mlops"
        assert "annotations" not in doc["metadata"]
        assert doc["metadata"]["namespace"] == "monitoring"
    assert _dashboards(render({"dashboards": {"enabled": False}}, chart=sample_chart)) == {}


def test_chart_renders_before_dashboards_and_rules_exist(bare_chart: Path) -> None:
    manifests = render(MONITORING_ON, chart=bare_chart)
    assert _dashboards(manifests) == {}
    assert of_kind(manifests, "PrometheusRule") == {}
    assert of_kind(manifests, "Deployment")


# --- the chart's real dashboards and rules (whatever the other workstream has written) ----------


def test_every_dashboard_file_in_the_chart_becomes_a_configmap() -> None:
    files = sorted((CHART / "dashboards").glob("*.json"))
    dashboards = _dashboards(render())
    assert len(dashboards) == len(files)
    by_key = {key: data for doc in dashboards.values() for key, data in doc["data"].items()}
    for path in files:
        assert json.loads(by_key[path.name]) == json.loads(path.read_text()), path.name
    for doc in dashboards.values():
        # the API server refuses ConfigMaps over 1 MiB
        assert len(json.dumps(doc).encode()) < 1024 * 1024, doc["metadata"]["name"]


def test_the_chart_rules_file_makes_a_valid_prometheus_rule() -> None:
    path = CHART / "rules" / "radwatch-rules.yaml"
    rules = of_kind(render(MONITORING_ON), "PrometheusRule")
    if not path.exists():
        assert rules == {}
        return
    groups = yaml.safe_load(path.read_text())["groups"]
    (rule,) = rules.values()
    assert check_prometheus_rule(rule) == []
    assert rule["spec"]["groups"] == groups
