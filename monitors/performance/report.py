"""One call that evaluates a labelled window: discrimination, threshold metrics, calibration."""

from __future__ import annotations

from typing import Literal

import numpy as np
import numpy.typing as npt

from monitors.performance import _validate as v
from monitors.performance.auroc import auroc_delong
from monitors.performance.calibration import calibration
from monitors.performance.threshold import confusion_metrics
from monitors.performance.types import PerformanceReport


def evaluate_performance(
    y: npt.ArrayLike,
    score: npt.ArrayLike,
    threshold: float,
    *,
    alpha: float = 0.05,
    n_bins: int | Literal["auto"] = "auto",
) -> PerformanceReport:
    """AUROC (DeLong CI), sensitivity/specificity/PPV/NPV (Wilson CIs) at ``threshold``, ECE
    and Brier for a window with labels. ``score`` must be probabilities in [0, 1] because the
    calibration metrics compare it with observed rates. Raises
    :class:`~monitors.errors.MonitorInputError` for one-class windows, NaN scores or a length
    mismatch."""
    a = v.alpha_level(alpha)
    t = v.threshold_value(threshold)
    yy, ss = v.paired(y, score, unit_interval=True)
    conf = confusion_metrics(yy, ss, t, a)
    n_pos = int(np.count_nonzero(yy))
    return PerformanceReport(
        n=int(yy.size),
        n_pos=n_pos,
        n_neg=int(yy.size - n_pos),
        prevalence=n_pos / yy.size,
        threshold=t,
        alpha=a,
        auroc=auroc_delong(yy, ss, a),
        sensitivity=conf["sensitivity"],
        specificity=conf["specificity"],
        ppv=conf["ppv"],
        npv=conf["npv"],
        calibration=calibration(yy, ss, n_bins=n_bins, alpha=a),
    )
