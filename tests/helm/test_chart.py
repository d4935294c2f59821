"""The radwatch chart renders, lints clean, validates strictly against Kubernetes 1.37, and wires
its parts together: commands match the real CLIs, selectors match pods, secrets stay secret."""

from __future__ import annotations

import base64
from typing import Any

import helm_python
import kubernetes_validate
import pytest
from kubernetes_validate.utils import all_versions

from tests.helm.chart import (
    CHART,
    K8S_VERSION,
    RELEASE,
    SCENARIOS,
    SECRET_STRINGS,
    Manifest,
    containers,
    env_map,
    name,
    of_kind,
    one,
    pod_labels,
    pod_spec,
    render,
    selects,
    validate,
    walk,
)

WORKLOADS = ("Deployment", "StatefulSet", "Job")


def workloads(manifests: list[Manifest]) -> dict[str, dict[str, Any]]:
    return {f"{m.kind}/{m.name}": m.doc for m in manifests if m.kind in WORKLOADS}


# --- render, validate, lint ----------------------------------------------------------------------


def test_validation_uses_the_newest_kubernetes_that_kubernetes_validate_ships() -> None:
    assert all_versions()[-1] == K8S_VERSION


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


# --- configuration and secrets -------------------------------------------------------------------


def _configmap_text(manifests: list[Manifest]) -> str:
    return "\n".join(
        f"{k}={v}"
        for cm in of_kind(manifests, "ConfigMap").values()
        for k, v in cm.get("data", {}).items()
    )


def _secret_data(manifests: list[Manifest]) -> dict[str, str]:
    (secret,) = of_kind(manifests, "Secret").values()
    return {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}


def test_secret_values_reach_the_secret_and_no_configmap() -> None:
    manifests = render(SCENARIOS["external-db-chart-secret"])
    data = _secret_data(manifests)
    assert data["database-url"] == SCENARIOS["external-db-chart-secret"]["secrets"]["databaseUrl"]
    assert data["pseudonym-key"] == "pseudo-s3cr3t"
    assert {"postgres-password", "redis-password"}.isdisjoint(data)  # nothing in-chart to use them
    text = _configmap_text(manifests)
    for secret in SECRET_STRINGS:
        assert secret in "".join(data.values())
        assert secret not in text
    for doc in workloads(manifests).values():
        for container in containers(doc):
            for entry in container.get("env", []):
                assert "value" not in entry or not any(s in entry["value"] for s in SECRET_STRINGS)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_configmaps_hold_only_non_secret_settings(scenario: str) -> None:
    from services.core.settings import Settings

    manifests = render(SCENARIOS[scenario])
    config = one(manifests, "ConfigMap", name("config"))["data"]
    fields = {f"RADWATCH_{f.upper()}" for f in Settings.model_fields}
    assert set(config) <= fields, set(config) - fields
    secret_env = {
        "RADWATCH_DATABASE_URL",
        "RADWATCH_BROKER_URL",
        "RADWATCH_PSEUDONYM_KEY",
        "RADWATCH_SESSION_SECRET",
    }
    assert secret_env.isdisjoint(config)
    if not SCENARIOS[scenario].get("secrets", {}).get("existingSecret"):
        generated = _secret_data(manifests)
        text = _configmap_text(manifests)
        for value in generated.values():
            assert value not in text
    # every radwatch container reads the secrets from the Secret by reference
    for doc in of_kind(manifests, "Deployment").values():
        for container in containers(doc):
            if (
                container["image"].startswith("ghcr.io/radwatch/radwatch")
                and container["command"][0] != "mlflow"
            ):
                env = env_map(container)
                assert set(env) <= fields | {"HOME"}, set(env) - fields
                for var in secret_env:
                    assert "secretKeyRef" in env[var]["valueFrom"], (doc["metadata"]["name"], var)


#: Settings the chart leaves at their defaults on purpose. training_queue: `radwatch worker
#: --queues` accepts only "monitoring" and "training", so renaming the queue would strand workers.
LEFT_AT_DEFAULT = {"training_queue"}


def _container_env(manifests: list[Manifest], container: dict[str, Any]) -> dict[str, str]:
    """The environment a container would get, resolved from the rendered ConfigMaps/Secrets."""
    configmaps = {n: cm.get("data", {}) for n, cm in of_kind(manifests, "ConfigMap").items()}
    secrets = {
        n: {k: base64.b64decode(v).decode() for k, v in s["data"].items()}
        for n, s in of_kind(manifests, "Secret").items()
    }
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(configmaps[source["configMapRef"]["name"]])
    for entry in container.get("env", []):
        if "value" in entry:
            env[entry["name"]] = entry["value"]
        else:
            ref = entry["valueFrom"]["secretKeyRef"]
            env[entry["name"]] = secrets[ref["name"]][ref["key"]]
    return env


def _settings_from(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Any:
    import os

    from services.core.settings import Settings

    for key in list(os.environ):
        if key.startswith("RADWATCH_"):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return Settings()


@pytest.mark.parametrize(
    "scenario", [s for s in SCENARIOS if not SCENARIOS[s].get("secrets", {}).get("existingSecret")]
)
def test_rendered_configuration_passes_the_production_settings_checks(
    scenario: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a radwatch pod gets is accepted by Settings, which refuses development secrets and
    SQLite in production: a missing secret setting would crash every pod at start."""
    manifests = render(SCENARIOS[scenario])
    for component in ("api", "worker-monitoring", "beat"):
        (container,) = containers(one(manifests, "Deployment", name(component)))
        settings = _settings_from(_container_env(manifests, container), monkeypatch)
        assert settings.environment == "production"
        assert settings.database_url.startswith("postgresql+psycopg://")
        assert settings.broker_url.startswith(("redis://", "rediss://"))
        assert str(settings.data_dir) == "/var/lib/radwatch"


def test_production_settings_check_can_fail(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    from services.core.settings import DEV_SESSION_SECRET

    manifests = render({"secrets": {"sessionSecret": DEV_SESSION_SECRET}})
    (container,) = containers(one(manifests, "Deployment", name("api")))
    with pytest.raises(ValidationError, match="RADWATCH_SESSION_SECRET"):
        _settings_from(_container_env(manifests, container), monkeypatch)


def test_every_setting_is_configured_by_the_chart() -> None:
    """A new field in Settings fails this test until the chart sets it (or it is listed in
    LEFT_AT_DEFAULT with the reason)."""
    from services.core.settings import Settings

    manifests = render(SCENARIOS["shared-model-repository"])
    (container,) = containers(one(manifests, "Deployment", name("api")))
    configured = set(_container_env(manifests, container))
    fields = {f"RADWATCH_{f.upper()}": f for f in Settings.model_fields}
    missing = {field for env, field in fields.items() if env not in configured}
    assert missing == LEFT_AT_DEFAULT


def test_existing_secret_is_referenced_and_no_secret_is_created() -> None:
    manifests = render(SCENARIOS["external-db-existing-secret"])
    assert of_kind(manifests, "Secret") == {}
    refs = set()
    for doc in workloads(manifests).values():
        for container in containers(doc):
            for entry in container.get("env", []):
                ref = entry.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    refs.add((ref["name"], entry["name"], ref["key"]))
    assert {r[0] for r in refs} == {"radwatch-prod"}
    assert ("radwatch-prod", "RADWATCH_DATABASE_URL", "db-url") in refs
    assert ("radwatch-prod", "MLFLOW_BACKEND_STORE_URI", "mlflow-backend-store-uri") in refs
    assert set(of_kind(manifests, "StatefulSet")) == set()
    assert one(manifests, "ConfigMap", name("config"))["data"]["RADWATCH_MONITOR_WINDOW"] == "200"


def test_generated_secret_is_consistent_with_the_in_chart_databases() -> None:
    manifests = render()
    data = _secret_data(manifests)
    password = data["postgres-password"]
    assert len(password) >= 32
    assert password.isalnum()
    assert data["database-url"] == (
        f"postgresql+psycopg://radwatch:{password}@{name('postgresql')}:5432/radwatch"
    )
    assert data["mlflow-backend-store-uri"].endswith(f"{name('postgresql')}:5432/mlflow")
    assert data["broker-url"] == f"redis://:{data['redis-password']}@{name('redis')}:6379/0"
    assert len(data["pseudonym-key"]) >= 32
    assert len(data["session-secret"]) >= 32
    pg = one(manifests, "StatefulSet", name("postgresql"))
    ref = env_map(containers(pg)[0])["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": name("secrets"), "key": "postgres-password"}
    init = one(manifests, "ConfigMap", name("postgresql-init"))["data"]
    assert 'CREATE DATABASE "mlflow" OWNER "radwatch"' in next(iter(init.values()))
    config = one(manifests, "ConfigMap", name("config"))["data"]
    assert config["RADWATCH_TRITON_URL"] == f"{name('triton')}:8000"
    assert config["RADWATCH_MLFLOW_TRACKING_URI"] == f"http://{name('mlflow')}:5000"
    assert config["RADWATCH_ENVIRONMENT"] == "production"


def test_external_triton_and_mlflow() -> None:
    manifests = render(SCENARIOS["external-services"])
    assert set(of_kind(manifests, "Deployment")) == {
        name(c) for c in ("api", "worker-monitoring", "beat")
    }
    config = one(manifests, "ConfigMap", name("config"))["data"]
    assert config["RADWATCH_TRITON_URL"] == "triton.inference:8000"
    assert config["RADWATCH_MLFLOW_TRACKING_URI"] == "https://mlflow.example"
    assert "RADWATCH_TRITON_METRICS_URL" not in config
    assert of_kind(manifests, "ServiceAccount") == {}
    assert of_kind(manifests, "NetworkPolicy") == {}
    api = one(manifests, "Deployment", name("api"))
    assert pod_spec(api)["serviceAccountName"] == "radwatch-sa"
    assert pod_spec(api)["imagePullSecrets"] == [{"name": "ghcr"}]
    assert containers(api)[0]["image"] == "ghcr.io/radwatch/radwatch:1.2.3"
    assert one(manifests, "PodDisruptionBudget", name("api"))["spec"]["maxUnavailable"] == "25%"
    worker = containers(one(manifests, "Deployment", name("worker-monitoring")))[0]
    assert "livenessProbe" not in worker


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
