"""Label-free estimation: exact formulas on small cases, closeness to truth on calibrated data."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from monitors.errors import MonitorInputError
from monitors.estimate import estimate_performance, expected_auroc, fit_calibrator


def _population(rng: np.random.Generator, n: int, shift: float) -> tuple[np.ndarray, np.ndarray]:
    """Covariate shift: the feature's mean moves, P(y | x) stays; scores are a monotone but
    miscalibrated transform of the true probability, so the calibrator has work to do."""
    x = rng.normal(shift, 1.0, n)
    y = rng.random(n) < 1 / (1 + np.exp(-(2 * x - 1.5)))
    s = 1 / (1 + np.exp(-(1.3 * (2 * x - 1.5) + 0.3)))
    return s, y


def test_expected_auroc_is_the_mean_over_all_labelings() -> None:
    s = np.array([0.1, 0.4, 0.4, 0.8, 0.9])
    q = np.array([0.2, 0.5, 0.3, 0.7, 0.9])
    num = den = 0.0
    for ys in itertools.product([0, 1], repeat=s.size):
        y = np.array(ys)
        w = np.prod(np.where(y == 1, q, 1 - q))
        m = y.sum()
        if 0 < m < y.size:
            pairs = m * (y.size - m)
            num += w * roc_auc_score(y, s) * pairs
            den += w * pairs
    assert expected_auroc(s, q) == pytest.approx(num / den, abs=1e-12)


@pytest.mark.parametrize("method", ["isotonic", "histogram"])
def test_calibrators_are_monotone_probabilities(method: str) -> None:
    rng = np.random.default_rng(0)
    s, y = _population(rng, 3000, 0.0)
    cal = fit_calibrator(s, y.astype(float), method)  # type: ignore[arg-type]
    grid = np.linspace(-0.5, 1.5, 500)
    q = cal(grid)
    assert np.all(np.diff(q) >= 0)
    assert q.min() >= 0.0
    assert q.max() <= 1.0


@pytest.mark.parametrize("shift", [-0.5, 0.0, 0.7])
def test_estimate_close_to_truth_under_covariate_shift(shift: float) -> None:
    rng = np.random.default_rng(7)
    s_ref, y_ref = _population(rng, 20_000, 0.0)
    s_cur, y_cur = _population(rng, 5_000, shift)
    rep = estimate_performance(s_ref, y_ref, s_cur, threshold=0.5, n_draws=100, seed=1)
    pred = s_cur >= 0.5
    truth = {
        "auroc": roc_auc_score(y_cur, s_cur),
        "sensitivity": (pred & y_cur).sum() / y_cur.sum(),
        "specificity": (~pred & ~y_cur).sum() / (~y_cur).sum(),
    }
    for name, tol in (("auroc", 0.02), ("sensitivity", 0.03), ("specificity", 0.03)):
        metric = getattr(rep, name)
        assert metric.value == pytest.approx(truth[name], abs=tol), name
        assert metric.lower < metric.value < metric.upper
    assert rep.prevalence.value == pytest.approx(y_cur.mean(), abs=0.02)
    assert rep.out_of_range_fraction < 0.01


def test_estimate_detects_a_decay_in_sensitivity_without_labels() -> None:
    rng = np.random.default_rng(3)
    s_ref, y_ref = _population(rng, 10_000, 0.0)
    s_cur, _ = _population(rng, 5_000, -1.0)
    rep = estimate_performance(s_ref, y_ref, s_cur, threshold=0.5, n_draws=100)
    assert rep.sensitivity.upper < rep.reference["sensitivity"]


def test_reference_with_one_class_is_refused() -> None:
    with pytest.raises(MonitorInputError, match="only negative"):
        estimate_performance([0.1, 0.2], [0, 0], [0.3, 0.4], threshold=0.5)


def test_report_is_json_ready() -> None:
    import json

    rng = np.random.default_rng(4)
    s_ref, y_ref = _population(rng, 2_000, 0.0)
    s_cur, _ = _population(rng, 500, 0.3)
    d = estimate_performance(s_ref, y_ref, s_cur, 0.5, n_draws=20).to_dict()
    back = json.loads(json.dumps(d, allow_nan=False))
    assert set(back["metrics"]) == {"auroc", "sensitivity", "specificity", "prevalence"}
    assert back["calibration"] == "isotonic"
