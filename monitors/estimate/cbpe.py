"""Confidence-based performance estimation (CBPE): AUROC, sensitivity and specificity without
labels, for the weeks before ground truth arrives.

Assumption, stated plainly: P(y = 1 | score) is the same in the current window as in the
reference (covariate shift only). Then the calibrated score q_i is each current case's
probability of being positive, and the expected confusion matrix at threshold t (rule
``score >= t``) is E[TP] = sum of q over predicted positives, E[FN] = sum of q over predicted
negatives, and likewise with 1 - q for FP and TN. Sensitivity is estimated as
E[TP] / (E[TP] + E[FN]) (a ratio of expectations, as NannyML's CBPE does). The expected AUROC
is the ratio of expected correctly ordered positive-negative pairs to expected pairs,
sum_{i != j} q_i (1 - q_j) H(s_i - s_j) / sum_{i != j} q_i (1 - q_j), with H = 1, 1/2, 0 for
>, =, <. Concept shift (the same image now meaning something else, a new disease mix within a
score) breaks the assumption and cannot be seen without labels; that is what the labelled
performance monitor is for.

Uncertainty: a percentile band over ``n_draws`` Monte-Carlo draws. Each draw refits the
calibrator on a bootstrap resample of the reference (calibration uncertainty) and then samples
the current labels as independent Bernoulli(q_i) (the chance in which cases happen to be
positive). The band is therefore a prediction interval for the metric the labels will show
for this very window once they arrive, which is the quantity a reviewer wants to compare with.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from monitors._json import json_safe
from monitors.errors import MonitorInputError
from monitors.estimate.calibrators import CalibrationMethod, Calibrator, fit_calibrator
from monitors.performance import _validate as v
from monitors.performance.auroc import midranks
from monitors.performance.types import MetricCI

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class EstimateReport:
    """Label-free estimates for the current window, and the reference's realised values.

    ``out_of_range_fraction`` is the share of current scores outside the reference's score
    range, where the calibrator extrapolates as a constant; above a few percent the estimate
    rests on the assumption more than on data.
    """

    n_reference: int
    n_current: int
    threshold: float
    calibration: CalibrationMethod
    alpha: float
    n_draws: int
    auroc: MetricCI
    sensitivity: MetricCI
    specificity: MetricCI
    prevalence: MetricCI
    reference: dict[str, float]
    out_of_range_fraction: float

    def metrics(self) -> dict[str, MetricCI]:
        return {
            "auroc": self.auroc,
            "sensitivity": self.sensitivity,
            "specificity": self.specificity,
            "prevalence": self.prevalence,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_reference": self.n_reference,
            "n_current": self.n_current,
            "threshold": json_safe(self.threshold),
            "calibration": self.calibration,
            "alpha": self.alpha,
            "n_draws": self.n_draws,
            "metrics": {k: m.to_dict() for k, m in self.metrics().items()},
            "reference": json_safe(self.reference),
            "out_of_range_fraction": json_safe(self.out_of_range_fraction),
        }


def expected_auroc(score: FloatArray, q: FloatArray) -> float:
    """Expected AUROC of ``score`` when case i is positive with probability ``q[i]``."""
    xs, inverse = np.unique(score, return_inverse=True)
    pos = np.bincount(inverse, weights=q, minlength=xs.size)
    neg = np.bincount(inverse, weights=1.0 - q, minlength=xs.size)
    neg_below = np.cumsum(neg) - neg
    self_pairs = float(np.sum(q * (1.0 - q)))
    num = float(np.sum(pos * (neg_below + 0.5 * neg))) - 0.5 * self_pairs
    den = float(pos.sum() * neg.sum()) - self_pairs
    return num / den if den > 0.0 else float("nan")


def _expected_rates(pred: v.BoolArray, q: FloatArray) -> tuple[float, float]:
    tp, fn = float(q[pred].sum()), float(q[~pred].sum())
    fp, tn = float((1.0 - q[pred]).sum()), float((1.0 - q[~pred]).sum())
    sens = tp / (tp + fn) if tp + fn > 0 else float("nan")
    spec = tn / (tn + fp) if tn + fp > 0 else float("nan")
    return sens, spec


def _realised_draws(
    ranks: FloatArray, pred: v.BoolArray, q: FloatArray, rng: np.random.Generator
) -> tuple[float, float, float, float]:
    """AUROC, sensitivity, specificity and prevalence of one Bernoulli(q) label draw."""
    yb = rng.random(q.size) < q
    m = int(yb.sum())
    n = q.size - m
    if m == 0 or n == 0:
        return float("nan"), float("nan"), float("nan"), m / q.size
    auc = (float(ranks[yb].sum()) - m * (m + 1) / 2.0) / (m * n)
    sens = float(np.count_nonzero(pred & yb)) / m
    spec = float(np.count_nonzero(~pred & ~yb)) / n
    return auc, sens, spec, m / q.size


def _metric(value: float, draws: FloatArray, alpha: float, n: int, method: str) -> MetricCI:
    finite = draws[np.isfinite(draws)]
    if finite.size == 0 or not np.isfinite(value):
        return MetricCI(
            value=None if not np.isfinite(value) else value,
            lower=None,
            upper=None,
            n=n,
            method=method,
        )
    lo, hi = np.quantile(finite, [alpha / 2.0, 1.0 - alpha / 2.0])
    return MetricCI(value=value, lower=float(lo), upper=float(hi), n=n, method=method)


def estimate_performance(
    reference_scores: npt.ArrayLike,
    reference_labels: npt.ArrayLike,
    current_scores: npt.ArrayLike,
    threshold: float,
    *,
    calibration: CalibrationMethod = "isotonic",
    alpha: float = 0.05,
    n_draws: int = 200,
    seed: int = 0,
) -> EstimateReport:
    """Estimate AUROC, sensitivity and specificity on unlabelled current scores (see the module
    docstring for the method, its assumption and what the interval means).

    The reference needs both classes; 500+ reference cases with 50+ positives give a usable
    calibrator. ``n_draws`` Monte-Carlo draws set the interval (0 gives point estimates only).
    """
    a = v.alpha_level(alpha)
    t = v.threshold_value(threshold)
    if n_draws < 0:
        raise MonitorInputError(f"n_draws must be >= 0; got {n_draws}.")
    y_ref, s_ref = v.paired(reference_labels, reference_scores, score_name="reference_scores")
    s_cur = v.scores(current_scores, name="current_scores")
    if s_cur.size < 2:
        raise MonitorInputError("current_scores needs at least 2 cases to estimate AUROC.")
    y_ref_f = y_ref.astype(np.float64)
    cal: Calibrator = fit_calibrator(s_ref, y_ref_f, calibration)
    q = cal(s_cur)
    pred = s_cur >= t
    auc = expected_auroc(s_cur, q)
    sens, spec = _expected_rates(pred, q)
    prev = float(q.mean())

    draws = np.full((n_draws, 4), np.nan)
    rng = np.random.default_rng(seed)
    ranks = midranks(s_cur)
    n_ref = s_ref.size
    for b in range(n_draws):
        idx = rng.integers(0, n_ref, n_ref)
        yb = y_ref_f[idx]
        qb = fit_calibrator(s_ref[idx], yb, calibration)(s_cur) if 0.0 < yb.sum() < n_ref else q
        draws[b] = _realised_draws(ranks, pred, qb, rng)

    ref_pred = s_ref >= t
    n_pos_ref = int(y_ref.sum())
    ref_ranks = midranks(s_ref)
    reference = {
        "auroc": (float(ref_ranks[y_ref].sum()) - n_pos_ref * (n_pos_ref + 1) / 2.0)
        / (n_pos_ref * (n_ref - n_pos_ref)),
        "sensitivity": float(np.count_nonzero(ref_pred & y_ref)) / n_pos_ref,
        "specificity": float(np.count_nonzero(~ref_pred & ~y_ref)) / (n_ref - n_pos_ref),
        "prevalence": n_pos_ref / n_ref,
    }
    outside = (s_cur < s_ref.min()) | (s_cur > s_ref.max())
    method = f"cbpe-{calibration}"
    n_cur = int(s_cur.size)
    return EstimateReport(
        n_reference=int(n_ref),
        n_current=n_cur,
        threshold=t,
        calibration=calibration,
        alpha=a,
        n_draws=n_draws,
        auroc=_metric(auc, draws[:, 0], a, n_cur, method),
        sensitivity=_metric(sens, draws[:, 1], a, round(float(q.sum())), method),
        specificity=_metric(spec, draws[:, 2], a, round(float((1.0 - q).sum())), method),
        prevalence=_metric(prev, draws[:, 3], a, n_cur, method),
        reference=reference,
        out_of_range_fraction=float(outside.mean()),
    )
