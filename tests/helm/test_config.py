"""The chart's configuration: the ConfigMap holds only non-secret settings, the Secret (the
chart's or an existing one) the rest, and what a pod gets passes Settings' production checks."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from tests.helm.chart import (
    SCENARIOS,
    SECRET_STRINGS,
    Manifest,
    containers,
    env_map,
    name,
    of_kind,
    one,
    pod_spec,
    render,
    workloads,
)

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
