"""Input checks shared by the performance, estimation and fairness monitors.

Messages name the argument and the fix and never quote row values (no identifiers leak).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from monitors.errors import MonitorInputError

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


def labels(y: npt.ArrayLike, *, name: str = "y") -> BoolArray:
    """Binary ground truth as a boolean array: accepts bool, or numbers that are all 0 or 1."""
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise MonitorInputError(f"{name} must be one-dimensional; got shape {arr.shape}.")
    if arr.dtype.kind == "b":
        return arr.astype(bool)
    if arr.dtype.kind not in "iuf":
        raise MonitorInputError(
            f"{name} must hold binary labels as bool or 0/1 numbers; got dtype {arr.dtype}. "
            "Map the label column to 0/1 first."
        )
    values = arr.astype(np.float64)
    if np.isnan(values).any():
        raise MonitorInputError(
            f"{name} has {int(np.isnan(values).sum())} missing labels; drop unlabelled rows "
            "before evaluating."
        )
    if not np.isin(values, (0.0, 1.0)).all():
        raise MonitorInputError(f"{name} must contain only 0 and 1; found other values.")
    out: BoolArray = values == 1.0
    return out


def scores(score: npt.ArrayLike, *, name: str = "score", unit_interval: bool = False) -> FloatArray:
    """Model scores as float64; refuses NaN/inf, and values outside [0, 1] when required."""
    arr = np.asarray(score)
    if arr.ndim != 1:
        raise MonitorInputError(f"{name} must be one-dimensional; got shape {arr.shape}.")
    if arr.dtype.kind not in "biuf":
        raise MonitorInputError(f"{name} must be numeric; got dtype {arr.dtype}.")
    values = arr.astype(np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        raise MonitorInputError(
            f"{name} has {int(bad.sum())} NaN or infinite values; drop or repair those rows."
        )
    if unit_interval and values.size and (values.min() < 0.0 or values.max() > 1.0):
        raise MonitorInputError(
            f"{name} must be probabilities in [0, 1] for calibration metrics; got values in "
            f"[{values.min():.4g}, {values.max():.4g}]. Pass the sigmoid output, not logits."
        )
    return values


def paired(
    y: npt.ArrayLike,
    score: npt.ArrayLike,
    *,
    score_name: str = "score",
    both_classes: bool = True,
    unit_interval: bool = False,
) -> tuple[BoolArray, FloatArray]:
    """Validate labels and scores together: equal length, non-empty, both classes present."""
    yy = labels(y)
    ss = scores(score, name=score_name, unit_interval=unit_interval)
    if yy.size != ss.size:
        raise MonitorInputError(
            f"y and {score_name} must have the same length; got {yy.size} and {ss.size}."
        )
    if yy.size == 0:
        raise MonitorInputError("No cases to evaluate: y is empty.")
    if both_classes:
        n_pos = int(yy.sum())
        if n_pos == 0 or n_pos == yy.size:
            only = "positive" if n_pos else "negative"
            raise MonitorInputError(
                f"y contains only {only} cases ({yy.size}); AUROC, sensitivity and specificity "
                "need both classes. Evaluate a longer window or wait for more labels."
            )
    return yy, ss


def alpha_level(alpha: float) -> float:
    """Check a significance level lies strictly between 0 and 1."""
    if not 0.0 < alpha < 1.0:
        raise MonitorInputError(f"alpha must lie strictly between 0 and 1; got {alpha}.")
    return float(alpha)


def threshold_value(threshold: float) -> float:
    """Check an operating threshold is a finite number."""
    t = float(threshold)
    if not np.isfinite(t):
        raise MonitorInputError(f"threshold must be a finite number; got {threshold}.")
    return t
