"""The drift report: corrected decisions, JSON output and input validation."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from monitors.drift.report import DriftConfig, run_drift
from monitors.errors import MonitorInputError
from monitors.stats import adjust_pvalues


def _frame(rng: np.random.Generator, n: int, *, age_shift: float = 0.0) -> dict[str, NDArray[Any]]:
    vendors = np.array(["GE", "Siemens", "Philips"], dtype=object)
    return {
        "age": rng.normal(60 + age_shift, 12, size=n),
        "kvp": rng.normal(120, 5, size=n),
        "manufacturer": vendors[rng.integers(0, 3, size=n)],
        "sex": np.array(["F", "M"], dtype=object)[rng.integers(0, 2, size=n)],
    }


def test_flags_the_shifted_column_and_corrects_all_p_values_together() -> None:
    rng = np.random.default_rng(5)
    ref, cur = _frame(rng, 800), _frame(rng, 800, age_shift=4.0)
    emb_ref, emb_cur = rng.normal(size=(300, 8)), rng.normal(size=(300, 8))
    report = run_drift(
        ref,
        cur,
        DriftConfig(correction="bonferroni", n_permutations=100),
        reference_embeddings=emb_ref,
        current_embeddings=emb_cur,
    )
    assert report.drift
    assert report.drifted_columns == ["age"]
    tests = {r.column: r.test for r in report.columns}
    assert tests == {"age": "ks", "kvp": "ks", "manufacturer": "chi2", "sex": "chi2"}
    raw = [r.details["p_value_raw"] for r in report.columns] + [
        r.details["p_value_raw"] for r in report.multivariate
    ]
    adjusted = [float(r.p_value or 0.0) for r in report.columns] + [
        r.p_value for r in report.multivariate
    ]
    np.testing.assert_allclose(adjusted, adjust_pvalues(raw, "bonferroni"))
    assert report.multivariate[0].test == "mmd"
    assert not report.multivariate[0].drift
    out = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert out["columns"]["age"]["drift"] is True
    assert out["n_drifted_columns"] == 1
    assert out["multivariate"]["mmd"]["p_value"] is not None


def test_no_shift_gives_no_overall_drift() -> None:
    rng = np.random.default_rng(1)
    report = run_drift(_frame(rng, 500), _frame(rng, 500), DriftConfig())
    assert not report.drift
    assert report.drifted_columns == []


def test_declared_columns_and_other_tests() -> None:
    rng = np.random.default_rng(2)
    ref, cur = _frame(rng, 400), _frame(rng, 400)
    config = DriftConfig(
        numeric_columns=("age",),
        categorical_columns=("sex",),
        numeric_test="wasserstein",
        categorical_test="jensen_shannon",
        n_permutations=50,
    )
    report = run_drift(ref, cur, config, reference_scores=ref["kvp"], current_scores=cur["kvp"])
    assert [(r.column, r.test) for r in report.columns] == [
        ("age", "wasserstein"),
        ("sex", "jensen_shannon"),
    ]
    assert [r.test for r in report.multivariate] == ["bbsd"]


def test_config_round_trip_and_validation() -> None:
    config = DriftConfig(alpha=0.01, categorical_columns=("sex",), numeric_columns=("age",))
    assert DriftConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(MonitorInputError, match="Unknown drift config keys"):
        DriftConfig.from_dict({"alpah": 0.1})
    with pytest.raises(MonitorInputError, match="both numeric and categorical"):
        DriftConfig(numeric_columns=("a",), categorical_columns=("a",))
    with pytest.raises(MonitorInputError, match="alpha"):
        DriftConfig(alpha=0.0)
    with pytest.raises(MonitorInputError, match="numeric_test"):
        DriftConfig(numeric_test="t-test")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("kvp"), "missing from the current"),
        (lambda d: d.__setitem__("kvp", np.full(300, np.nan)), "only missing values"),
        (lambda d: d.__setitem__("kvp", d["kvp"].astype(str).astype(object)), "types match"),
        (lambda d: d.__setitem__("kvp", np.r_[d["kvp"][:10], np.full(290, np.nan)]), "at least 20"),
    ],
)
def test_input_errors(mutate, message: str) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(3)
    ref, cur = _frame(rng, 300), _frame(rng, 300)
    mutate(cur)
    with pytest.raises(MonitorInputError, match=message) as info:
        run_drift(ref, cur, DriftConfig())
    assert "kvp" in str(info.value)


def test_constant_column_and_one_sided_embeddings_raise() -> None:
    rng = np.random.default_rng(4)
    ref, cur = _frame(rng, 100), _frame(rng, 100)
    ref["flag"], cur["flag"] = np.ones(100), np.ones(100)
    with pytest.raises(MonitorInputError, match="'flag' is constant"):
        run_drift(ref, cur, DriftConfig())
    with pytest.raises(MonitorInputError, match="both reference and current"):
        run_drift(ref, cur, DriftConfig(), reference_embeddings=np.zeros((100, 3)))
    with pytest.raises(MonitorInputError, match=r"embeddings \(current\) has 10 rows"):
        run_drift(
            ref,
            cur,
            DriftConfig(),
            reference_embeddings=np.zeros((100, 3)),
            current_embeddings=np.zeros((10, 3)),
        )
    with pytest.raises(MonitorInputError, match="declared numeric"):
        run_drift(ref, cur, DriftConfig(numeric_columns=("sex",)))
