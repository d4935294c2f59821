"""``radwatch models import|list|show`` on real foreign models, a real PostgreSQL database and
an embedded MLflow store: what is registered, and that a refused import registers nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipelines.spec import parse_spec
from services.cli.main import app
from services.core.settings import get_settings
from tests.fixtures.foreign_models import (
    build_embedding_encoder,
    build_monai_bundle,
    build_onnx_classifier,
    build_pt2_classifier,
)

runner = CliRunner()


@pytest.fixture
def env(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("RADWATCH_DATABASE_URL", database_url)
    monkeypatch.setenv("RADWATCH_MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("RADWATCH_DATA_DIR", str(tmp_path / "data"))
    get_settings.cache_clear()
    try:
        yield tmp_path
    finally:
        get_settings.cache_clear()


def _spec_file(folder: Path, spec: dict[str, object]) -> Path:
    path = folder / "spec.json"
    path.write_text(json.dumps(spec))
    return path


def _import(*args: str) -> dict[str, object]:
    result = runner.invoke(app, ["models", "import", *args, "--json"])
    assert result.exit_code == 0, result.output
    out: dict[str, object] = json.loads(result.stdout)
    return out


def test_import_list_and_show_an_onnx_classifier_and_a_bundle(env: Path) -> None:
    onnx = build_onnx_classifier(env / "onnx")
    first = _import(
        "--name", "vendor-cls", str(onnx.path), "--spec", str(_spec_file(env, onnx.spec))
    )
    assert first["version"] == 1
    spec = first["spec"]
    assert isinstance(spec, dict)
    assert [f["name"] for f in spec["outputs"][0]["findings"]] == [
        f["name"]
        for f in onnx.spec["outputs"][0]["findings"]  # type: ignore[index]
    ]
    second = _import("--name", "vendor-cls", str(onnx.path), "--spec", str(env / "spec.json"))
    assert second["version"] == 2

    bundle = build_monai_bundle(env / "bundle")
    derived = _import("--name", "monai-cxr", str(bundle.path))
    assert derived["version"] == 1
    assert parse_spec(derived["spec"]) == parse_spec(bundle.spec)  # type: ignore[arg-type]

    listed = runner.invoke(app, ["models", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    rows = {r["name"]: r for r in json.loads(listed.stdout)}
    assert rows["vendor-cls"]["versions"] == 2
    assert rows["vendor-cls"]["runtime"] == "onnx"
    assert rows["monai-cxr"]["runtime"] == "torch-export"

    shown = runner.invoke(app, ["models", "show", "vendor-cls", "--version", "1", "--json"])
    assert shown.exit_code == 0, shown.output
    body = json.loads(shown.stdout)
    assert body["spec"] == first["spec"]
    human = runner.invoke(app, ["models", "show", "monai-cxr"])
    assert "monitors:" in human.stdout


def test_refused_imports_exit_2_with_one_line_and_register_nothing(env: Path) -> None:
    onnx = build_onnx_classifier(env / "onnx")
    no_spec = runner.invoke(app, ["models", "import", "--name", "cls", str(onnx.path)])
    assert no_spec.exit_code == 2
    assert "needs a spec" in no_spec.output
    assert "Traceback" not in no_spec.output

    bad_spec = env / "bad.yaml"
    bad_spec.write_text("runtime: onnx\ninput: {name: x, shape: [1, 'h', 8]}\noutputs: []\n")
    refused = runner.invoke(
        app, ["models", "import", "--name", "cls", str(onnx.path), "--spec", str(bad_spec)]
    )
    assert refused.exit_code == 2
    assert "input.dynamic" in refused.output

    _import("--name", "cls", str(onnx.path), "--spec", str(_spec_file(env, onnx.spec)))
    encoder = build_embedding_encoder(env / "enc")
    other = env / "other"
    other.mkdir()
    clash = runner.invoke(
        app,
        [
            "models",
            "import",
            "--name",
            "cls",
            str(encoder.path),
            "--spec",
            str(_spec_file(other, encoder.spec)),
        ],
    )
    assert clash.exit_code == 2
    assert "already exists with a different spec" in clash.output
    pt2 = build_pt2_classifier(env / "pt2")
    runtime_change = runner.invoke(
        app,
        [
            "models",
            "import",
            "--name",
            "cls",
            str(pt2.path),
            "--spec",
            str(_spec_file(env / "pt2", pt2.spec)),
        ],
    )
    assert runtime_change.exit_code == 2
    assert "runtime" in runtime_change.output

    listed = json.loads(runner.invoke(app, ["models", "list", "--json"]).stdout)
    assert [(r["name"], r["versions"]) for r in listed] == [("cls", 1)]
    missing = runner.invoke(app, ["models", "import", "--name", "x", str(env / "nope.onnx")])
    assert missing.exit_code == 2
