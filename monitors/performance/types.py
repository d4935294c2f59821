"""Typed, JSON-ready results of the performance monitors.

Every metric travels with its interval, its denominator ``n`` and the name of the interval
method, so a reader can tell a Wilson interval on 12 cases from a DeLong interval on 12,000.
``None`` means "not defined for these data" (a PPV with no predicted positives), never zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from monitors._json import json_safe


@dataclass(frozen=True, slots=True)
class MetricCI:
    """A point estimate with a two-sided confidence interval.

    ``n`` is the denominator the estimate rests on (positives for sensitivity, predicted
    positives for PPV, all cases for AUROC and Brier). ``lower``/``upper`` are ``None`` where no
    interval is computed or the metric is undefined.
    """

    value: float | None
    lower: float | None
    upper: float | None
    n: int
    method: str

    def to_dict(self) -> dict[str, Any]:
        return dict(
            json_safe(
                {
                    "value": self.value,
                    "lower": self.lower,
                    "upper": self.upper,
                    "n": self.n,
                    "method": self.method,
                }
            )
        )


@dataclass(frozen=True, slots=True)
class CalibrationBin:
    """One equal-mass bin of the reliability diagram (scores and rates are probabilities)."""

    lower: float
    upper: float
    n: int
    mean_score: float
    observed_rate: float
    observed_lower: float
    observed_upper: float

    def to_dict(self) -> dict[str, Any]:
        return dict(
            json_safe(
                {
                    "lower": self.lower,
                    "upper": self.upper,
                    "n": self.n,
                    "mean_score": self.mean_score,
                    "observed_rate": self.observed_rate,
                    "observed_lower": self.observed_lower,
                    "observed_upper": self.observed_upper,
                }
            )
        )


@dataclass(frozen=True, slots=True)
class CalibrationResult:
    """Expected calibration error, Brier score and the bin table behind the ECE.

    ``binning`` names the rule that chose ``n_bins`` (``"monotone-sweep"`` for ``"auto"``,
    ``"fixed"`` when the caller set the count). ``ece`` is in probability units (0 = perfect).
    """

    ece: float
    brier: MetricCI
    n_bins: int
    binning: str
    bins: tuple[CalibrationBin, ...]
    n: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "ece": json_safe(self.ece),
            "brier": self.brier.to_dict(),
            "n_bins": self.n_bins,
            "binning": self.binning,
            "n": self.n,
            "bins": [b.to_dict() for b in self.bins],
        }


@dataclass(frozen=True, slots=True)
class DelongComparison:
    """Paired DeLong test of two scores on the same cases: ``difference = auc_a - auc_b``.

    ``p_value`` is two-sided for H0: equal AUROC; ``lower``/``upper`` bound the difference.
    """

    auc_a: float
    auc_b: float
    difference: float
    se: float
    z: float
    p_value: float
    lower: float
    upper: float
    n_pos: int
    n_neg: int

    def to_dict(self) -> dict[str, Any]:
        return dict(
            json_safe(
                {
                    "auc_a": self.auc_a,
                    "auc_b": self.auc_b,
                    "difference": self.difference,
                    "se": self.se,
                    "z": self.z,
                    "p_value": self.p_value,
                    "lower": self.lower,
                    "upper": self.upper,
                    "n_pos": self.n_pos,
                    "n_neg": self.n_neg,
                }
            )
        )


@dataclass(frozen=True, slots=True)
class NonInferiorityResult:
    """One-sided test of H0: ``auc_candidate - auc_baseline <= -margin``.

    ``non_inferior`` is True when H0 is rejected at ``alpha``, which is the same event as the
    one-sided ``1 - alpha`` lower bound of the difference (``lower``) lying above ``-margin``.
    """

    auc_candidate: float
    auc_baseline: float
    difference: float
    lower: float
    margin: float
    se: float
    z: float
    p_value: float
    alpha: float
    non_inferior: bool
    n_pos: int
    n_neg: int

    def to_dict(self) -> dict[str, Any]:
        return dict(
            json_safe(
                {
                    "auc_candidate": self.auc_candidate,
                    "auc_baseline": self.auc_baseline,
                    "difference": self.difference,
                    "lower": self.lower,
                    "margin": self.margin,
                    "se": self.se,
                    "z": self.z,
                    "p_value": self.p_value,
                    "alpha": self.alpha,
                    "non_inferior": self.non_inferior,
                    "n_pos": self.n_pos,
                    "n_neg": self.n_neg,
                }
            )
        )


@dataclass(frozen=True, slots=True)
class PerformanceReport:
    """Everything :func:`monitors.performance.evaluate_performance` measures on one window.

    Threshold metrics use the rule ``score >= threshold`` -> predicted positive.
    """

    n: int
    n_pos: int
    n_neg: int
    prevalence: float
    threshold: float
    alpha: float
    auroc: MetricCI
    sensitivity: MetricCI
    specificity: MetricCI
    ppv: MetricCI
    npv: MetricCI
    calibration: CalibrationResult

    def metrics(self) -> dict[str, MetricCI]:
        """The headline metrics by name (the same keys as in :meth:`to_dict`)."""
        return {
            "auroc": self.auroc,
            "sensitivity": self.sensitivity,
            "specificity": self.specificity,
            "ppv": self.ppv,
            "npv": self.npv,
            "brier": self.calibration.brier,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "n_pos": self.n_pos,
            "n_neg": self.n_neg,
            "prevalence": json_safe(self.prevalence),
            "threshold": json_safe(self.threshold),
            "alpha": self.alpha,
            "metrics": {k: v.to_dict() for k, v in self.metrics().items()},
            "calibration": self.calibration.to_dict(),
        }
