"""``radwatch probes fit`` refuses bad input with exit code 2 and one line, before it needs
Triton, and registers nothing (real PostgreSQL, an embedded MLflow store). The fit itself runs
in tests/services/serving/test_probes.py and tests/e2e/test_probe_models.py."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from services.cli.main import app
from services.core.settings import get_settings
from tests.fixtures.foreign_models import build_embedding_encoder

runner = CliRunner()


@pytest.fixture
def env(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("RADWATCH_DATABASE_URL", database_url)
    monkeypatch.setenv("RADWATCH_MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("RADWATCH_DATA_DIR", str(tmp_path / "data"))
    # Nothing listens here: every refusal below must come before Triton is needed.
    monkeypatch.setenv("RADWATCH_TRITON_URL", "127.0.0.1:9")
    get_settings.cache_clear()
    try:
        yield tmp_path
    finally:
        get_settings.cache_clear()


def _fit(env: Path, studies: Path, labels: Path, encoder: str = "enc") -> tuple[int, str]:
    result = runner.invoke(
        app,
        [
            "probes", "fit", "--encoder", encoder, "--encoder-version", "1", "--name", "heads",
            "--studies", str(studies), "--labels", str(labels),
        ],
    )  # fmt: skip
    return result.exit_code, result.output


def test_bad_input_exits_2_with_one_line_and_registers_nothing(env: Path) -> None:
    studies = env / "studies"
    studies.mkdir()
    labels = env / "labels.csv"
    labels.write_text("study_id,nodule\nA1,1\n")

    code, out = _fit(env, env / "missing", labels)
    assert code == 2
    assert "does not exist" in out

    code, out = _fit(env, studies, labels)
    assert code == 2
    assert "enc" in out
    assert "Traceback" not in out

    encoder = build_embedding_encoder(env / "model")
    spec = env / "spec.json"
    spec.write_text(json.dumps(encoder.spec))
    imported = runner.invoke(
        app, ["models", "import", "--name", "enc", str(encoder.path), "--spec", str(spec)]
    )
    assert imported.exit_code == 0, imported.output

    no_ids = env / "no_ids.csv"
    no_ids.write_text("accession,nodule\nA1,1\n")
    code, out = _fit(env, studies, no_ids)
    assert code == 2
    assert "study_id" in out

    bad_cell = env / "bad_cell.csv"
    bad_cell.write_text("study_id,nodule\nA1,yes\n")
    code, out = _fit(env, studies, bad_cell)
    assert code == 2
    assert "labels are 0, 1 or empty" in out

    bad_name = env / "bad_name.csv"
    bad_name.write_text("study_id,Nodule Size\nA1,1\n")
    code, out = _fit(env, studies, bad_name)
    assert code == 2
    assert "findings" in out

    code, out = _fit(env, studies, labels)
    assert code == 2
    assert "holds no files" in out

    listed = json.loads(runner.invoke(app, ["models", "list", "--json"]).stdout)
    assert [(m["name"], m["needs_revalidation"]) for m in listed] == [("enc", None)]
