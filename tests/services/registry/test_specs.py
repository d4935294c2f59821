"""Every registered version carries its spec; imported versions carry their serving file.

Runs against both backends (see conftest): the embedded SQLite store and a real mlflow server.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest

from pipelines.model import ModelConfig, builtin_spec
from pipelines.profile import ReferenceProfile
from pipelines.spec import parse_spec
from services.core.errors import ValidationFailedError
from services.registry.mlflow_registry import MODEL_ARTIFACT, MlflowRegistry
from tests.fixtures.profiles import random_profile
from tests.fixtures.triton import make_test_model

_SPEC = {
    "runtime": "onnx",
    "input": {"name": "pixels", "shape": [1, 64, 64]},
    "outputs": [
        {
            "kind": "findings",
            "tensor": "logits",
            "findings": [{"name": "edema"}],
            "activation": "logit",
        },
        {"kind": "embedding", "tensor": "features", "width": 16},
    ],
}


def _name() -> str:
    return f"m-{uuid.uuid4().hex[:8]}"


def test_a_trained_version_stores_the_builtin_spec(registry: MlflowRegistry) -> None:
    name, model = _name(), make_test_model(seed=3)
    run_id = registry.log_training(
        experiment=name,
        run_name="t",
        params={},
        metrics={},
        model=model,
        profile=random_profile(seed=3),
        model_card="# card\n",
    )
    version = registry.register(name, run_id)
    spec = registry.load_spec(name, version)
    assert spec == builtin_spec(ModelConfig(embedding_dim=model.embedding_dim))
    assert registry.has_trainable_model(name, version)


def test_a_version_from_before_specs_reads_as_the_builtin_model(
    registry: MlflowRegistry, tmp_path: Path
) -> None:
    from mlflow import MlflowClient

    from pipelines.model import save_model

    name, model = _name(), make_test_model(seed=4)
    client = MlflowClient(tracking_uri=registry.tracking_uri)
    experiment = client.create_experiment(
        name,
        artifact_location=None
        if registry.tracking_uri.startswith("http")
        else (tmp_path / "art").as_uri(),
    )
    run_id = client.create_run(experiment).info.run_id
    save_model(model, tmp_path / "model")
    client.log_artifacts(run_id, str(tmp_path / "model"), MODEL_ARTIFACT)
    client.set_terminated(run_id, "FINISHED")
    version = registry.register(name, run_id)
    assert registry.load_spec(name, version) == builtin_spec(
        ModelConfig(embedding_dim=model.embedding_dim)
    )


def test_an_imported_version_keeps_spec_artifact_and_reference(
    registry: MlflowRegistry, tmp_path: Path
) -> None:
    name, spec = _name(), parse_spec(_SPEC)
    artifact = tmp_path / "model.onnx"
    artifact.write_bytes(b"not really onnx, but bytes the registry must keep exactly")
    run_id = registry.log_import(
        experiment=name,
        run_name="import",
        spec=spec,
        artifact=artifact,
        model_card="# imported\n",
        params={"source_sha256": "ab" * 32},
    )
    version = registry.register(name, run_id)
    assert registry.load_spec(name, version) == spec
    assert not registry.has_trainable_model(name, version)
    got = registry.download_serving_artifact(name, version, tmp_path / "dl")
    assert got.name == "model.onnx"
    assert got.read_bytes() == artifact.read_bytes()
    assert name in registry.model_names()

    profile = random_profile(seed=5)
    profile = ReferenceProfile(
        embeddings=profile.embeddings[:, :16],
        scores=profile.scores[:, :1],
        labels=np.full((len(profile), 1), -1, np.int8),
        metadata=profile.metadata,
        findings=("edema",),
    )
    registry.log_reference_profile(name, version, profile)
    back = registry.load_reference_profile(name, version)
    assert back.findings == ("edema",)
    np.testing.assert_array_equal(back.embeddings, profile.embeddings)


def test_a_stored_spec_that_no_longer_validates_is_a_clear_error(
    registry: MlflowRegistry, tmp_path: Path
) -> None:
    name = _name()
    artifact = tmp_path / "model.onnx"
    artifact.write_bytes(b"x")
    run_id = registry.log_import(
        experiment=name,
        run_name="import",
        spec=parse_spec(_SPEC),
        artifact=artifact,
        model_card="# c\n",
        params={},
    )
    registry.log_text(run_id, '{"runtime": "tensorflow"}', "radwatch/spec.json")
    version = registry.register(name, run_id)
    with pytest.raises(ValidationFailedError, match="does not validate"):
        registry.load_spec(name, version)
