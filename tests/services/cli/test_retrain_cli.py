"""``radwatch retrain``: run-local executes the whole pipeline in-process; status prints runs;
start refuses clearly (the CLI sub-app is tested directly until the lead wires it into main)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from services.cli.retrain import app
from services.core.db import session_scope
from services.core.models import ApprovalRequest
from services.core.settings import get_settings
from tests.services.retraining import test_service as rt
from tests.services.retraining.test_service import Scenario

scenario = rt.scenario
server_registry = rt.server_registry


@pytest.fixture
def cli_env(
    scenario: Scenario, database_url: str, tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Scenario]:
    monkeypatch.setenv("RADWATCH_DATABASE_URL", database_url)
    monkeypatch.setenv("RADWATCH_MLFLOW_TRACKING_URI", scenario.registry.tracking_uri)
    monkeypatch.setenv("RADWATCH_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("RADWATCH_MODEL_NAME", scenario.model)
    get_settings.cache_clear()
    try:
        yield scenario
    finally:
        get_settings.cache_clear()


def test_run_local_then_status(cli_env: Scenario) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["run-local", "--epochs", "3", "--seed", "2"])
    assert result.exit_code == 0, result.output
    run = json.loads(result.stdout[result.stdout.index("{") :])
    assert run["state"] == "succeeded"
    assert run["requested_by"].startswith("cli")
    assert run["seed"] == 2
    assert run["candidate_version"] == 2
    assert run["dossier_id"] is not None
    with session_scope(cli_env.sessions) as s:
        approval = s.query(ApprovalRequest).one()
        # The person who ran it trained it: both conflicted (requested_by == trained_by here).
        assert approval.conflicted == {"names": [run["requested_by"]]}

    status = runner.invoke(app, ["status", str(run["id"])])
    assert status.exit_code == 0, status.output
    assert json.loads(status.stdout)["lineage"]["data_snapshot_sha256"]
    listed = runner.invoke(app, ["status"])
    assert [r["id"] for r in json.loads(listed.stdout)] == [run["id"]]

    missing = runner.invoke(app, ["status", "999"])
    assert missing.exit_code == 2
    assert "No retraining run 999" in missing.output


def test_start_refuses_unknown_model(cli_env: Scenario) -> None:
    result = CliRunner().invoke(app, ["start", "--model", "nope"])
    assert result.exit_code == 2
    assert "No deployed model named 'nope'" in result.output
