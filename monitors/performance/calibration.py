"""Calibration: expected calibration error on adaptive equal-mass bins, and the Brier score.

Binning rule for ``n_bins="auto"`` (the "monotone sweep" of Roelofs et al., 2022, "Mitigating
bias in calibration error estimation", AISTATS): sort cases by score, split them into b
equal-mass bins (sizes differ by at most one; tied scores may straddle a boundary, split in the
stable sort order), and use the largest b for which the observed positive rate still rises
monotonically from bin to bin, scanning b = 1, 2, ... and stopping at the first violation. A
true calibration curve of a useful model is monotone, so more bins than that only add noise,
which biases ECE upwards; fewer bins hide miscalibration. b is capped at ``min(n // 10, 100)``
(at least 10 cases per bin) and is at least 1.

ECE is the case-weighted mean of |observed rate - mean score| over bins, in probability units.
Brier is the mean squared error of the score against the 0/1 label with a normal-theory
interval (the mean of n independent squared errors).
"""

from __future__ import annotations

import itertools
import math
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy import stats

from monitors.errors import MonitorInputError
from monitors.performance import _validate as v
from monitors.performance.threshold import wilson_interval
from monitors.performance.types import CalibrationBin, CalibrationResult, MetricCI

MAX_AUTO_BINS = 100
MIN_PER_BIN = 10


def _edges(n: int, b: int) -> npt.NDArray[np.int64]:
    """Start offsets of b equal-mass bins over n sorted cases, plus n."""
    return (np.arange(b + 1, dtype=np.int64) * n) // b


def sweep_bins(y_sorted: v.FloatArray) -> int:
    """Largest equal-mass bin count whose bin rates are monotone (see the module docstring)."""
    n = y_sorted.size
    cap = max(1, min(n // MIN_PER_BIN, MAX_AUTO_BINS))
    csum = np.r_[0.0, np.cumsum(y_sorted)]
    best = 1
    for b in range(2, cap + 1):
        e = _edges(n, b)
        rates = (csum[e[1:]] - csum[e[:-1]]) / np.diff(e)
        if np.any(np.diff(rates) < 0.0):
            break
        best = b
    return best


def ece_from_sorted(y_sorted: v.FloatArray, p_sorted: v.FloatArray, b: int) -> float:
    """ECE of cases already sorted by score, with b equal-mass bins."""
    n = y_sorted.size
    e = _edges(n, b)
    gap = np.add.reduceat(y_sorted - p_sorted, e[:-1])
    return float(np.abs(gap).sum() / n)


def calibration(
    y: npt.ArrayLike,
    score: npt.ArrayLike,
    *,
    n_bins: int | Literal["auto"] = "auto",
    alpha: float = 0.05,
) -> CalibrationResult:
    """ECE (equal-mass bins, adaptive count by default), Brier with a CI, and the bin table.

    ``score`` must be probabilities in [0, 1]. Each bin's observed rate carries a Wilson
    interval so a reliability plot can show which bins are noise.
    """
    a = v.alpha_level(alpha)
    yy, ss = v.paired(y, score, unit_interval=True)
    order = np.argsort(ss, kind="mergesort")
    p_sorted = ss[order]
    y_sorted = yy[order].astype(np.float64)
    n = y_sorted.size
    if n_bins == "auto":
        b, rule = sweep_bins(y_sorted), "monotone-sweep"
    else:
        if isinstance(n_bins, bool) or not isinstance(n_bins, int) or not 1 <= n_bins <= n:
            raise MonitorInputError(
                f"n_bins must be 'auto' or an integer between 1 and the number of cases ({n}); "
                f"got {n_bins!r}."
            )
        b, rule = n_bins, "fixed"
    e = _edges(n, b)
    bins: list[CalibrationBin] = []
    for lo, hi in itertools.pairwise(e.tolist()):
        k = int(hi - lo)
        pos = int(y_sorted[lo:hi].sum())
        w_lo, w_hi = wilson_interval(pos, k, a)
        bins.append(
            CalibrationBin(
                lower=float(p_sorted[lo]),
                upper=float(p_sorted[hi - 1]),
                n=k,
                mean_score=float(p_sorted[lo:hi].mean()),
                observed_rate=pos / k,
                observed_lower=w_lo,
                observed_upper=w_hi,
            )
        )
    sq = (ss - yy.astype(np.float64)) ** 2
    brier = float(sq.mean())
    half = float(stats.norm.ppf(1.0 - a / 2.0)) * (
        math.sqrt(float(sq.var(ddof=1)) / n) if n > 1 else 0.0
    )
    return CalibrationResult(
        ece=ece_from_sorted(y_sorted, p_sorted, b),
        brier=MetricCI(
            value=brier,
            lower=max(0.0, brier - half),
            upper=min(1.0, brier + half),
            n=int(n),
            method="normal",
        ),
        n_bins=b,
        binning=rule,
        bins=tuple(bins),
        n=int(n),
    )
