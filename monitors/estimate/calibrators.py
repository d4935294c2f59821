"""Score calibrators fitted on the labelled reference: map a raw score to P(y = 1 | score).

Label-free estimation is only as good as these probabilities, so both calibrators are monotone
(a calibrator must not reorder cases, or the estimated AUROC would describe a different model)
and both are fitted on the reference window, where labels exist.

- ``isotonic`` (default): pool-adjacent-violators regression of the labels on the scores
  (``scipy.optimize.isotonic_regression``, weighted by the count of each distinct score), then
  linear interpolation between the centres of the pooled blocks and constant extrapolation
  beyond them. Non-parametric, so it fixes any monotone miscalibration, and it is
  NannyML's default for CBPE.
- ``histogram``: equal-mass bins on the reference scores (``n_bins``, default
  ``max(1, min(50, n // 100))`` so every bin holds about 100 cases or more); a score gets its
  bin's observed positive rate. Coarser but simpler to audit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypeAlias

import numpy as np
import numpy.typing as npt
from scipy.optimize import isotonic_regression

from monitors.errors import MonitorInputError

FloatArray = npt.NDArray[np.float64]
CalibrationMethod: TypeAlias = Literal["isotonic", "histogram"]


@dataclass(frozen=True, slots=True)
class Calibrator:
    """A fitted monotone map from score to probability: ``knots_x`` ascending, ``knots_y`` in
    [0, 1] and non-decreasing. ``method`` says how the map is read between knots."""

    method: CalibrationMethod
    knots_x: FloatArray
    knots_y: FloatArray

    def __call__(self, score: FloatArray) -> FloatArray:
        if self.method == "isotonic":
            return np.interp(score, self.knots_x, self.knots_y)
        # histogram: knots_x are the upper edges of bins 0..b-2; the last bin is open.
        idx = np.searchsorted(self.knots_x, score, side="right")
        return self.knots_y[idx]


def fit_isotonic(score: FloatArray, y: FloatArray) -> Calibrator:
    """Centred isotonic calibrator (Oron & Flournoy 2017); ``y`` is 0/1 as float.

    PAV gives a step function; its knots are placed at the count-weighted mean score of each
    pooled block and joined linearly. Interpolating between block centres instead of
    holding steps removes most of the step function's bias at block edges, which otherwise
    leaks into the expected AUROC.
    """
    xs, inverse, counts = np.unique(score, return_inverse=True, return_counts=True)
    weights = counts.astype(np.float64)
    sums = np.bincount(inverse, weights=y, minlength=xs.size)
    fit = isotonic_regression(sums / counts, weights=weights)
    starts = fit.blocks[:-1]
    block_w = np.add.reduceat(weights, starts)
    centres = np.add.reduceat(xs * weights, starts) / block_w
    return Calibrator("isotonic", centres, np.clip(fit.x[starts], 0.0, 1.0))


def fit_histogram(score: FloatArray, y: FloatArray, n_bins: int | None = None) -> Calibrator:
    """Equal-mass histogram calibrator, made monotone by PAV over the bin rates."""
    n = score.size
    b = n_bins if n_bins is not None else max(1, min(50, n // 100))
    if not 1 <= b <= n:
        raise MonitorInputError(f"n_bins must lie between 1 and {n}; got {b}.")
    order = np.argsort(score, kind="mergesort")
    ss, yy = score[order], y[order]
    edges = (np.arange(b + 1) * n) // b
    rates = np.add.reduceat(yy, edges[:-1]) / np.diff(edges)
    rates = isotonic_regression(rates, weights=np.diff(edges).astype(np.float64)).x
    upper = ss[edges[1:-1] - 1]
    return Calibrator("histogram", upper.astype(np.float64), np.clip(rates, 0.0, 1.0))


def fit_calibrator(
    score: FloatArray, y: FloatArray, method: CalibrationMethod, n_bins: int | None = None
) -> Calibrator:
    """Fit the named calibrator (see the module docstring for how each works)."""
    if method == "isotonic":
        return fit_isotonic(score, y)
    if method == "histogram":
        return fit_histogram(score, y, n_bins)
    raise MonitorInputError(f"calibration must be 'isotonic' or 'histogram'; got {method!r}.")
