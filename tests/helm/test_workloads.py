"""Pods: resources and security contexts, Triton and MLflow commands and storage, the Ingress
and the NetworkPolicies."""

from __future__ import annotations

import helm_python
import pytest

from tests.helm.chart import (
    CHART,
    RELEASE,
    SCENARIOS,
    containers,
    env_map,
    name,
    of_kind,
    one,
    pod_labels,
    pod_spec,
    render,
    workloads,
)

# --- pods: resources, security, probes -----------------------------------------------------------


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_container_has_requests_and_runs_unprivileged(scenario: str) -> None:
    for key, doc in workloads(render(SCENARIOS[scenario])).items():
        assert pod_spec(doc)["securityContext"]["runAsNonRoot"] is True, key
        assert pod_spec(doc)["automountServiceAccountToken"] is False, key
        for container in containers(doc):
            assert {"cpu", "memory"} <= set(container["resources"]["requests"]), key
            assert "memory" in container["resources"]["limits"], key
            sc = container["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, key
            assert sc["capabilities"]["drop"] == ["ALL"], key
            assert sc["readOnlyRootFilesystem"] is True, key
            probe_off = scenario == "external-services" and "worker-" in key  # turned off there
            if doc["kind"] != "Job" and not key.endswith(name("beat")) and not probe_off:
                assert "livenessProbe" in container, key


def test_default_image_tag_is_the_app_version() -> None:
    api = one(render(), "Deployment", name("api"))
    app_version = helm_python.Chart.load(CHART).metadata["appVersion"]
    assert containers(api)[0]["image"] == f"ghcr.io/radwatch/radwatch:{app_version}"


def test_triton_runs_the_ngc_image_in_explicit_mode_on_a_pvc() -> None:
    manifests = render()
    triton = one(manifests, "Deployment", name("triton"))
    (container,) = containers(triton)
    assert container["image"].startswith("nvcr.io/nvidia/tritonserver:")
    assert container["image"].endswith("-py3")
    command = container["command"]
    assert command[0] == "tritonserver"
    assert "--model-control-mode=explicit" in command
    assert "--model-repository=/models" in command
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {
        "http": 8000,
        "grpc": 8001,
        "metrics": 8002,
    }
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    claim = {v["name"]: v for v in pod_spec(triton)["volumes"]}["models"]["persistentVolumeClaim"][
        "claimName"
    ]
    assert claim in of_kind(manifests, "PersistentVolumeClaim")
    # without mountInRadwatch, the radwatch pods do not see the repository
    api = one(manifests, "Deployment", name("api"))
    assert all(v["name"] != "triton-models" for v in pod_spec(api)["volumes"])


def test_shared_model_repository_is_mounted_at_the_settings_path() -> None:
    manifests = render(SCENARIOS["shared-model-repository"])
    claim = name("triton-models")
    assert one(manifests, "PersistentVolumeClaim", claim)["spec"]["accessModes"] == [
        "ReadWriteMany"
    ]
    for component in ("api", "worker-monitoring"):
        doc = one(manifests, "Deployment", name(component))
        volumes = {v["name"]: v for v in pod_spec(doc)["volumes"]}
        assert volumes["triton-models"]["persistentVolumeClaim"]["claimName"] == claim
        mounts = {m["name"]: m["mountPath"] for m in containers(doc)[0]["volumeMounts"]}
        assert mounts["triton-models"] == "/models"  # where Triton mounts it too
    config = one(manifests, "ConfigMap", name("config"))["data"]
    assert config["RADWATCH_TRITON_MODEL_REPOSITORY"] == "/models"
    triton = containers(one(manifests, "Deployment", name("triton")))[0]
    assert {"name": "models", "mountPath": "/models"} in triton["volumeMounts"]
    assert (
        "RADWATCH_TRITON_MODEL_REPOSITORY" not in one(render(), "ConfigMap", name("config"))["data"]
    )


def test_object_store_repositories_for_triton_and_mlflow() -> None:
    manifests = render(SCENARIOS["bundled-object-store"])
    triton = containers(one(manifests, "Deployment", name("triton")))[0]
    assert "--model-repository=s3://https://minio.example:9000/models/triton" in triton["command"]
    assert triton["envFrom"] == [{"secretRef": {"name": "triton-s3"}}]
    assert all(m["name"] != "models" for m in triton["volumeMounts"])
    mlflow_doc = one(manifests, "Deployment", name("mlflow"))
    mlflow = containers(mlflow_doc)[0]
    command = mlflow["command"]
    assert command[command.index("--artifacts-destination") + 1] == "s3://models/mlflow"
    assert mlflow["envFrom"] == [{"secretRef": {"name": "mlflow-s3"}}]
    assert of_kind(manifests, "PersistentVolumeClaim") == {}
    assert "strategy" not in mlflow_doc["spec"]  # rolling updates are fine without a RWO volume
    redis = one(manifests, "StatefulSet", name("redis"))
    assert redis["spec"]["volumeClaimTemplates"][0]["spec"]["storageClassName"] == "fast"
    assert "--appendonly" in containers(redis)[0]["command"]


def test_mlflow_server_command() -> None:
    manifests = render(SCENARIOS["ingress-tls"])
    mlflow_doc = one(manifests, "Deployment", name("mlflow"))
    (container,) = containers(mlflow_doc)
    command = container["command"]
    assert command[:2] == ["mlflow", "server"]
    assert command[command.index("--backend-store-uri") + 1] == "$(MLFLOW_BACKEND_STORE_URI)"
    assert env_map(container)["MLFLOW_BACKEND_STORE_URI"]["valueFrom"]["secretKeyRef"]["key"] == (
        "mlflow-backend-store-uri"
    )
    assert command[command.index("--host") + 1] == "0.0.0.0"
    assert command[command.index("--port") + 1] == "5000"
    assert command[command.index("--artifacts-destination") + 1] == "/mlflow/artifacts"
    hosts = command[command.index("--allowed-hosts") + 1].split(",")
    assert {name("mlflow"), f"{name('mlflow')}:*", "mlflow.hospital.example"} <= set(hosts)
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"
    assert mlflow_doc["spec"]["strategy"] == {"type": "Recreate"}  # RWO artifacts PVC
    pvc = one(manifests, "PersistentVolumeClaim", name("mlflow-artifacts"))
    assert pvc["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}


def test_mlflow_server_accepts_the_rendered_options() -> None:
    from mlflow.cli import server

    rendered = containers(one(render(), "Deployment", name("mlflow")))[0]["command"][2:]
    known = {o for p in server.params for o in (*p.opts, *p.secondary_opts)}
    assert {t for t in rendered if t.startswith("--")} <= known


# --- ingress and network policies ----------------------------------------------------------------


def test_ingress_with_tls_routes_to_the_api_service() -> None:
    manifests = render(SCENARIOS["ingress-tls"])
    ingress = one(manifests, "Ingress", name("api"))
    spec = ingress["spec"]
    assert spec["ingressClassName"] == "nginx"
    assert spec["tls"] == [{"secretName": "radwatch-tls", "hosts": ["radwatch.hospital.example"]}]
    assert ingress["metadata"]["annotations"] == {"cert-manager.io/cluster-issuer": "letsencrypt"}
    (rule,) = spec["rules"]
    assert rule["host"] == "radwatch.hospital.example"
    backend = rule["http"]["paths"][0]["backend"]["service"]
    api_service = one(manifests, "Service", backend["name"])
    assert backend["port"]["name"] in {p["name"] for p in api_service["spec"]["ports"]}
    assert backend["name"] == name("api")


def test_network_policies() -> None:
    release_pods = {
        "podSelector": {
            "matchLabels": {
                "app.kubernetes.io/instance": RELEASE,
                "app.kubernetes.io/name": "radwatch",
            }
        }
    }
    manifests = render(SCENARIOS["ingress-tls"])
    policies = of_kind(manifests, "NetworkPolicy")
    (api_rule,) = policies[name("api")]["spec"]["ingress"]
    sources = SCENARIOS["ingress-tls"]["networkPolicy"]
    assert api_rule["from"] == [*sources["apiFrom"], *sources["metricsFrom"], release_pods]
    for component in ("postgresql", "redis"):
        (rule,) = policies[name(component)]["spec"]["ingress"]
        assert rule["from"] == [release_pods]
    triton_rules = policies[name("triton")]["spec"]["ingress"]
    assert triton_rules[0]["from"] == [release_pods]
    assert triton_rules[1]["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    assert policies[name("mlflow")]["spec"]["ingress"][0]["from"] == [
        *sources["mlflowFrom"],
        release_pods,
    ]
    closed = policies[name("no-ingress")]["spec"]
    assert closed["ingress"] == []
    deployments = of_kind(manifests, "Deployment")
    closed_selector = closed["podSelector"]["matchExpressions"]
    components = next(
        e["values"] for e in closed_selector if e["key"] == "app.kubernetes.io/component"
    )
    for component in ("beat", "worker-monitoring"):
        assert pod_labels(deployments[name(component)])["app.kubernetes.io/component"] in components
    assert pod_labels(deployments[name("api")])["app.kubernetes.io/component"] not in components
    # without apiFrom the API port is open to any source
    (default_rule,) = of_kind(render(), "NetworkPolicy")[name("api")]["spec"]["ingress"]
    assert "from" not in default_rule
