"""MlflowRegistry against a real `mlflow server` and against the embedded SQLite store.

Every behavioural test runs twice (``registry`` is parametrised over both backends), because the
demo uses SQLite with a local artifact folder and production uses a tracking server that proxies
artifacts; they take different code paths inside MLflow.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from pipelines.contract import IMAGE_SIZE
from pipelines.model import RadiographNet
from pipelines.profile import ReferenceProfile
from services.core.errors import (
    RegistryUnavailableError,
    UnknownModelError,
    ValidationFailedError,
)
from services.core.ports import ModelRegistry, ModelVersionInfo
from services.core.processes import free_port
from services.registry.mlflow_registry import MlflowRegistry
from tests.fixtures.profiles import random_profile
from tests.fixtures.triton import make_test_model


def _log(
    registry: MlflowRegistry, model: RadiographNet, profile: ReferenceProfile, **extra: str
) -> str:
    return registry.log_training(
        experiment=f"exp-{uuid.uuid4().hex[:8]}",
        run_name="train-test",
        params={"epochs": 2, "lr": 1e-3, "note": "seeded"},
        metrics={"val_auroc_effusion": 0.91, "val_loss": 0.3},
        model=model,
        profile=profile,
        model_card="# Model card\n\nIntended use: testing.\n",
        tags={"radwatch.kind": "training", **extra},
    )


def test_is_a_model_registry(registry: MlflowRegistry) -> None:
    assert isinstance(registry, ModelRegistry)


def test_log_register_alias_and_load_round_trip(registry: MlflowRegistry) -> None:
    name = f"cxr-{uuid.uuid4().hex[:8]}"
    model, profile = make_test_model(seed=31), random_profile(seed=31)
    before = datetime.now(UTC) - timedelta(seconds=5)
    run_id = _log(registry, model, profile)
    version = registry.register(name, run_id, description="first")
    assert version == 1
    registry.set_alias(name, "champion", version)

    info = registry.get_by_alias(name, "champion")
    assert info == registry.get_version(name, 1)
    assert isinstance(info, ModelVersionInfo)
    assert (info.name, info.version, info.run_id, info.description) == (name, 1, run_id, "first")
    assert info.aliases == ("champion",)
    assert info.created_at.tzinfo is not None
    assert before <= info.created_at <= datetime.now(UTC) + timedelta(seconds=5)

    loaded = registry.load_model(name, 1)
    assert not loaded.training
    x = torch.randn(3, 1, IMAGE_SIZE, IMAGE_SIZE)
    with torch.inference_mode():
        for a, b in zip(model(x), loaded(x), strict=True):
            torch.testing.assert_close(a, b, atol=1e-6, rtol=0)

    back = registry.load_reference_profile(name, 1)
    np.testing.assert_array_equal(back.embeddings, profile.embeddings)
    np.testing.assert_array_equal(back.scores, profile.scores)
    np.testing.assert_array_equal(back.labels, profile.labels)
    pd.testing.assert_frame_equal(back.metadata, profile.metadata)
    assert back.findings == profile.findings


def test_second_version_and_alias_moves(registry: MlflowRegistry) -> None:
    name = f"cxr-{uuid.uuid4().hex[:8]}"
    v1 = registry.register(name, _log(registry, make_test_model(seed=1), random_profile()))
    v2 = registry.register(name, _log(registry, make_test_model(seed=2), random_profile()))
    assert (v1, v2) == (1, 2)
    registry.set_alias(name, "champion", v1)
    registry.set_alias(name, "candidate", v2)
    registry.set_alias(name, "champion", v2)  # promotion moves the alias
    versions = registry.list_versions(name)
    assert [(v.version, v.aliases) for v in versions] == [(1, ()), (2, ("candidate", "champion"))]
    registry.delete_alias(name, "candidate")
    registry.delete_alias(name, "candidate")  # idempotent
    assert registry.get_version(name, 2).aliases == ("champion",)
    with pytest.raises(UnknownModelError, match="candidate"):
        registry.get_by_alias(name, "candidate")


def test_unknown_names_versions_aliases_runs(registry: MlflowRegistry) -> None:
    name = f"cxr-{uuid.uuid4().hex[:8]}"
    with pytest.raises(UnknownModelError, match=name):
        registry.get_version(name, 1)
    with pytest.raises(UnknownModelError, match=name):
        registry.list_versions(name)
    with pytest.raises(UnknownModelError):
        registry.register(name, uuid.uuid4().hex)
    registry.register(name, _log(registry, make_test_model(seed=3), random_profile()))
    with pytest.raises(UnknownModelError, match="'champion'"):
        registry.get_by_alias(name, "champion")
    with pytest.raises(UnknownModelError, match="version 7"):
        registry.get_version(name, 7)
    with pytest.raises(UnknownModelError):
        registry.set_alias(name, "champion", 7)
    with pytest.raises(UnknownModelError):
        registry.load_model(name, 7)


def test_oversized_param_is_refused(registry: MlflowRegistry) -> None:
    with pytest.raises(ValidationFailedError, match="6000"):
        registry.log_training(
            experiment="exp-big",
            run_name="r",
            params={"blob": "x" * 7000},
            metrics={},
            model=make_test_model(seed=4),
            profile=random_profile(),
            model_card="",
        )


def test_embedded_artifacts_stay_next_to_the_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The working directory must not collect an ./mlruns folder (MLflow's default).
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    data = tmp_path / "data"
    data.mkdir()
    registry = MlflowRegistry(f"sqlite:///{data / 'mlflow.db'}")
    registry.register("cxr", _log(registry, make_test_model(seed=5), random_profile()))
    assert list(cwd.iterdir()) == []
    saved = list((data / "mlartifacts").rglob("weights.pt"))
    assert len(saved) == 1
    assert (saved[0].parent.parent / "model_card.md").is_file()
    assert (saved[0].parent.parent / "reference_profile" / "manifest.json").is_file()


def test_unreachable_server_fails_fast() -> None:
    registry = MlflowRegistry(f"http://127.0.0.1:{free_port()}")
    t0 = time.monotonic()
    with pytest.raises(RegistryUnavailableError, match="not reachable"):
        registry.get_by_alias("cxr", "champion")
    assert time.monotonic() - t0 < 5
    with pytest.raises(RegistryUnavailableError):
        registry.ping()


def test_credentials_never_appear_in_errors() -> None:
    registry = MlflowRegistry(f"http://alice:s3cret@127.0.0.1:{free_port()}")
    with pytest.raises(RegistryUnavailableError) as info:
        registry.list_versions("cxr")
    assert "s3cret" not in info.value.message


def test_http_limits_are_scoped_to_the_call(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "7")  # an operator's explicit choice
    registry = MlflowRegistry(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(RegistryUnavailableError):
        registry.ping()
    assert "MLFLOW_HTTP_REQUEST_MAX_RETRIES" not in os.environ
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "7"
