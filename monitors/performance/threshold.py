"""Metrics at the operating threshold with Wilson score intervals.

Wilson (1927) rather than Wald: at the sensitivities a radiology model runs at (0.9-0.99) and the
few hundred positives a monitoring window holds, the Wald interval undercovers badly and can
exceed 1; Wilson stays inside [0, 1] and keeps close to nominal coverage (Brown, Cai & DasGupta
2001). The rule is ``score >= threshold`` -> predicted positive, matching how the gateway flags
studies.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from scipy import stats

from monitors.performance import _validate as v
from monitors.performance.types import MetricCI


def wilson_interval(successes: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Two-sided ``1 - alpha`` Wilson score interval for a binomial proportion (n > 0)."""
    if n <= 0:
        raise ValueError("wilson_interval needs n > 0")
    z = float(stats.norm.ppf(1.0 - alpha / 2.0))
    p = successes / n
    z2n = z * z / n
    centre = (p + z2n / 2.0) / (1.0 + z2n)
    half = z / (1.0 + z2n) * math.sqrt(p * (1.0 - p) / n + z2n / (4.0 * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def proportion(successes: int, n: int, alpha: float = 0.05) -> MetricCI:
    """A proportion with its Wilson interval; ``None`` values when the denominator is 0."""
    if n == 0:
        return MetricCI(value=None, lower=None, upper=None, n=0, method="wilson")
    lo, hi = wilson_interval(successes, n, alpha)
    return MetricCI(value=successes / n, lower=lo, upper=hi, n=int(n), method="wilson")


def confusion_counts(
    y: v.BoolArray, score: v.FloatArray, threshold: float
) -> tuple[int, int, int, int]:
    """(TP, FP, TN, FN) under ``score >= threshold``."""
    pred = score >= threshold
    tp = int(np.count_nonzero(pred & y))
    fp = int(np.count_nonzero(pred & ~y))
    fn = int(np.count_nonzero(~pred & y))
    tn = int(y.size - tp - fp - fn)
    return tp, fp, tn, fn


def confusion_metrics(
    y: npt.ArrayLike, score: npt.ArrayLike, threshold: float, alpha: float = 0.05
) -> dict[str, MetricCI]:
    """Sensitivity, specificity, PPV and NPV at ``threshold``, each with a Wilson interval.

    Each ``n`` is that metric's own denominator: positives, negatives, predicted positives and
    predicted negatives. PPV and NPV are for this window's prevalence; they do not transfer to a
    site with a different prevalence.
    """
    a = v.alpha_level(alpha)
    t = v.threshold_value(threshold)
    yy, ss = v.paired(y, score)
    tp, fp, tn, fn = confusion_counts(yy, ss, t)
    return {
        "sensitivity": proportion(tp, tp + fn, a),
        "specificity": proportion(tn, tn + fp, a),
        "ppv": proportion(tp, tp + fp, a),
        "npv": proportion(tn, tn + fn, a),
    }
