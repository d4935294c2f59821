"""values.schema.json rejects broken values, through Helm's own validation at render and lint
time and through jsonschema directly. The README's values table documents every value."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path
from typing import Any

import helm_python
import jsonschema
import pytest
import yaml

from tests.helm.chart import CHART, REPO, SCENARIOS, render

SCHEMA = json.loads((CHART / "values.schema.json").read_text())
VALUES = yaml.safe_load((CHART / "values.yaml").read_text())


def _values_table_module() -> Any:
    path = REPO / "helm" / "tools" / "values_table.py"
    spec = importlib.util.spec_from_file_location("values_table", path)
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["values_table"] = module  # dataclasses look the module up by name
    spec.loader.exec_module(module)
    return module


values_table = _values_table_module()

#: (id, values, a fragment of the error): each must be refused.
BROKEN: list[tuple[str, dict[str, Any], str]] = [
    ("wrong-type", {"api": {"replicas": "two"}}, "/api/replicas"),
    ("unknown-key", {"api": {"replicaz": 2}}, "replicaz"),
    ("unknown-top-level-key", {"apii": {"replicas": 2}}, "apii"),
    ("bad-enum", {"triton": {"modelRepository": {"type": "nfs"}}}, "/triton/modelRepository/type"),
    ("bad-pull-policy", {"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
    ("bad-quantity", {"api": {"resources": {"requests": {"cpu": "lots"}}}}, "/api/resources"),
    ("alpha-out-of-range", {"config": {"monitorAlpha": 1.5}}, "/config/monitorAlpha"),
    ("window-too-small", {"config": {"monitorWindow": 5}}, "/config/monitorWindow"),
    ("bad-environment", {"config": {"environment": "staging"}}, "/config/environment"),
    ("worker-without-queues", {"workers": {"pool-b": {"concurrency": 2}}}, "queues"),
    ("unknown-queue", {"workers": {"pool-b": {"queues": ["site.a"]}}}, "/workers/pool-b/queues"),
    ("bad-worker-name", {"workers": {"Pool_B": {"queues": ["monitoring"]}}}, "Pool_B"),
    ("unknown-worker-key", {"workers": {"training": {"gpu": 1}}}, "gpu"),
    ("object-store-without-url", {"triton": {"modelRepository": {"type": "objectStore"}}}, "url"),
    (
        "object-store-bad-scheme",
        {"triton": {"modelRepository": {"objectStore": {"url": "http://x"}}}},
        "url",
    ),
    ("external-db-without-url", {"postgresql": {"enabled": False}}, "databaseUrl"),
    ("external-redis-without-url", {"redis": {"enabled": False}}, "brokerUrl"),
    ("no-triton-without-url", {"triton": {"enabled": False}}, "tritonUrl"),
    ("no-mlflow-without-uri", {"mlflow": {"enabled": False}}, "mlflowTrackingUri"),
    ("triton-url-with-scheme", {"config": {"tritonUrl": "http://triton:8000"}}, "tritonUrl"),
    ("bad-duration", {"metrics": {"serviceMonitor": {"interval": "30 seconds"}}}, "interval"),
    ("tls-without-secret", {"ingress": {"tls": [{"hosts": ["a.example"]}]}}, "secretName"),
    (
        "bad-path-type",
        {"ingress": {"hosts": [{"host": "a", "paths": [{"path": "/", "pathType": "Any"}]}]}},
        "pathType",
    ),
    ("bad-pdb", {"api": {"pdb": {"maxUnavailable": "half"}}}, "maxUnavailable"),
    ("bad-probe-key", {"api": {"livenessProbe": {"periodSecond": 5}}}, "periodSecond"),
    ("bad-label-value", {"dashboards": {"labelValue": "not a label"}}, "labelValue"),
]


@pytest.fixture(scope="module")
def chart() -> Any:
    with helm_python.Chart.load(CHART) as loaded:
        yield loaded


def test_schema_is_valid_draft_07() -> None:
    assert SCHEMA["$schema"] == "http://json-schema.org/draft-07/schema#"
    jsonschema.Draft7Validator.check_schema(SCHEMA)
    assert SCHEMA["additionalProperties"] is False


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_good_values_pass_helm_and_jsonschema(chart: Any, scenario: str) -> None:
    merged = chart.merge_values(SCENARIOS[scenario])
    jsonschema.Draft7Validator(SCHEMA).validate(merged)
    chart.validate_schema(SCENARIOS[scenario])


@pytest.mark.parametrize(
    ("values", "fragment"), [b[1:] for b in BROKEN], ids=[b[0] for b in BROKEN]
)
def test_broken_values_are_refused(chart: Any, values: dict[str, Any], fragment: str) -> None:
    # Helm applies the schema when rendering (install, upgrade, template) ...
    with pytest.raises(helm_python.HelmValuesError, match=re.escape(fragment)):
        render(values)
    # ... and when linting ...
    report = helm_python.lint(CHART, values)
    assert any(fragment in e for e in report["errors"]), report["errors"]
    # ... and the schema says the same to any draft-07 validator (on the values Helm would use).
    errors = list(jsonschema.Draft7Validator(SCHEMA).iter_errors(chart.merge_values(values)))
    assert errors
    text = " ".join(f"{'/'.join(map(str, e.absolute_path))} {e.message}" for e in errors)
    assert fragment.strip("/").split("/")[-1] in text, text


# --- the README's values table -------------------------------------------------------------------

README = CHART / "README.md"
ROW = re.compile(r"^\| `([^`]+)` \|", re.MULTILINE)


def _documented_keys() -> list[str]:
    text = README.read_text()
    block = text.split(values_table.BEGIN, 1)[1].split(values_table.END, 1)[0]
    return ROW.findall(block)


def _value_paths(obj: Any, prefix: str = "") -> set[str]:
    """Every dotted path in values.yaml, including the maps and lists themselves."""
    paths = {prefix} if prefix else set()
    if isinstance(obj, dict):
        for key, value in obj.items():
            paths |= _value_paths(value, f"{prefix}.{key}" if prefix else str(key))
    return paths


def _scalar_paths(obj: Any, prefix: str = "") -> set[str]:
    if isinstance(obj, dict) and obj:
        out: set[str] = set()
        for key, value in obj.items():
            out |= _scalar_paths(value, f"{prefix}.{key}" if prefix else str(key))
        return out
    return {prefix}


def test_values_table_is_generated_from_values_and_schema() -> None:
    """`python helm/tools/values_table.py` was run after the last change to either file."""
    readme = README.read_text()
    assert values_table.render_readme(readme, values_table.load()) == readme


def test_every_value_is_documented_and_every_documented_key_exists() -> None:
    documented = _documented_keys()
    assert len(documented) == len(set(documented)), "a key is documented twice"
    assert len(documented) > 150
    paths = _value_paths(VALUES)
    assert sorted(set(documented) - paths) == [], "documented keys that values.yaml lacks"
    for leaf in _scalar_paths(VALUES):
        covered = [d for d in documented if leaf == d or leaf.startswith(f"{d}.")]
        assert covered, f"values.yaml key {leaf} is not in the README values table"


def test_every_schema_key_is_in_values_yaml_with_a_description() -> None:
    rows = values_table.load()  # raises SchemaMismatchError on any disagreement
    assert all(row.description for row in rows)


def test_the_table_check_fails_when_schema_and_values_disagree(tmp_path: Path) -> None:
    (tmp_path / "values.yaml").write_text((CHART / "values.yaml").read_text())
    schema = json.loads(json.dumps(SCHEMA))
    schema["properties"]["api"]["properties"]["newKnob"] = {"type": "string", "description": "x"}
    (tmp_path / "values.schema.json").write_text(json.dumps(schema))
    with pytest.raises(values_table.SchemaMismatchError, match="newKnob"):
        values_table.load(tmp_path)
    del schema["properties"]["api"]["properties"]["newKnob"]
    del schema["properties"]["beat"]["properties"]["enabled"]["description"]
    (tmp_path / "values.schema.json").write_text(json.dumps(schema))
    with pytest.raises(values_table.SchemaMismatchError, match=r"beat\.enabled: no description"):
        values_table.load(tmp_path)


def test_helm_readme_points_at_the_chart() -> None:
    text = (REPO / "helm" / "README.md").read_text()
    assert "(radwatch/README.md)" in text
    assert "tests/helm" in text
