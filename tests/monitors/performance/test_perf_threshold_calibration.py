"""Wilson intervals, threshold metrics, ECE/Brier and the full performance report."""

from __future__ import annotations

import numpy as np
import pytest
from statsmodels.stats.proportion import proportion_confint

from monitors.errors import MonitorInputError
from monitors.performance import (
    calibration,
    confusion_metrics,
    evaluate_performance,
    wilson_interval,
)


@pytest.mark.parametrize(("x", "n"), [(0, 10), (1, 10), (9, 10), (10, 10), (37, 83), (990, 1000)])
@pytest.mark.parametrize("alpha", [0.05, 0.1])
def test_wilson_matches_statsmodels(x: int, n: int, alpha: float) -> None:
    lo, hi = proportion_confint(x, n, alpha=alpha, method="wilson")
    ours = wilson_interval(x, n, alpha)
    assert ours[0] == pytest.approx(lo, abs=1e-12)
    assert ours[1] == pytest.approx(hi, abs=1e-12)


def test_confusion_metrics_counts_and_denominators() -> None:
    y = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    s = np.array([0.9, 0.8, 0.5, 0.2, 0.5, 0.1, 0.1, 0.3, 0.2, 0.7])
    m = confusion_metrics(y, s, threshold=0.5)
    # score >= 0.5 is positive: TP=3, FN=1, FP=2, TN=4.
    assert (m["sensitivity"].value, m["sensitivity"].n) == (0.75, 4)
    assert (m["specificity"].value, m["specificity"].n) == (4 / 6, 6)
    assert (m["ppv"].value, m["ppv"].n) == (3 / 5, 5)
    assert (m["npv"].value, m["npv"].n) == (4 / 5, 5)
    assert m["sensitivity"].lower == pytest.approx(
        proportion_confint(3, 4, method="wilson")[0], abs=1e-12
    )


def test_undefined_ppv_is_none_not_zero() -> None:
    m = confusion_metrics([0, 1, 0, 1], [0.1, 0.2, 0.3, 0.4], threshold=0.9)
    assert m["ppv"].value is None
    assert m["ppv"].n == 0
    assert m["sensitivity"].value == 0.0


def test_calibrated_scores_have_small_ece_and_miscalibrated_large() -> None:
    rng = np.random.default_rng(0)
    p = rng.beta(2, 5, size=20_000)
    y = rng.random(p.size) < p
    good = calibration(y, p)
    bad = calibration(y, np.clip(p * 1.6, 0, 1))
    assert good.binning == "monotone-sweep"
    assert 2 <= good.n_bins <= 100
    assert good.ece < 0.015
    assert bad.ece > 0.1
    assert good.brier.value == pytest.approx(np.mean((p - y) ** 2), abs=1e-12)
    assert sum(b.n for b in good.bins) == p.size
    assert [b.mean_score for b in good.bins] == sorted(b.mean_score for b in good.bins)


def test_fixed_bins_ece_by_hand() -> None:
    y = np.array([0, 0, 1, 1, 1, 0])
    s = np.array([0.1, 0.2, 0.3, 0.6, 0.7, 0.8])
    res = calibration(y, s, n_bins=2)
    # Bins {0.1, 0.2, 0.3} (rate 1/3, mean 0.2) and {0.6, 0.7, 0.8} (rate 2/3, mean 0.7).
    expected = 0.5 * abs(1 / 3 - 0.2) + 0.5 * abs(2 / 3 - 0.7)
    assert res.ece == pytest.approx(expected, abs=1e-12)
    assert res.binning == "fixed"


def test_calibration_refuses_logits() -> None:
    with pytest.raises(MonitorInputError, match="sigmoid"):
        calibration([0, 1, 0], [-2.0, 1.5, 0.2])


def test_evaluate_performance_is_json_ready() -> None:
    import json

    rng = np.random.default_rng(1)
    y = rng.random(1000) < 0.2
    s = 1 / (1 + np.exp(-(rng.normal(size=1000) + 2 * y - 1.5)))
    rep = evaluate_performance(y, s, threshold=0.5)
    d = json.loads(json.dumps(rep.to_dict(), allow_nan=False))
    assert set(d["metrics"]) == {"auroc", "sensitivity", "specificity", "ppv", "npv", "brier"}
    assert d["n"] == 1000
    assert d["n_pos"] == int(y.sum())
    auc = d["metrics"]["auroc"]
    assert auc["lower"] < auc["value"] < auc["upper"]
