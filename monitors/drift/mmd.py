"""Multivariate drift on embeddings and output scores.

* :func:`mmd_test`: kernel two-sample test (Gretton et al. 2012), RBF kernel, unbiased MMD^2,
  permutation test on the pooled sample.
* :func:`classifier_test`: a domain classifier's held-out AUROC, with the Mann-Whitney p-value.
* :func:`bbsd_test`: black-box shift detection (Lipton et al. 2018, Rabanser et al. 2019), KS on
  each model output with a Bonferroni correction.

Why the MMD is computed exactly rather than with a linear-time or random-feature estimator: those
lose most of the power at the sample sizes a monitoring window has (hundreds to a few thousand),
and the exact statistic is affordable. The pooled N x N kernel matrix is never held in memory: it
is built in square float32 blocks (upper triangle only, it is symmetric) and each block is
multiplied by the label matrix of all permutations, so every permutation's statistic comes out of
one pass. Cost O(N^2 (d + P) / 2) flops, memory O(block^2 + N P). At 768 dims, 5,000 vs 5,000
and 500 permutations that is about 1 s on two cores and under 100 MB of workspace. Samples larger
than ``max_n`` per side are randomly subsampled (recorded in ``details``) so the cost stays
bounded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from scipy import stats

from monitors._json import json_safe
from monitors.drift._inputs import MIN_SAMPLES, FloatArray, data_seed
from monitors.drift.univariate import permutation_p_value
from monitors.errors import MonitorInputError

#: Points used to estimate the median pairwise distance (the bandwidth); 1,000 points give
#: about 500,000 distances, enough to pin the median to well under 1%.
_BANDWIDTH_SAMPLE = 1000

#: Side of one square float32 kernel block (2,500^2 x 4 bytes = 25 MB, plus as much for the
#: distance workspace).
_BLOCK_SIDE = 2500


@dataclass(frozen=True, slots=True)
class MultivariateResult:
    """A multivariate two-sample test; ``drift`` is ``p_value < alpha``."""

    test: str
    statistic: float
    p_value: float
    drift: bool
    n_reference: int
    n_current: int
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "test": self.test,
            "statistic": json_safe(self.statistic),
            "p_value": json_safe(self.p_value),
            "drift": bool(self.drift),
            "n_reference": self.n_reference,
            "n_current": self.n_current,
            "details": json_safe(self.details),
        }


def as_matrix(
    values: npt.ArrayLike, *, name: str, side: str, min_rows: int = MIN_SAMPLES
) -> FloatArray:
    """A finite 2-D float array (rows = samples). A 1-D array is one feature per sample."""
    arr = np.asarray(values)
    if arr.dtype.kind not in "biuf":
        raise MonitorInputError(f"{name} ({side}) must be numeric; got dtype {arr.dtype}.")
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise MonitorInputError(f"{name} ({side}) must be 2-D [n, dims]; got shape {arr.shape}.")
    out = arr.astype(np.float64, copy=False)
    if not np.isfinite(out).all():
        raise MonitorInputError(
            f"{name} ({side}) contains NaN or infinite values; embeddings and scores must be "
            "finite (check the producer)."
        )
    if out.shape[0] < min_rows:
        raise MonitorInputError(
            f"{name} ({side}) has {out.shape[0]} rows; at least {min_rows} are needed."
        )
    return out


def _pair(
    reference: npt.ArrayLike, current: npt.ArrayLike, name: str
) -> tuple[FloatArray, FloatArray]:
    ref = as_matrix(reference, name=name, side="reference")
    cur = as_matrix(current, name=name, side="current")
    if ref.shape[1] != cur.shape[1]:
        raise MonitorInputError(
            f"{name}: reference has {ref.shape[1]} dims and current {cur.shape[1]}; they must "
            "come from the same model version."
        )
    return ref, cur


def _check_alpha(alpha: float) -> None:
    if not 0.0 < alpha < 1.0:
        raise MonitorInputError(f"alpha must lie in (0, 1); got {alpha}.")


def _sq_dists(
    a: torch.Tensor, b: torch.Tensor, a_sq: torch.Tensor, b_sq: torch.Tensor
) -> torch.Tensor:
    d = a @ b.T
    d.mul_(-2.0).add_(a_sq[:, None]).add_(b_sq[None, :]).clamp_(min=0.0)
    return d


def median_bandwidth(pooled: FloatArray, *, seed: int = 0) -> float:
    """Median pairwise Euclidean distance on (a subsample of) the pooled sample.

    The kernel is ``exp(-|x - y|^2 / (2 bandwidth^2))``. Pooled, not reference-only, so that the
    bandwidth is the same for every permutation of the labels.
    """
    rng = np.random.default_rng(seed)
    if pooled.shape[0] > _BANDWIDTH_SAMPLE:
        pooled = pooled[rng.choice(pooled.shape[0], _BANDWIDTH_SAMPLE, replace=False)]
    x = torch.from_numpy(pooled)
    sq = (x * x).sum(1)
    d2 = _sq_dists(x, x, sq, sq)
    iu = torch.triu_indices(x.shape[0], x.shape[0], offset=1)
    median = float(np.sqrt(np.median(d2[iu[0], iu[1]].numpy())))
    if median <= 0.0:
        raise MonitorInputError(
            "The median pairwise distance is 0 (more than half the rows are identical); pass an "
            "explicit bandwidth or deduplicate the embeddings."
        )
    return median


def _subsample(x: FloatArray, max_n: int | None, rng: np.random.Generator) -> FloatArray:
    if max_n is None or x.shape[0] <= max_n:
        return x
    return x[np.sort(rng.choice(x.shape[0], max_n, replace=False))]


def mmd_test(
    reference: npt.ArrayLike,
    current: npt.ArrayLike,
    *,
    n_permutations: int = 500,
    bandwidth: float | None = None,
    seed: int = 0,
    max_n: int | None = 10_000,
    alpha: float = 0.05,
) -> MultivariateResult:
    """Kernel MMD two-sample test with an RBF kernel.

    The statistic is the unbiased MMD^2 (Gretton et al. 2012, eq. 3). The p-value permutes the
    sample labels of the POOLED sample ``n_permutations`` times and counts the observed labelling
    too, ``p = (1 + #{perm >= observed}) / (1 + n_permutations)``; it is never 0 and the test is
    exact at any sample size. ``bandwidth`` defaults to the median heuristic on the pooled sample.
    """
    _check_alpha(alpha)
    if n_permutations < 1:
        raise MonitorInputError(f"n_permutations must be at least 1; got {n_permutations}.")
    if max_n is not None and max_n < MIN_SAMPLES:
        raise MonitorInputError(f"max_n must be at least {MIN_SAMPLES}; got {max_n}.")
    ref, cur = _pair(reference, current, "embeddings")
    rng = np.random.default_rng(data_seed(seed, ref, cur))
    n_ref_in, n_cur_in = ref.shape[0], cur.shape[0]
    ref, cur = _subsample(ref, max_n, rng), _subsample(cur, max_n, rng)
    pooled = np.concatenate([ref, cur])
    if bandwidth is None:
        bandwidth = median_bandwidth(pooled, seed=seed)
    elif not bandwidth > 0:
        raise MonitorInputError(f"bandwidth must be positive; got {bandwidth}.")
    n, m = ref.shape[0], cur.shape[0]
    labels = np.zeros(n + m, dtype=np.float32)
    labels[:n] = 1.0
    perms = rng.permuted(np.broadcast_to(labels, (n_permutations, n + m)), axis=1)
    assign = np.concatenate([labels[None, :], perms]).astype(np.float32)
    mmd2 = _mmd2_for_labellings(pooled, assign, n, m, float(bandwidth))
    observed, null = float(mmd2[0]), mmd2[1:]
    p = permutation_p_value(observed, null)
    return MultivariateResult(
        test="mmd",
        statistic=observed,
        p_value=p,
        drift=p < alpha,
        n_reference=n,
        n_current=m,
        details={
            "bandwidth": float(bandwidth),
            "kernel": "rbf",
            "n_permutations": n_permutations,
            "p_value_method": "permutation",
            "subsampled": n != n_ref_in or m != n_cur_in,
            "n_reference_input": n_ref_in,
            "n_current_input": n_cur_in,
        },
    )


def _mmd2_for_labellings(
    pooled: FloatArray, assign: npt.NDArray[np.float32], n: int, m: int, bandwidth: float
) -> FloatArray:
    """Unbiased MMD^2 for each row of ``assign`` (1 = reference), from one blocked kernel pass.

    With a = the labelling, K the pooled kernel and r = K 1, only aKa varies quadratically:
    sum_XX = aKa - n k(x,x), sum_XY = a.r - aKa, sum_YY = 1K1 - 2 a.r + aKa - m k(x,x).
    A constant is subtracted from K first (MMD^2 is invariant to it) so that the float32 block
    sums do not cancel catastrophically.
    """
    x = torch.from_numpy(pooled.astype(np.float32))
    a = torch.from_numpy(assign)
    sq = (x * x).sum(1)
    gamma = 1.0 / (2.0 * bandwidth * bandwidth)
    probe = x[: min(512, x.shape[0])]
    shift = float(
        torch.exp(
            _sq_dists(probe, probe, sq[: probe.shape[0]], sq[: probe.shape[0]]).mul_(-gamma)
        ).mean()
    )
    total_n = x.shape[0]
    block = max(1, min(total_n, _BLOCK_SIDE))
    # Last column of ones: the same product then yields the kernel row sums r = K 1.
    a_t = torch.cat([a.T, torch.ones(total_n, 1)], dim=1).contiguous()
    aka = torch.zeros(a.shape[0], dtype=torch.float64)
    r = torch.zeros(total_n, dtype=torch.float64)
    starts = range(0, total_n, block)
    for i in starts:
        rows = slice(i, min(total_n, i + block))
        for j in starts:
            if j < i:
                continue
            cols = slice(j, min(total_n, j + block))
            k = _sq_dists(x[rows], x[cols], sq[rows], sq[cols])
            k.mul_(-gamma).exp_().sub_(shift)
            # K is symmetric: an off-diagonal block stands for itself and its transpose.
            weight = 1.0 if i == j else 2.0
            t = k @ a_t[cols]
            aka += weight * (t[:, :-1] * a_t[rows, :-1]).sum(0, dtype=torch.float64)
            r[rows] += t[:, -1].to(torch.float64)
            if i != j:
                r[cols] += k.sum(0).to(torch.float64)
    a64 = a.to(torch.float64)
    ar = a64 @ r
    diag = 1.0 - shift
    sum_xx = aka - n * diag
    sum_xy = ar - aka
    sum_yy = r.sum() - 2.0 * ar + aka - m * diag
    mmd2 = sum_xx / (n * (n - 1)) + sum_yy / (m * (m - 1)) - 2.0 * sum_xy / (n * m)
    return np.asarray(mmd2.numpy(), dtype=np.float64)


def _auroc(pos: FloatArray, neg: FloatArray) -> float:
    ranks = stats.rankdata(np.concatenate([pos, neg]))
    u = ranks[: pos.size].sum() - pos.size * (pos.size + 1) / 2.0
    return float(u / (pos.size * neg.size))


def classifier_test(
    reference: npt.ArrayLike,
    current: npt.ArrayLike,
    *,
    alpha: float = 0.05,
    seed: int = 0,
    train_fraction: float = 0.5,
    l2: float = 1e-2,
    max_iter: int = 100,
) -> MultivariateResult:
    """Classifier two-sample test: can a model tell current rows from reference rows?

    An L2-regularised logistic regression (torch, L-BFGS, features standardised on the training
    split) is fitted on a stratified ``train_fraction`` of the pooled rows. On the held-out rows,
    the AUROC of "current vs reference" is the statistic; its one-sided p-value is the
    Mann-Whitney U test of held-out scores (exact for small samples without ties, else normal
    with tie correction). Under no drift the held-out labels are exchangeable given the scores,
    so the p-value is valid whatever the classifier learned. Linear on purpose: it is fast,
    deterministic and enough for the shifts an embedding mean or covariance shows.
    """
    _check_alpha(alpha)
    if not 0.1 <= train_fraction <= 0.9:
        raise MonitorInputError(f"train_fraction must lie in [0.1, 0.9]; got {train_fraction}.")
    ref, cur = _pair(reference, current, "features")
    rng = np.random.default_rng(seed)
    train_ref = rng.random(ref.shape[0]) < train_fraction
    train_cur = rng.random(cur.shape[0]) < train_fraction
    if min(train_ref.sum(), train_cur.sum(), (~train_ref).sum(), (~train_cur).sum()) < 2:
        raise MonitorInputError("classifier_test needs at least 2 rows per side in each split.")
    x_train = np.concatenate([ref[train_ref], cur[train_cur]])
    y_train = np.concatenate([np.zeros(train_ref.sum()), np.ones(train_cur.sum())])
    mean = x_train.mean(0)
    std = x_train.std(0)
    std[std == 0] = 1.0
    weights, bias = _fit_logistic(
        (x_train - mean) / std, y_train, l2=l2, max_iter=max_iter, seed=seed
    )
    score_ref = ((ref[~train_ref] - mean) / std) @ weights + bias
    score_cur = ((cur[~train_cur] - mean) / std) @ weights + bias
    auroc = _auroc(score_cur, score_ref)
    p = float(stats.mannwhitneyu(score_cur, score_ref, alternative="greater").pvalue)
    return MultivariateResult(
        test="classifier",
        statistic=auroc,
        p_value=p,
        drift=p < alpha,
        n_reference=int(ref.shape[0]),
        n_current=int(cur.shape[0]),
        details={
            "auroc": auroc,
            "p_value_method": "mann_whitney_heldout",
            "n_heldout_reference": int(score_ref.size),
            "n_heldout_current": int(score_cur.size),
        },
    )


def _fit_logistic(
    x: FloatArray, y: FloatArray, *, l2: float, max_iter: int, seed: int
) -> tuple[FloatArray, float]:
    torch.manual_seed(seed)
    xt = torch.from_numpy(x)
    yt = torch.from_numpy(y)
    w = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(xt @ w + b, yt)
        loss = loss + l2 * (w * w).sum()
        loss.backward()  # type: ignore[no-untyped-call]
        return loss

    opt.step(closure)  # type: ignore[no-untyped-call]
    return w.detach().numpy().copy(), float(b.detach())


def bbsd_test(
    reference_scores: npt.ArrayLike, current_scores: npt.ArrayLike, *, alpha: float = 0.05
) -> MultivariateResult:
    """Black-box shift detection: KS test on each of the k model outputs, Bonferroni over k.

    ``p_value`` is ``min(1, k * min_j p_j)``; ``statistic`` is the largest KS distance. The
    correction is exact for independent outputs and conservative for correlated ones.
    """
    _check_alpha(alpha)
    ref, cur = _pair(reference_scores, current_scores, "scores")
    per_output = [stats.ks_2samp(ref[:, j], cur[:, j]) for j in range(ref.shape[1])]
    p_raw = np.array([float(r.pvalue) for r in per_output])
    d = np.array([float(r.statistic) for r in per_output])
    p = float(min(1.0, p_raw.min() * p_raw.size))
    return MultivariateResult(
        test="bbsd",
        statistic=float(d.max()),
        p_value=p,
        drift=p < alpha,
        n_reference=int(ref.shape[0]),
        n_current=int(cur.shape[0]),
        details={
            "p_value_method": "ks_bonferroni",
            "ks_statistics": d.tolist(),
            "ks_p_values": p_raw.tolist(),
        },
    )
