"""Render the radwatch chart offline and check what comes out.

helm-python-sdk bundles Helm 4 as a library, so rendering and linting need no ``helm`` binary
and no cluster. kubernetes-validate holds the OpenAPI schemas of Kubernetes releases. In strict
mode an unknown field fails validation, as the API server's strict field validation would.
It has no schemas for custom resources, so ServiceMonitor and PrometheusRule are checked here
against the fields of the Prometheus Operator CRDs (monitoring.coreos.com/v1) that the chart
uses.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import helm_python
import kubernetes_validate
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "radwatch"
#: The newest Kubernetes release kubernetes-validate 1.37.0 ships schemas for (checked in a test).
K8S_VERSION = "1.37.0"
RELEASE = "rw"
NAMESPACE = "radwatch"
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}


@dataclass(frozen=True)
class Manifest:
    template: str
    doc: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.doc["kind"])

    @property
    def name(self) -> str:
        return str(self.doc["metadata"]["name"])


@lru_cache(maxsize=64)
def _render_cached(chart_dir: str, values_json: str, release: str) -> tuple[Manifest, ...]:
    with helm_python.Chart.load(chart_dir) as chart:
        out = chart.render(values=json.loads(values_json), name=release, namespace=NAMESPACE)
    manifests = []
    for template, text in sorted(out.items()):
        if not template.endswith((".yaml", ".yml")):
            continue  # NOTES.txt
        for doc in yaml.safe_load_all(text):
            if doc:
                manifests.append(Manifest(template, doc))
    return tuple(manifests)


def render(
    values: dict[str, Any] | None = None, *, chart: Path = CHART, release: str = RELEASE
) -> list[Manifest]:
    """Every manifest the chart renders (deep copies, so a test may modify them)."""
    cached = _render_cached(str(chart), json.dumps(values or {}, sort_keys=True), release)
    return [Manifest(m.template, copy.deepcopy(m.doc)) for m in cached]


def of_kind(manifests: list[Manifest], kind: str) -> dict[str, dict[str, Any]]:
    return {m.name: m.doc for m in manifests if m.kind == kind}


def one(manifests: list[Manifest], kind: str, name: str) -> dict[str, Any]:
    found = of_kind(manifests, kind)
    assert name in found, f"no {kind} {name}; have {sorted(found)}"
    return found[name]


def name(component: str) -> str:
    """Resource name of a component for the test release (fullname is "<release>-radwatch")."""
    return f"{RELEASE}-radwatch-{component}"


WORKLOADS = ("Deployment", "StatefulSet", "Job")


def workloads(manifests: list[Manifest]) -> dict[str, dict[str, Any]]:
    """Pod-owning resources by "Kind/name"."""
    return {f"{m.kind}/{m.name}": m.doc for m in manifests if m.kind in WORKLOADS}


def containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    spec = doc["spec"]
    if doc["kind"] in {"Deployment", "StatefulSet", "Job"}:
        spec = spec["template"]["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


def pod_spec(doc: dict[str, Any]) -> dict[str, Any]:
    return dict(doc["spec"]["template"]["spec"])


def pod_labels(doc: dict[str, Any]) -> dict[str, str]:
    return dict(doc["spec"]["template"]["metadata"]["labels"])


def env_map(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def validate_builtin(manifest: Manifest) -> None:
    """Strict validation against the Kubernetes OpenAPI schemas (raises on any error)."""
    kubernetes_validate.validate(manifest.doc, K8S_VERSION, strict=True)


# --- Prometheus Operator custom resources --------------------------------------------------------

_DURATION = re.compile(
    r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
)
_METADATA_KEYS = {"name", "namespace", "labels", "annotations"}


def _string_map(value: Any, where: str) -> list[str]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        return [f"{where}: must map strings to strings, got {value!r}"]
    return []


def _unknown(obj: dict[str, Any], allowed: set[str], where: str) -> list[str]:
    extra = sorted(set(obj) - allowed)
    return [f"{where}: unknown fields {extra}"] if extra else []


def _check_metadata(doc: dict[str, Any]) -> list[str]:
    meta = doc.get("metadata", {})
    errors = _unknown(meta, _METADATA_KEYS, "metadata")
    if not isinstance(meta.get("name"), str) or not meta["name"]:
        errors.append("metadata.name missing")
    for key in ("labels", "annotations"):
        if key in meta:
            errors += _string_map(meta[key], f"metadata.{key}")
    return errors


def check_service_monitor(doc: dict[str, Any]) -> list[str]:
    """The ServiceMonitor fields the chart uses, with the CRD's types and patterns."""
    errors = _unknown(doc, {"apiVersion", "kind", "metadata", "spec"}, "<root>")
    errors += _check_metadata(doc)
    if doc.get("apiVersion") != "monitoring.coreos.com/v1":
        errors.append(f"apiVersion {doc.get('apiVersion')}")
    spec = doc.get("spec", {})
    errors += _unknown(spec, {"selector", "namespaceSelector", "endpoints", "jobLabel"}, "spec")
    match = spec.get("selector", {}).get("matchLabels")
    errors += _string_map(match, "spec.selector.matchLabels")
    if not match:
        errors.append("spec.selector.matchLabels is empty: it would select every Service")
    names = spec.get("namespaceSelector", {}).get("matchNames", [])
    if not all(isinstance(n, str) for n in names):
        errors.append("spec.namespaceSelector.matchNames must be strings")
    endpoints = spec.get("endpoints")
    if not isinstance(endpoints, list) or not endpoints:
        return [*errors, "spec.endpoints must be a non-empty list"]
    allowed = {"port", "path", "interval", "scrapeTimeout", "scheme", "honorLabels"}
    for i, ep in enumerate(endpoints):
        where = f"spec.endpoints[{i}]"
        errors += _unknown(ep, allowed, where)
        if not isinstance(ep.get("port"), str):
            errors.append(f"{where}.port must be a Service port name")
        if not str(ep.get("path", "/")).startswith("/"):
            errors.append(f"{where}.path must start with /")
        for key in ("interval", "scrapeTimeout"):
            if key in ep and not _DURATION.match(str(ep[key])):
                errors.append(f"{where}.{key} {ep[key]!r} is not a Prometheus duration")
    return errors


def check_prometheus_rule(doc: dict[str, Any]) -> list[str]:
    """The PrometheusRule CRD's rule-group structure (groups keyed by unique name, each rule
    exactly one of alert/record with an expr, string labels and annotations, durations)."""
    errors = _unknown(doc, {"apiVersion", "kind", "metadata", "spec"}, "<root>")
    errors += _check_metadata(doc)
    if doc.get("apiVersion") != "monitoring.coreos.com/v1":
        errors.append(f"apiVersion {doc.get('apiVersion')}")
    spec = doc.get("spec", {})
    errors += _unknown(spec, {"groups"}, "spec")
    groups = spec.get("groups")
    if not isinstance(groups, list) or not groups:
        return [*errors, "spec.groups must be a non-empty list"]
    names = [g.get("name") for g in groups]
    if len(set(names)) != len(names):
        errors.append(f"group names are not unique: {names}")
    group_keys = {"name", "rules", "interval", "labels", "limit", "query_offset"}
    rule_keys = {"alert", "record", "expr", "for", "keep_firing_for", "labels", "annotations"}
    for i, group in enumerate(groups):
        where = f"spec.groups[{i}]"
        errors += _unknown(group, group_keys, where)
        if not isinstance(group.get("name"), str) or not group["name"]:
            errors.append(f"{where}.name missing")
        if "interval" in group and not _DURATION.match(str(group["interval"])):
            errors.append(f"{where}.interval is not a duration")
        for j, rule in enumerate(group.get("rules") or []):
            rwhere = f"{where}.rules[{j}]"
            errors += _unknown(rule, rule_keys, rwhere)
            if ("alert" in rule) == ("record" in rule):
                errors.append(f"{rwhere}: exactly one of alert and record")
            if not isinstance(rule.get("expr"), str | int) or rule.get("expr") == "":
                errors.append(f"{rwhere}.expr missing")
            for key in ("for", "keep_firing_for"):
                if key in rule and not _DURATION.match(str(rule[key])):
                    errors.append(f"{rwhere}.{key} {rule[key]!r} is not a duration")
            for key in ("labels", "annotations"):
                if key in rule:
                    errors += _string_map(rule[key], f"{rwhere}.{key}")
    return errors


def validate(manifest: Manifest) -> list[str]:
    """Errors of one manifest: the Kubernetes schema, or the CRD checks above."""
    if manifest.kind == "ServiceMonitor":
        return check_service_monitor(manifest.doc)
    if manifest.kind == "PrometheusRule":
        return check_prometheus_rule(manifest.doc)
    try:
        validate_builtin(manifest)
    except kubernetes_validate.ValidationError as exc:
        path = "/".join(str(p) for p in exc.path)
        return [f"{path}: {exc.message}"]
    return []


# --- chart copies with sample dashboards and rules ---------------------------------------------


def copy_chart(destination: Path, files: dict[str, str] | None = None) -> Path:
    """A copy of the chart without its dashboards/ and rules/ (which another workstream fills),
    plus ``files`` (path relative to the chart -> content)."""
    target = destination / "radwatch"
    shutil.copytree(CHART, target, ignore=shutil.ignore_patterns("dashboards", "rules"))
    for rel, content in (files or {}).items():
        path = target / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    return target


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def walk(obj: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Every (dotted path, scalar) in a nested structure."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield from walk(value, f"{path}.{key}" if path else str(key))
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            yield from walk(value, f"{path}[{i}]")
    else:
        yield path, obj


# --- value sets the tests render ------------------------------------------------------------------

#: Strings that must reach the Secret and never a ConfigMap.
SECRET_STRINGS = ("db-s3cr3t", "broker-s3cr3t", "mlflow-s3cr3t", "pseudo-s3cr3t")

SCENARIOS: dict[str, dict[str, Any]] = {
    "defaults": {},
    # Managed PostgreSQL and Redis, every secret in a Secret the operator created.
    "external-db-existing-secret": {
        "postgresql": {"enabled": False},
        "redis": {"enabled": False},
        "secrets": {"existingSecret": "radwatch-prod", "keys": {"databaseUrl": "db-url"}},
        "config": {"monitorWindow": 200},
    },
    # Managed PostgreSQL and Redis, the chart creates the Secret from values.
    "external-db-chart-secret": {
        "postgresql": {"enabled": False},
        "redis": {"enabled": False},
        "secrets": {
            "databaseUrl": "postgresql+psycopg://radwatch:db-s3cr3t@pg.example:5432/radwatch",
            "brokerUrl": "rediss://:broker-s3cr3t@redis.example:6380/0",
            "mlflowBackendStoreUri": "postgresql+psycopg://mlflow:mlflow-s3cr3t@pg.example/mlflow",
            "pseudonymKey": "pseudo-s3cr3t",
        },
    },
    "gpu-training": {
        "workers": {
            "training": {
                "enabled": True,
                "gpus": 2,
                "nodeSelector": {"cloud.example/pool": "a100"},
                "tolerations": [
                    {
                        "key": "dedicated",
                        "operator": "Equal",
                        "value": "gpu",
                        "effect": "NoSchedule",
                    }
                ],
                "resources": {
                    "requests": {"cpu": "8", "memory": "32Gi"},
                    "limits": {"memory": "64Gi"},
                },
            }
        },
        "triton": {"gpus": 1, "nodeSelector": {"cloud.example/pool": "t4"}},
    },
    "ingress-tls": {
        "ingress": {
            "enabled": True,
            "className": "nginx",
            "annotations": {"cert-manager.io/cluster-issuer": "letsencrypt"},
            "hosts": [
                {
                    "host": "radwatch.hospital.example",
                    "paths": [{"path": "/", "pathType": "Prefix"}],
                }
            ],
            "tls": [{"secretName": "radwatch-tls", "hosts": ["radwatch.hospital.example"]}],
        },
        "networkPolicy": {
            "apiFrom": [
                {
                    "namespaceSelector": {
                        "matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}
                    }
                }
            ],
            "metricsFrom": [
                {
                    "namespaceSelector": {
                        "matchLabels": {"kubernetes.io/metadata.name": "monitoring"}
                    }
                }
            ],
            "mlflowFrom": [{"podSelector": {"matchLabels": {"team": "mlops"}}}],
        },
        "mlflow": {"allowedHosts": ["mlflow.hospital.example"]},
    },
    # In-chart PostgreSQL and Redis, models and artifacts in an object store, a second GPU
    # worker pool, and the Prometheus Operator objects.
    "bundled-object-store": {
        "redis": {"persistence": {"enabled": True, "storageClass": "fast"}},
        "postgresql": {"persistence": {"size": "50Gi", "storageClass": "fast"}},
        "triton": {
            "modelRepository": {
                "type": "objectStore",
                "objectStore": {
                    "url": "s3://https://minio.example:9000/models/triton",
                    "existingSecret": "triton-s3",
                },
            }
        },
        "mlflow": {
            "artifacts": {"destination": "s3://models/mlflow", "existingSecret": "mlflow-s3"}
        },
        "workers": {
            "training-h100": {
                "queues": ["training"],
                "gpus": 1,
                "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
                "autoscaling": {"enabled": False},
                "replicas": 2,
            }
        },
        "metrics": {
            "serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
            "prometheusRule": {
                "enabled": True,
                "labels": {"release": "kube-prometheus-stack"},
                "additionalGroups": [
                    {
                        "name": "site-extra",
                        "rules": [{"alert": "SiteDown", "expr": "up == 0", "for": "5m"}],
                    }
                ],
            },
        },
    },
    # Triton and MLflow run elsewhere; no autoscaling, NetworkPolicy, dashboards or own account.
    "external-services": {
        "triton": {"enabled": False},
        "mlflow": {"enabled": False},
        "config": {
            "tritonUrl": "triton.inference:8000",
            "mlflowTrackingUri": "https://mlflow.example",
        },
        "api": {"autoscaling": {"enabled": False}, "replicas": 3, "pdb": {"maxUnavailable": "25%"}},
        "workerDefaults": {"autoscaling": {"enabled": False}, "livenessProbe": {"enabled": False}},
        "networkPolicy": {"enabled": False},
        "dashboards": {"enabled": False},
        "serviceAccount": {"create": False, "name": "radwatch-sa"},
        "imagePullSecrets": [{"name": "ghcr"}],
        "image": {"tag": "1.2.3"},
    },
    # One model repository PVC shared by Triton and the radwatch pods (radwatch deploy).
    "shared-model-repository": {
        "triton": {
            "modelRepository": {
                "pvc": {
                    "mountInRadwatch": True,
                    "accessModes": ["ReadWriteMany"],
                    "storageClass": "nfs",
                }
            }
        }
    },
}
