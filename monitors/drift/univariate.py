"""Univariate drift tests: one column of the reference window against the same column now.

Every test returns a p-value, so the false-alarm rate at ``alpha`` is known and a report can
correct for many columns:

* ``ks_test`` (numeric): two-sample Kolmogorov-Smirnov, exact null distribution when both samples
  have at most 10,000 values, Smirnov's asymptotic distribution above (the same rule as
  ``scipy.stats.ks_2samp``, which computes it).
* ``chi2_test`` (categorical): Pearson chi-squared on the 2 x K table, asymptotic p-value, with
  sparse categories pooled (see :func:`chi2_test`).
* ``psi``, ``jensen_shannon`` (numeric or categorical) and ``wasserstein`` (numeric): effect
  sizes people already read, each with a permutation p-value on the pooled sample that counts the
  observed statistic, so ``p >= 1 / (1 + n_permutations)`` and the test is exact at any n.

PSI, JS and Wasserstein can instead decide on a fixed ``threshold`` on the statistic (the PSI
rule of thumb is 0.2). A fixed threshold does not control the false-alarm rate: at n=200 a PSI of
0.2 is crossed by chance, at n=100,000 a real shift stays under it. Prefer the p-value.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import stats

from monitors._json import json_safe
from monitors.drift._inputs import (
    FloatArray,
    category_counts,
    check_not_constant,
    contingency,
    data_seed,
    is_numeric_array,
    numeric,
)
from monitors.errors import MonitorInputError

#: Floor on bin proportions in PSI: ln(q/p) is infinite for an empty bin. 1e-4 is the common
#: choice in credit-risk practice; it caps one empty bin's contribution at about 0.9 * q.
PSI_EPSILON = 1e-4

#: Below this approximate p-value the KS test reports the limiting Kolmogorov distribution.
_KS_LIMIT_BELOW = 1e-3

#: Largest number of (permutation x value) cells held in memory at once for Wasserstein.
_CHUNK_CELLS = 4_000_000


@dataclass(frozen=True, slots=True)
class UnivariateResult:
    """One column's drift test.

    ``p_value`` is set by every test here. ``threshold`` is set only when the decision was taken
    on the statistic itself (``drift = statistic > threshold``); otherwise ``drift`` is
    ``p_value < alpha`` (a report may replace ``p_value`` by its corrected value). ``n_*`` count
    the values actually tested (missing values dropped for numeric columns).
    """

    column: str
    test: str
    statistic: float
    p_value: float | None
    threshold: float | None
    drift: bool
    n_reference: int
    n_current: int
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "column": self.column,
            "test": self.test,
            "statistic": json_safe(self.statistic),
            "p_value": json_safe(self.p_value),
            "threshold": json_safe(self.threshold),
            "drift": bool(self.drift),
            "n_reference": self.n_reference,
            "n_current": self.n_current,
            "details": json_safe(self.details),
        }


def _check_alpha(alpha: float) -> None:
    if not 0.0 < alpha < 1.0:
        raise MonitorInputError(f"alpha must lie in (0, 1); got {alpha}.")


def permutation_p_value(observed: float, null: npt.NDArray[np.float64]) -> float:
    """``(1 + #{null >= observed}) / (1 + len(null))``: counts the observed statistic as one of
    the permutations, so the p-value is never 0 and the test is exact (alibi-detect#960).

    A relative tolerance of 1e-12 counts permutations whose statistic equals the observed one up
    to rounding as ties, which errs on the conservative side.
    """
    tol = 1e-12 * max(1.0, abs(observed))
    return float((1 + np.count_nonzero(null >= observed - tol)) / (1 + null.size))


def _ks_statistic(ref: FloatArray, cur: FloatArray) -> float:
    """Largest gap between the two empirical CDFs, evaluated after the last of each run of tied
    values. Both samples are sorted, then merged with a stable sort (timsort merges the two runs
    in linear time); about 5x faster than ``scipy.stats.ks_2samp`` at 100,000 rows, which
    matters for 30+ column reports."""
    n, m = ref.size, cur.size
    pooled = np.concatenate([np.sort(ref), np.sort(cur)])
    order = np.argsort(pooled, kind="stable")
    values = pooled[order]
    below_ref = np.cumsum(order < n)
    below_cur = np.arange(1, n + m + 1) - below_ref
    gaps = below_ref / n - below_cur / m
    tied = values[:-1] == values[1:]
    if tied.any():
        gaps = gaps[np.append(~tied, True)]
    return float(max(gaps.max(), -gaps.min()))


def ks_test(
    reference: npt.ArrayLike, current: npt.ArrayLike, *, column: str = "value", alpha: float = 0.05
) -> UnivariateResult:
    """Two-sided two-sample Kolmogorov-Smirnov test on a numeric column (NaN dropped).

    The statistic is the largest gap between the two empirical CDFs. Up to 10,000 values per
    side the p-value is exact (``scipy.stats.ks_2samp``); above, Smirnov's distribution
    ``kstwo(round(n m / (n + m)))``, the same rule scipy uses, except that p-values below 1e-3
    come from the limiting Kolmogorov distribution (``details["p_value_method"]`` says which).
    The p-value assumes continuous data; with many ties (integer ages) it is conservative.
    """
    _check_alpha(alpha)
    ref = numeric(reference, column=column, side="reference")
    cur = numeric(current, column=column, side="current")
    check_not_constant(ref, cur, column=column)
    if max(ref.size, cur.size) <= 10_000:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            res = stats.ks_2samp(ref, cur, alternative="two-sided", method="exact")
        # scipy falls back to the asymptotic distribution (with a warning) when the exact
        # recursion under- or overflows; say so instead of passing the warning on.
        method = "asymptotic" if any("Exact" in str(w.message) for w in caught) else "exact"
        statistic, p = float(res.statistic), float(res.pvalue)
    else:
        method = "asymptotic"
        statistic = _ks_statistic(ref, cur)
        big, small = max(ref.size, cur.size), min(ref.size, cur.size)
        en = float(np.round(float(big) * float(small) / float(big + small)))
        # scipy's kstwo.sf takes ~100 ms once p < 1e-4 (vs 0.3 ms above); there the limiting
        # Kolmogorov distribution is used instead, whose relative error O(n^-1/2) cannot change
        # a decision at any usable alpha.
        p = float(stats.kstwobign.sf(statistic * np.sqrt(en)))
        if p >= _KS_LIMIT_BELOW:
            p = float(np.clip(stats.kstwo.sf(statistic, en), 0.0, 1.0))
        else:
            method = "asymptotic_limit"
    return UnivariateResult(
        column=column,
        test="ks",
        statistic=statistic,
        p_value=p,
        threshold=None,
        drift=p < alpha,
        n_reference=int(ref.size),
        n_current=int(cur.size),
        details={"p_value_method": method},
    )


def _pool_sparse(
    categories: list[str], table: npt.NDArray[np.int64], min_expected: float
) -> tuple[list[str], npt.NDArray[np.int64], list[str]]:
    """Pool categories whose expected count is below ``min_expected`` into ``__other__``.

    Rule: under "no drift" the expected count of category k in the smaller sample is
    ``min(n_ref, n_cur) * C_k / N``. Categories where it is below ``min_expected`` are summed
    into one ``__other__`` column, so their mass (including a rare brand-new category) stays in
    the test. ``__other__`` is kept even if it is itself sparse, as long as its expected count is
    at least 1 (Cochran's rule tolerates a few such cells); below 1 it is merged into the
    smallest remaining category, unless that would leave a single column. A lone sparse
    category with expected count >= 1 keeps its own name (pooling it alone would change nothing).
    """
    totals = table.sum(axis=1)
    col_totals = table.sum(axis=0)
    scale = totals.min() / totals.sum()
    expected_min = col_totals * scale
    sparse = expected_min < min_expected
    if not sparse.any() or (sparse.sum() == 1 and expected_min[sparse][0] >= 1.0):
        return categories, table, []
    pooled_names = [c for c, s in zip(categories, sparse, strict=True) if s]
    keep = [c for c, s in zip(categories, sparse, strict=True) if not s]
    other = table[:, sparse].sum(axis=1, keepdims=True)
    kept = table[:, ~sparse]
    if other.sum() * scale >= 1.0 or kept.shape[1] < 2:
        return [*keep, "__other__"], np.concatenate([kept, other], axis=1), pooled_names
    smallest = int(np.argmin(kept.sum(axis=0)))
    kept = kept.copy()
    kept[:, smallest] += other[:, 0]
    pooled_names.append(keep[smallest])
    keep[smallest] = "__other__"
    return keep, kept, pooled_names


def _name_list(names: list[str], limit: int = 20) -> list[str]:
    return names[:limit] + ([f"... {len(names) - limit} more"] if len(names) > limit else [])


def chi2_test(
    reference: npt.ArrayLike,
    current: npt.ArrayLike,
    *,
    column: str = "value",
    alpha: float = 0.05,
    min_expected: float = 5.0,
) -> UnivariateResult:
    """Pearson chi-squared test of homogeneity on a categorical column.

    Values are compared as strings; None/NaN count as the category ``__missing__``. Sparse
    categories are pooled by the rule in :func:`_pool_sparse` so the chi-squared approximation
    holds. No continuity correction is applied (it is only defined for 2 x 2 tables and makes the
    test conservative). The p-value is asymptotic, chi-squared with K-1 degrees of freedom.
    ``details`` lists categories new in the current sample and those that vanished.
    """
    _check_alpha(alpha)
    if min_expected <= 0:
        raise MonitorInputError(f"min_expected must be positive; got {min_expected}.")
    _check_same_kind(reference, current, column=column)
    ref_counts = category_counts(reference, column=column, side="reference")
    cur_counts = category_counts(current, column=column, side="current")
    categories, table = contingency(ref_counts, cur_counts, column=column)
    cats, pooled, pooled_names = _pool_sparse(categories, table, min_expected)
    n = table.sum(axis=1)
    expected = np.outer(n, pooled.sum(axis=0)) / n.sum()
    statistic = float(((pooled - expected) ** 2 / expected).sum())
    dof = len(cats) - 1
    p = float(stats.chi2.sf(statistic, dof))
    new = sorted(set(cur_counts) - set(ref_counts))
    gone = sorted(set(ref_counts) - set(cur_counts))
    return UnivariateResult(
        column=column,
        test="chi2",
        statistic=statistic,
        p_value=p,
        threshold=None,
        drift=p < alpha,
        n_reference=int(n[0]),
        n_current=int(n[1]),
        details={
            "dof": dof,
            "p_value_method": "asymptotic",
            "pooled_into_other": _name_list(pooled_names),
            "new_categories": _name_list(new),
            "missing_categories": _name_list(gone),
        },
    )


def _check_same_kind(reference: npt.ArrayLike, current: npt.ArrayLike, *, column: str) -> None:
    if is_numeric_array(reference) != is_numeric_array(current):
        raise MonitorInputError(
            f"Column {column!r} is numeric in one sample and not in the other; make the types "
            "match (a CSV column with a stray text value is the usual cause)."
        )


def _binned_counts(
    reference: npt.ArrayLike, current: npt.ArrayLike, *, column: str, bins: int
) -> tuple[npt.NDArray[np.int64], str, int]:
    """2 x B counts for PSI / JS. Numeric columns use ``bins`` bins at the POOLED sample's
    quantiles, categorical columns one bin per category.

    Pooled rather than reference quantiles: the bins then do not depend on which sample a value
    came from, so permuting the sample labels only moves counts between the two rows of a table
    with fixed column totals. That makes the permutation test exact and cheap (a multivariate
    hypergeometric draw per permutation, independent of n). It shifts the statistic from the
    reference-quantile PSI by O(1/n).
    """
    _check_same_kind(reference, current, column=column)
    if is_numeric_array(reference):
        if bins < 2:
            raise MonitorInputError(f"bins must be at least 2; got {bins}.")
        ref = numeric(reference, column=column, side="reference")
        cur = numeric(current, column=column, side="current")
        check_not_constant(ref, cur, column=column)
        pooled = np.concatenate([ref, cur])
        edges = np.unique(np.quantile(pooled, np.linspace(0.0, 1.0, bins + 1)[1:-1]))
        width = edges.size + 1
        table = np.stack(
            [
                np.bincount(np.searchsorted(edges, ref, side="right"), minlength=width),
                np.bincount(np.searchsorted(edges, cur, side="right"), minlength=width),
            ]
        ).astype(np.int64)
        return table, "quantile_bins", width
    ref_counts = category_counts(reference, column=column, side="reference")
    cur_counts = category_counts(current, column=column, side="current")
    _, table = contingency(ref_counts, cur_counts, column=column)
    return table, "categories", table.shape[1]


def _psi_rows(ref: npt.NDArray[np.int64], cur: npt.NDArray[np.int64]) -> FloatArray:
    p = np.maximum(ref / ref.sum(axis=-1, keepdims=True), PSI_EPSILON)
    q = np.maximum(cur / cur.sum(axis=-1, keepdims=True), PSI_EPSILON)
    return np.asarray(((q - p) * np.log(q / p)).sum(axis=-1), dtype=np.float64)


def _js_rows(ref: npt.NDArray[np.int64], cur: npt.NDArray[np.int64]) -> FloatArray:
    p = ref / ref.sum(axis=-1, keepdims=True)
    q = cur / cur.sum(axis=-1, keepdims=True)
    m = 0.5 * (p + q)
    with np.errstate(divide="ignore", invalid="ignore"):
        kl_p = np.where(p > 0, p * np.log2(p / m), 0.0).sum(axis=-1)
        kl_q = np.where(q > 0, q * np.log2(q / m), 0.0).sum(axis=-1)
    return np.asarray(np.sqrt(np.maximum(0.5 * (kl_p + kl_q), 0.0)), dtype=np.float64)


def _binned_test(
    name: str,
    rows: Callable[[npt.NDArray[np.int64], npt.NDArray[np.int64]], FloatArray],
    reference: npt.ArrayLike,
    current: npt.ArrayLike,
    *,
    column: str,
    alpha: float,
    bins: int,
    threshold: float | None,
    n_permutations: int,
    seed: int,
) -> UnivariateResult:
    _check_alpha(alpha)
    if n_permutations < 1:
        raise MonitorInputError(f"n_permutations must be at least 1; got {n_permutations}.")
    table, binning, width = _binned_counts(reference, current, column=column, bins=bins)
    observed = float(rows(table[0], table[1]))
    rng = np.random.default_rng(data_seed(seed, table))
    perm_ref = rng.multivariate_hypergeometric(
        table.sum(axis=0), int(table[0].sum()), size=n_permutations
    )
    null = rows(perm_ref, table.sum(axis=0) - perm_ref)
    p = permutation_p_value(observed, null)
    return UnivariateResult(
        column=column,
        test=name,
        statistic=observed,
        p_value=p,
        threshold=threshold,
        drift=observed > threshold if threshold is not None else p < alpha,
        n_reference=int(table[0].sum()),
        n_current=int(table[1].sum()),
        details={
            "p_value_method": "permutation",
            "n_permutations": n_permutations,
            "binning": binning,
            "n_bins": width,
        },
    )


def psi(
    reference: npt.ArrayLike,
    current: npt.ArrayLike,
    *,
    column: str = "value",
    alpha: float = 0.05,
    bins: int = 10,
    threshold: float | None = None,
    n_permutations: int = 1000,
    seed: int = 0,
) -> UnivariateResult:
    """Population stability index, ``sum (q - p) ln(q / p)`` over bins (see
    :func:`_binned_counts`), proportions floored at :data:`PSI_EPSILON`.

    Decides by permutation p-value unless ``threshold`` is given (rule of thumb: < 0.1 stable,
    0.1-0.2 moderate, > 0.2 significant shift; not calibrated, see the module docstring).
    """
    return _binned_test(
        "psi",
        _psi_rows,
        reference,
        current,
        column=column,
        alpha=alpha,
        bins=bins,
        threshold=threshold,
        n_permutations=n_permutations,
        seed=seed,
    )


def jensen_shannon(
    reference: npt.ArrayLike,
    current: npt.ArrayLike,
    *,
    column: str = "value",
    alpha: float = 0.05,
    bins: int = 10,
    threshold: float | None = None,
    n_permutations: int = 1000,
    seed: int = 0,
) -> UnivariateResult:
    """Jensen-Shannon distance (square root of the divergence, base 2, so in [0, 1]) between the
    binned distributions. Evidently's default for large samples uses a 0.1 threshold on it."""
    return _binned_test(
        "jensen_shannon",
        _js_rows,
        reference,
        current,
        column=column,
        alpha=alpha,
        bins=bins,
        threshold=threshold,
        n_permutations=n_permutations,
        seed=seed,
    )


def _wasserstein_from_labels(
    is_ref: npt.NDArray[np.bool_], gaps: FloatArray, n_ref: int, n_cur: int
) -> FloatArray:
    """W1 = integral |F_ref - F_cur| over the pooled sorted values, for each row of labels."""
    ranks = np.arange(1, is_ref.shape[-1], dtype=np.float64)
    ref_cum = np.cumsum(is_ref[..., :-1], axis=-1, dtype=np.float64)
    diff = np.abs(ref_cum / n_ref - (ranks - ref_cum) / n_cur)
    return np.asarray(diff @ gaps, dtype=np.float64)


def wasserstein(
    reference: npt.ArrayLike,
    current: npt.ArrayLike,
    *,
    column: str = "value",
    alpha: float = 0.05,
    threshold: float | None = None,
    n_permutations: int = 1000,
    seed: int = 0,
) -> UnivariateResult:
    """First Wasserstein (earth mover's) distance in the column's own units.

    ``details["normed"]`` divides it by the reference standard deviation, which is what
    Evidently's 0.1 threshold applies to; ``threshold`` here is compared with that normed value.
    The permutation test costs O(n_permutations x N) for N pooled values (about 1 s per 1,000
    permutations at N = 200,000), so it is not the default numeric test of a drift report.
    """
    _check_alpha(alpha)
    if n_permutations < 1:
        raise MonitorInputError(f"n_permutations must be at least 1; got {n_permutations}.")
    _check_same_kind(reference, current, column=column)
    ref = numeric(reference, column=column, side="reference")
    cur = numeric(current, column=column, side="current")
    check_not_constant(ref, cur, column=column)
    pooled = np.concatenate([ref, cur])
    order = np.argsort(pooled, kind="stable")
    gaps = np.diff(pooled[order])
    labels = order < ref.size
    observed = float(_wasserstein_from_labels(labels, gaps, ref.size, cur.size))
    rng = np.random.default_rng(data_seed(seed, labels, gaps))
    chunk = max(1, _CHUNK_CELLS // pooled.size)
    null_parts = []
    for start in range(0, n_permutations, chunk):
        rows = min(chunk, n_permutations - start)
        perms = rng.permuted(np.broadcast_to(labels, (rows, labels.size)), axis=1)
        null_parts.append(_wasserstein_from_labels(perms, gaps, ref.size, cur.size))
    p = permutation_p_value(observed, np.concatenate(null_parts))
    std = float(ref.std(ddof=1))
    normed = observed / std if std > 0 else float("inf")
    return UnivariateResult(
        column=column,
        test="wasserstein",
        statistic=observed,
        p_value=p,
        threshold=threshold,
        drift=normed > threshold if threshold is not None else p < alpha,
        n_reference=int(ref.size),
        n_current=int(cur.size),
        details={
            "p_value_method": "permutation",
            "n_permutations": n_permutations,
            "normed": normed,
        },
    )
