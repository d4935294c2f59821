"""``radwatch monitors`` against PostgreSQL: the same rules and history as the API."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from services.cli.main import app
from services.core.settings import get_settings
from tests.conftest import TEST_MODEL

runner = CliRunner()


@pytest.fixture
def env(database_url: str, deployed: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RADWATCH_DATABASE_URL", database_url)
    get_settings.cache_clear()


def run(*args: str) -> Any:
    result = runner.invoke(app, ["monitors", *args])
    return result


@pytest.mark.usefixtures("env")
def test_create_update_history_results(tmp_path: Path) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"kind": "drift", "window": {"type": "count", "size": 50}}))
    created = run("create", "--model", TEST_MODEL, "--name", "vendor", "--spec", f"@{spec}")
    assert created.exit_code == 0, created.output
    mid = json.loads(created.stdout)["id"]
    assert json.loads(run("list").stdout)[0]["name"] == "vendor"
    off = run("update", str(mid), "--disable")
    assert json.loads(off.stdout)["active"] is False
    history = json.loads(run("history", str(mid)).stdout)
    assert [h["change"] for h in history] == ["created", "disabled"]
    assert history[0]["changed_by"].startswith("cli")
    assert json.loads(run("results", str(mid)).stdout) == []


@pytest.mark.usefixtures("env")
@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("create", "--model", "ghost", "--name", "x", "--spec", '{"kind": "drift"}'), "ghost"),
        (("create", "--model", TEST_MODEL, "--name", "x", "--spec", "{nope"), "not readable JSON"),
        (("create", "--model", TEST_MODEL, "--name", "x", "--spec", '{"kind": "?"}'), "kind"),
        (("update", "424242", "--disable"), "No monitor with id 424242"),
        (("update", "1", "--enable", "--disable"), "not both"),
    ],
)
def test_errors_exit_2_with_a_message(args: tuple[str, ...], needle: str) -> None:
    result = run(*args)
    assert result.exit_code == 2, result.output
    assert needle in result.output
    assert "Traceback" not in result.output
