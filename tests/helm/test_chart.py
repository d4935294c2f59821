"""The radwatch chart renders, lints clean and validates strictly against Kubernetes 1.37, and its
parts fit together: commands match the real CLIs, selectors and autoscalers match their pods."""

from __future__ import annotations

from typing import Any

import helm_python
import kubernetes_validate
import pytest
from kubernetes_validate.utils import all_versions

from tests.helm.chart import (
    CHART,
    K8S_VERSION,
    SCENARIOS,
    containers,
    name,
    of_kind,
    one,
    pod_labels,
    pod_spec,
    render,
    selects,
    validate,
    walk,
    workloads,
)

# --- render, validate, lint ----------------------------------------------------------------------


def test_kubernetes_validate_ships_the_schemas_of_the_target_version() -> None:
    """kubernetes-validate quietly falls back to the newest older schemas; make sure it has 1.37."""
    assert K8S_VERSION in all_versions()


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_manifest_validates_strictly(scenario: str) -> None:
    manifests = render(SCENARIOS[scenario])
    assert len(manifests) > 10
    errors = {f"{m.template} {m.kind}/{m.name}": validate(m) for m in manifests}
    assert {k: v for k, v in errors.items() if v} == {}


def test_strict_validation_rejects_an_unknown_field() -> None:
    """The validator the suite relies on can fail: a misspelt field is an error, not ignored."""
    deployment = one(render(), "Deployment", name("api"))
    kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessprobe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_lint_reports_no_errors_or_warnings(scenario: str) -> None:
    report = helm_python.lint(
        CHART, SCENARIOS[scenario], kube_version=f"v{K8S_VERSION}", strict=True
    )
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


def test_default_install_runs_every_component() -> None:
    manifests = render()
    assert set(of_kind(manifests, "Deployment")) == {
        name(c) for c in ("api", "worker-monitoring", "beat", "triton", "mlflow")
    }
    assert set(of_kind(manifests, "StatefulSet")) == {name("postgresql"), name("redis")}
    assert set(of_kind(manifests, "Job")) == {name("migrate")}
    assert set(of_kind(manifests, "Service")) == {
        name(c) for c in ("api", "triton", "mlflow", "postgresql", "redis")
    }
    assert set(of_kind(manifests, "Secret")) == {name("secrets")}
    assert set(of_kind(manifests, "Ingress")) == set()
    job = one(manifests, "Job", name("migrate"))
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-install,pre-upgrade"
    assert containers(job)[0]["command"] == ["radwatch", "db", "upgrade"]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_no_two_resources_share_kind_and_name(scenario: str) -> None:
    keys = [
        (m.kind, m.doc["metadata"].get("namespace"), m.name) for m in render(SCENARIOS[scenario])
    ]
    assert len(keys) == len(set(keys)), sorted(k for k in keys if keys.count(k) > 1)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_names_and_labels_fit_kubernetes_limits(scenario: str) -> None:
    long_release = "r" * 53  # Helm's longest release name
    for manifest in render(SCENARIOS[scenario], release=long_release):
        assert len(manifest.name) <= 63, manifest.name
        for path, value in walk(manifest.doc):
            if ".labels." in f".{path}" and "matchLabels" not in path:
                assert len(str(value)) <= 63, (manifest.name, path)


# --- commands match the programs they run --------------------------------------------------------


def test_api_command_and_probes_use_real_cli_options_and_routes(api_get_routes: set[str]) -> None:
    import typer.main

    from services.cli.main import app as cli

    commands = typer.main.get_command(cli).commands  # type: ignore[attr-defined]
    api_options = {o for p in commands["api"].params for o in p.opts}
    assert "upgrade" in commands["db"].commands

    api = one(render(), "Deployment", name("api"))
    (container,) = containers(api)
    command = container["command"]
    assert command[:2] == ["radwatch", "api"]
    assert {t for t in command[2:] if t.startswith("-")} <= api_options
    assert command[command.index("--host") + 1] == "0.0.0.0"
    port = int(command[command.index("--port") + 1])
    assert container["ports"] == [{"name": "http", "containerPort": port, "protocol": "TCP"}]
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        http_get = container[probe]["httpGet"]
        assert http_get["port"] == "http"
        assert http_get["path"] in api_get_routes, f"{probe} path {http_get['path']} is no route"


def _options(command: Any) -> set[str]:
    return {o for p in command.params for o in (*p.opts, *p.secondary_opts)}


def test_worker_and_beat_commands_use_real_cli_and_celery_options() -> None:
    import typer.main
    from celery.bin.celery import celery

    from services.cli.main import app as cli

    commands = typer.main.get_command(cli).commands  # type: ignore[attr-defined]
    manifests = render(SCENARIOS["gpu-training"])
    checked = 0
    for doc in of_kind(manifests, "Deployment").values():
        for container in containers(doc):
            command = container["command"]
            if command[:2] not in (["radwatch", "worker"], ["radwatch", "beat"]):
                continue
            flags = {t for t in command[2:] if t.startswith("-")}
            assert flags <= _options(commands[command[1]]), (doc["metadata"]["name"], flags)
            if command[1] == "worker":
                probe = container["livenessProbe"]["exec"]["command"][-1].split()
                assert probe[1:6] == ["celery", "-A", "services.worker.app", "inspect", "ping"]
                assert probe[probe.index("--destination") + 1] == '"celery@$HOSTNAME"'
                assert {t for t in probe if t.startswith("--")} <= _options(
                    celery.commands["inspect"]
                )
            checked += 1
    assert checked == 3  # monitoring, training, beat


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_beat_is_a_singleton_and_workers_do_not_run_beat(scenario: str) -> None:
    manifests = render(SCENARIOS[scenario])
    beat = one(manifests, "Deployment", name("beat"))
    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"] == {"type": "Recreate"}
    assert containers(beat)[0]["command"] == ["radwatch", "beat"]
    targets = {
        h["spec"]["scaleTargetRef"]["name"]
        for h in of_kind(manifests, "HorizontalPodAutoscaler").values()
    }
    assert name("beat") not in targets
    for pdb in of_kind(manifests, "PodDisruptionBudget").values():
        assert not selects(pdb["spec"]["selector"]["matchLabels"], pod_labels(beat))
    for doc in of_kind(manifests, "Deployment").values():
        if doc is not beat:
            command = containers(doc)[0]["command"]
            assert "--beat" not in command
            if command[:2] == ["radwatch", "worker"]:
                assert "--no-beat" in command  # `radwatch worker` starts beat unless told not to


def test_training_worker_gets_gpus_node_selector_and_tolerations() -> None:
    assert name("worker-training") not in of_kind(render(), "Deployment")  # off by default

    values = SCENARIOS["gpu-training"]["workers"]["training"]
    manifests = render(SCENARIOS["gpu-training"])
    training = one(manifests, "Deployment", name("worker-training"))
    (container,) = containers(training)
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 2
    assert container["resources"]["limits"]["memory"] == "64Gi"
    assert container["resources"]["requests"] == {"cpu": "8", "memory": "32Gi"}
    # Helm merges maps into the defaults (set a default key to null to drop it); lists replace.
    assert pod_spec(training)["nodeSelector"] == {
        "nvidia.com/gpu.present": "true",
        **values["nodeSelector"],
    }
    assert pod_spec(training)["tolerations"] == values["tolerations"]
    command = container["command"]
    assert command[command.index("--queues") + 1] == "training"
    assert command[command.index("--concurrency") + 1] == "1"
    assert pod_spec(training)["terminationGracePeriodSeconds"] == 600
    # autoscaling is off for training by default: a fixed replica count and no HPA
    assert training["spec"]["replicas"] == 1
    assert name("worker-training") not in of_kind(manifests, "HorizontalPodAutoscaler")

    monitoring = one(manifests, "Deployment", name("worker-monitoring"))
    assert "nvidia.com/gpu" not in containers(monitoring)[0]["resources"].get("limits", {})
    assert "nodeSelector" not in pod_spec(monitoring)
    triton = one(manifests, "Deployment", name("triton"))
    assert containers(triton)[0]["resources"]["limits"]["nvidia.com/gpu"] == 1


def test_an_extra_worker_pool_inherits_worker_defaults() -> None:
    manifests = render(SCENARIOS["bundled-object-store"])
    pool = one(manifests, "Deployment", name("worker-training-h100"))
    (container,) = containers(pool)
    assert container["command"][container["command"].index("--queues") + 1] == "training"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert pod_spec(pool)["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert pool["spec"]["replicas"] == 2  # autoscaling.enabled=false overrode the default
    assert name("worker-training-h100") not in of_kind(manifests, "HorizontalPodAutoscaler")
    assert name("worker-training-h100") in of_kind(manifests, "PodDisruptionBudget")  # inherited
    assert container["resources"]["requests"] == {"cpu": "500m", "memory": "2Gi"}  # inherited


# --- selectors, autoscalers, disruption budgets --------------------------------------------------


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_autoscalers_target_their_deployments(scenario: str) -> None:
    manifests = render(SCENARIOS[scenario])
    deployments = of_kind(manifests, "Deployment")
    hpas = of_kind(manifests, "HorizontalPodAutoscaler")
    for hpa_name, hpa in hpas.items():
        ref = hpa["spec"]["scaleTargetRef"]
        assert (ref["apiVersion"], ref["kind"], ref["name"]) == ("apps/v1", "Deployment", hpa_name)
        assert hpa_name in deployments
        assert "replicas" not in deployments[hpa_name]["spec"], "the HPA owns replicas"
        assert hpa["spec"]["metrics"], "an HPA without metrics"
        assert hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    if scenario == "defaults":
        assert set(hpas) == {name("api"), name("worker-monitoring")}
        cpu = hpas[name("api")]["spec"]["metrics"][0]["resource"]
        assert cpu == {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}
    if scenario == "external-services":
        assert hpas == {}
        assert deployments[name("api")]["spec"]["replicas"] == 3


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_pdbs_and_services_select_exactly_their_pods(scenario: str) -> None:
    manifests = render(SCENARIOS[scenario])
    pods = {key: pod_labels(doc) for key, doc in workloads(manifests).items()}
    for pdb_name, pdb in of_kind(manifests, "PodDisruptionBudget").items():
        matched = [
            k
            for k, labels in pods.items()
            if selects(pdb["spec"]["selector"]["matchLabels"], labels)
        ]
        assert matched == [f"Deployment/{pdb_name}"]
    for svc_name, svc in of_kind(manifests, "Service").items():
        matched = [k for k, labels in pods.items() if selects(svc["spec"]["selector"], labels)]
        assert len(matched) == 1, (svc_name, matched)
        port_names = {
            p["name"]
            for c in containers(workloads(manifests)[matched[0]])
            for p in c.get("ports", [])
        }
        for port in svc["spec"]["ports"]:
            assert port["targetPort"] in port_names, (svc_name, port)
    for key, doc in workloads(manifests).items():
        if doc["kind"] != "Job":
            assert selects(doc["spec"]["selector"]["matchLabels"], pod_labels(doc)), key


# --- values the templates refuse -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"config": {"monitorPersistenceK": 4, "monitorPersistenceM": 3}}, "monitorPersistenceK"),
        ({"config": {"webhookBackoffS": 100, "webhookBackoffMaxS": 50}}, "webhookBackoffMaxS"),
        ({"api": {"autoscaling": {"minReplicas": 5, "maxReplicas": 2}}}, "minReplicas"),
        (
            {"api": {"autoscaling": {"targetCPUUtilizationPercentage": 0}}},
            "needs a CPU or memory target",
        ),
    ],
)
def test_templates_refuse_inconsistent_values(values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm_python.HelmError, match=message):
        render(values)
