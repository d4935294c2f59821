"""Point estimates and stratified bootstrap draws of one group's TPR, FPR, AUROC and ECE.

A bootstrap resample is represented by multiplicity weights (how often each case was drawn), so
B resamples are one B x n matrix and every metric is a few vectorised reductions over it: no
per-resample sort. Stratified means positives and negatives are resampled separately, so each
resample keeps the group's n_pos and n_neg; TPR, FPR and AUROC are then defined in every
resample, and the interval reflects sampling error at the observed prevalence.

ECE uses the equal-mass bins chosen on the group's own data (monotone sweep, see
:mod:`monitors.performance.calibration`) and keeps them fixed across resamples; re-choosing bins
per resample would add the binning rule's own jitter to the interval.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from monitors.performance.auroc import midranks
from monitors.performance.calibration import _edges, ece_from_sorted, sweep_bins

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

METRICS: tuple[str, ...] = ("tpr", "fpr", "auroc", "ece")

#: Largest B x n block held in memory at once (float64 cells, ~32 MB).
_BLOCK_CELLS = 4_000_000


@dataclass(frozen=True, slots=True)
class GroupData:
    """One group's cases sorted by score, split by class, with what the estimates need.

    ``pos_lo``/``pos_hi`` locate each positive's score among the sorted negatives (first index
    not below / first index above), so resampled AUROC is two gathers from the cumulative
    negative weights. ``*_bins`` are each class's [start, end) offsets of the fixed ECE bins.
    """

    y: BoolArray
    score: FloatArray
    pred: BoolArray
    pos_score: FloatArray
    neg_score: FloatArray
    pos_lo: npt.NDArray[np.intp]
    pos_hi: npt.NDArray[np.intp]
    pos_bins: npt.NDArray[np.intp]
    neg_bins: npt.NDArray[np.intp]
    n_bins: int

    @property
    def n(self) -> int:
        return int(self.y.size)

    @property
    def n_pos(self) -> int:
        return int(self.pos_score.size)


def prepare(y: BoolArray, score: FloatArray, threshold: float) -> GroupData:
    order = np.argsort(score, kind="mergesort")
    ys, ss = y[order], score[order]
    b = sweep_bins(ys.astype(np.float64)) if ys.size else 1
    edges = _edges(ys.size, b)
    # Number of positives (negatives) before each pooled bin edge = class-wise bin offsets.
    pos_before = np.r_[0, np.cumsum(ys)]
    neg_before = np.r_[0, np.cumsum(~ys)]
    pos_score, neg_score = ss[ys], ss[~ys]
    return GroupData(
        y=ys,
        score=ss,
        pred=ss >= threshold,
        pos_score=pos_score,
        neg_score=neg_score,
        pos_lo=np.searchsorted(neg_score, pos_score, side="left"),
        pos_hi=np.searchsorted(neg_score, pos_score, side="right"),
        pos_bins=pos_before[edges].astype(np.intp),
        neg_bins=neg_before[edges].astype(np.intp),
        n_bins=b,
    )


def point(g: GroupData) -> dict[str, float]:
    """Unweighted estimates; NaN where a metric is undefined (no positives or no negatives)."""
    n, n_pos = g.n, g.n_pos
    n_neg = n - n_pos
    out = {k: float("nan") for k in METRICS}
    if n_pos:
        out["tpr"] = float(np.count_nonzero(g.pred & g.y)) / n_pos
    if n_neg:
        out["fpr"] = float(np.count_nonzero(g.pred & ~g.y)) / n_neg
    if n_pos and n_neg:
        r = midranks(g.score)
        out["auroc"] = (float(r[g.y].sum()) - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)
    if n:
        out["ece"] = ece_from_sorted(g.y.astype(np.float64), g.score, g.n_bins)
    return out


def _counts(rng: np.random.Generator, rows: int, size: int) -> FloatArray:
    """Multiplicities (rows x size) of ``rows`` resamples of ``size`` items with replacement."""
    idx = rng.integers(0, size, (rows, size)) + (np.arange(rows)[:, None] * size)
    return np.bincount(idx.ravel(), minlength=rows * size).reshape(rows, size).astype(np.float64)


def _cum(x: FloatArray) -> FloatArray:
    out = np.zeros((x.shape[0], x.shape[1] + 1))
    np.cumsum(x, axis=1, out=out[:, 1:])
    return out


def draws(g: GroupData, n_bootstrap: int, rng: np.random.Generator) -> dict[str, FloatArray]:
    """``n_bootstrap`` stratified resample values of each metric (NaN where undefined).

    TPR and FPR are drawn as Binomial(n_pos, TPR) / n_pos and Binomial(n_neg, FPR) / n_neg,
    which is exactly their distribution under class-stratified resampling, at O(1) per draw.
    """
    n, n_pos = g.n, g.n_pos
    n_neg = n - n_pos
    est = point(g)
    out = {k: np.full(n_bootstrap, np.nan) for k in METRICS}
    if n_pos:
        out["tpr"] = rng.binomial(n_pos, est["tpr"], n_bootstrap) / n_pos
    if n_neg:
        out["fpr"] = rng.binomial(n_neg, est["fpr"], n_bootstrap) / n_neg
    if n == 0:
        return out
    pos_resid = 1.0 - g.pos_score
    step = max(1, _BLOCK_CELLS // max(n, 1))
    for start in range(0, n_bootstrap, step):
        rows = min(step, n_bootstrap - start)
        sl = slice(start, start + rows)
        wp = _counts(rng, rows, n_pos) if n_pos else np.zeros((rows, 0))
        wn = _counts(rng, rows, n_neg) if n_neg else np.zeros((rows, 0))
        if n_pos and n_neg:
            cn = _cum(wn)
            twice = (wp * (cn[:, g.pos_lo] + cn[:, g.pos_hi])).sum(axis=1)
            out["auroc"][sl] = twice / (2.0 * n_pos * n_neg)
        rp = _cum(wp * pos_resid)
        rn = _cum(wn * g.neg_score)
        gaps = (rp[:, g.pos_bins[1:]] - rp[:, g.pos_bins[:-1]]) - (
            rn[:, g.neg_bins[1:]] - rn[:, g.neg_bins[:-1]]
        )
        out["ece"][sl] = np.abs(gaps).sum(axis=1) / n
    return out
