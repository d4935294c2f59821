"""``radwatch monitor``: the four commands on real Parquet/CSV files, the JSON contract, and
exit code 2 with a clear stderr message for every kind of unusable input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from services.cli.monitor import app

runner = CliRunner()


def _table(rng: np.random.Generator, n: int, shift: float) -> pd.DataFrame:
    x = rng.normal(shift, 1.0, n)
    y = (rng.random(n) < 1 / (1 + np.exp(-(2 * x - 1.5)))).astype(int)
    df = pd.DataFrame(
        {
            "y": y,
            "p": 1 / (1 + np.exp(-(1.3 * (2 * x - 1.5) + 0.3))),
            "age": rng.normal(50 + 10 * shift, 10, n),
            "sex": rng.choice(["F", "M"], n),
            "age_band": rng.choice(["<40", "40-65", ">65"], n),
        }
    )
    for i in range(4):
        df[f"emb_{i}"] = rng.normal(0.5 * shift, 1.0, n)
    return df


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("monitor_cli")
    rng = np.random.default_rng(0)
    ref, cur = _table(rng, 1500, 0.0), _table(rng, 1000, 0.8)
    paths = {"ref": d / "ref.parquet", "cur": d / "cur.csv", "same": d / "same.parquet"}
    ref.to_parquet(paths["ref"])
    cur.to_csv(paths["cur"], index=False)
    _table(rng, 1000, 0.0).to_parquet(paths["same"])
    bad = ref.copy()
    bad["p_text"] = bad["p"].astype(str)
    bad.loc[3, "p_text"] = "high"
    bad["empty"] = np.nan
    bad["const_p"] = 0.5
    bad["y_const"] = 0
    bad["age"] = bad["age"].astype(object)
    bad.loc[5, "age"] = "unknown"  # numeric in ref.parquet, text here
    paths["bad"] = d / "bad.csv"
    bad.to_csv(paths["bad"], index=False)
    paths["garbage"] = d / "garbage.parquet"
    paths["garbage"].write_bytes(b"this is not parquet")
    paths["weird"] = d / "table.xlsx"
    paths["weird"].write_bytes(b"x")
    return paths


def _json(args: list[str]) -> dict[str, object]:
    res = runner.invoke(app, [*args, "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["schema_version"] == 1
    return doc


def test_drift_json_flags_the_shifted_column_and_embedding(files: dict[str, Path]) -> None:
    doc = _json(
        [
            "drift",
            "--reference", str(files["ref"]),
            "--current", str(files["cur"]),
            "--columns", "age,sex",
            "--categorical", "sex",
            "--embedding-prefix", "emb_",
            "--alpha", "0.01",
        ]
    )  # fmt: skip
    assert doc["kind"] == "drift"
    assert doc["drift"] is True
    assert doc["columns"]["age"]["drift"] is True
    assert doc["columns"]["sex"]["test"] == "chi2"
    assert doc["multivariate"]["mmd"]["drift"] is True


def test_drift_without_shift_is_quiet(files: dict[str, Path]) -> None:
    doc = _json(
        ["drift", "--reference", str(files["ref"]), "--current", str(files["same"]),
         "--columns", "age,sex"]
    )  # fmt: skip
    assert doc["drift"] is False


def test_performance_json_has_every_metric_with_ci(files: dict[str, Path]) -> None:
    doc = _json(
        ["performance", "--data", str(files["ref"]), "--label", "y", "--score", "p",
         "--threshold", "0.4"]
    )  # fmt: skip
    metrics = doc["metrics"]
    assert isinstance(metrics, dict)
    for name in ("auroc", "sensitivity", "specificity", "ppv", "npv", "brier"):
        m = metrics[name]
        assert m["lower"] <= m["value"] <= m["upper"], name
    assert doc["threshold"] == 0.4


def test_estimate_reads_the_label_from_the_reference_only(files: dict[str, Path]) -> None:
    cur = pd.read_csv(files["cur"]).drop(columns=["y"])
    unlabeled = files["cur"].with_name("unlabeled.parquet")
    cur.to_parquet(unlabeled)
    doc = _json(
        ["estimate", "--reference", str(files["ref"]), "--current", str(unlabeled),
         "--score", "p", "--label", "y"]
    )  # fmt: skip
    truth = pd.read_csv(files["cur"])
    from sklearn.metrics import roc_auc_score

    est = doc["metrics"]["auroc"]  # type: ignore[index]
    assert est["value"] == pytest.approx(roc_auc_score(truth["y"], truth["p"]), abs=0.03)


def test_fairness_json_reports_groups_gaps_and_small_groups(files: dict[str, Path]) -> None:
    doc = _json(
        ["fairness", "--data", str(files["cur"]), "--label", "y", "--score", "p",
         "--threshold", "0.5", "--groups", "sex,age_band", "--min-n", "200"]
    )  # fmt: skip
    groups = doc["groups"]
    assert isinstance(groups, list)
    assert len(groups) == 2 + 3 + 6
    assert any(g["too_small"] for g in groups)
    assert all({"n", "metrics", "too_small"} <= set(g) for g in groups)
    assert doc["gaps"]


def test_tables_without_json(files: dict[str, Path]) -> None:
    res = runner.invoke(
        app, ["performance", "--data", str(files["ref"]), "--label", "y", "--score", "p"]
    )
    assert res.exit_code == 0
    assert "auroc" in res.stdout
    assert "wilson" in res.stdout


BAD = [
    (["performance", "--data", "{missing}", "--label", "y", "--score", "p"], "does not exist"),
    (["performance", "--data", "{garbage}", "--label", "y", "--score", "p"], "could not be read"),
    (["performance", "--data", "{weird}", "--label", "y", "--score", "p"], ".parquet or .csv"),
    (["performance", "--data", "{ref}", "--label", "y", "--score", "nope"], "is not in --data"),
    (["performance", "--data", "{bad}", "--label", "y", "--score", "empty"], "all missing"),
    (["performance", "--data", "{bad}", "--label", "y", "--score", "const_p"], "constant"),
    (["performance", "--data", "{bad}", "--label", "y_const", "--score", "p"], "one class"),
    (["performance", "--data", "{bad}", "--label", "y", "--score", "p_text"], "must be numeric"),
    (["performance", "--data", "{bad}", "--label", "sex", "--score", "p"], "must be numeric"),
    (["drift", "--reference", "{ref}", "--current", "{bad}", "--columns", "age"], "numeric in"),
    (["drift", "--reference", "{bad}", "--current", "{bad}", "--columns", "empty"], "missing"),
    (["drift", "--reference", "{bad}", "--current", "{bad}", "--columns", "const_p"], "constant"),
    (["drift", "--reference", "{ref}", "--current", "{cur}", "--columns", "zzz"], "not in"),
    (["drift", "--reference", "{ref}", "--current", "{cur}", "--categorical", "sexx"], "not in"),
    (["drift", "--reference", "{ref}", "--current", "{cur}", "--columns", "age",
      "--categorical", "sex"], "not in --columns"),
    (["estimate", "--reference", "{cur}", "--current", "{ref}", "--score", "p", "--label", "q"],
     "is not in --reference"),
    (["fairness", "--data", "{ref}", "--label", "y", "--score", "p", "--threshold", "0.5",
      "--groups", "site"], "is not in --data"),
]  # fmt: skip


@pytest.mark.parametrize(("args", "message"), BAD)
def test_unusable_input_exits_2_with_message(
    files: dict[str, Path], args: list[str], message: str
) -> None:
    paths = {k: str(v) for k, v in files.items()} | {"missing": "/nonexistent/x.parquet"}
    res = runner.invoke(app, [a.format(**paths) for a in args] + ["--json"])
    assert res.exit_code == 2, res.output
    assert message in res.stderr
    assert res.stdout == ""


def test_real_subprocess_through_the_radwatch_entry_point(files: dict[str, Path]) -> None:
    radwatch = Path(sys.executable).with_name("radwatch")
    cmd = [str(radwatch), "monitor", "performance", "--data",
           str(files["ref"]), "--label", "y", "--score", "p", "--json"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["kind"] == "performance"
    cmd[cmd.index("p")] = "missing_col"
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2, done.stderr
    assert "missing_col" in done.stderr
    assert done.stdout == ""
