"""The registry under test, once per backend (embedded SQLite store and a real `mlflow server`).

One registry per backend for each module: a fresh SQLite store costs seconds of MLflow schema
migrations, and every test uses its own model names.
"""

from __future__ import annotations

import pytest

from services.registry.mlflow_registry import MlflowRegistry


@pytest.fixture(scope="module", params=["sqlite", "server"])
def registry(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> MlflowRegistry:
    if request.param == "server":
        uri: str = request.getfixturevalue("mlflow_server_uri")
        return MlflowRegistry(uri)
    root = tmp_path_factory.mktemp("mlflow-embedded")
    return MlflowRegistry(f"sqlite:///{root / 'mlflow.db'}")
