"""Subgroup fairness: per-group metrics with bootstrap intervals, gaps, worst group vs the rest.

Groups are every value of each declared attribute and, with ``intersections=True``, every
observed combination of values of two or more attributes (sex x age band is where a model
that looks fair on each attribute alone often is not). Missing attribute values form their own
group, ``"missing"``: who lacks demographics is itself a population worth watching.

Intervals are stratified percentile bootstraps (see :mod:`monitors.fairness._bootstrap`). Each
group gets its own generator derived from ``seed`` and its name, so a report is reproducible
and adding an attribute does not change the draws of the other attributes' groups.
"""

from __future__ import annotations

import itertools
import zlib
from collections.abc import Mapping
from typing import Literal

import numpy as np
import numpy.typing as npt

from monitors.errors import MonitorInputError
from monitors.fairness import _bootstrap as bs
from monitors.fairness.types import FairnessReport, GapResult, GroupResult, WorstVsRest
from monitors.performance import _validate as v
from monitors.performance.types import MetricCI

MISSING = "missing"
_WORST: dict[str, Literal["min", "max"]] = {
    "tpr": "min",
    "fpr": "max",
    "auroc": "min",
    "ece": "max",
}
_METHOD = "bootstrap-percentile-stratified"


def _labels_of(values: npt.ArrayLike, name: str, n: int) -> npt.NDArray[np.str_]:
    arr = np.asarray(values, dtype=object)
    if arr.ndim != 1 or arr.size != n:
        raise MonitorInputError(
            f"Group attribute {name!r} must be a 1-D array with one value per case ({n}); "
            f"got shape {arr.shape}."
        )
    out = np.empty(n, dtype=object)
    for i, x in enumerate(arr):
        missing = x is None or (isinstance(x, float) and np.isnan(x))
        out[i] = MISSING if missing else str(x)
    return out.astype(str)


def _combine(
    columns: list[npt.NDArray[np.str_]],
) -> tuple[npt.NDArray[np.intp], list[tuple[str, ...]]]:
    """Code each case by its combination of values; combinations in sorted order."""
    uniq = [np.unique(c, return_inverse=True) for c in columns]
    code = np.zeros(columns[0].size, dtype=np.intp)
    for values, inverse in uniq:
        code = code * values.size + inverse
    present, codes = np.unique(code, return_inverse=True)
    combos: list[tuple[str, ...]] = []
    for c in present.tolist():
        parts: list[str] = []
        for values, _ in reversed(uniq):
            c, r = divmod(c, values.size)
            parts.append(str(values[r]))
        combos.append(tuple(reversed(parts)))
    return codes.astype(np.intp), combos


def _ci(value: float, draws: npt.NDArray[np.float64], alpha: float, n: int) -> MetricCI:
    if not np.isfinite(value):
        return MetricCI(value=None, lower=None, upper=None, n=n, method=_METHOD)
    finite = draws[np.isfinite(draws)]
    if finite.size == 0:
        return MetricCI(value=value, lower=None, upper=None, n=n, method=_METHOD)
    lo, hi = np.quantile(finite, [alpha / 2.0, 1.0 - alpha / 2.0])
    return MetricCI(value=value, lower=float(lo), upper=float(hi), n=n, method=_METHOD)


def subgroup_report(
    y: npt.ArrayLike,
    score: npt.ArrayLike,
    threshold: float,
    groups: Mapping[str, npt.ArrayLike],
    *,
    intersections: bool = True,
    min_n: int = 30,
    n_bootstrap: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> FairnessReport:
    """Per-group n, n_pos, TPR, FPR, AUROC and ECE with ``1 - alpha`` bootstrap intervals, the
    max-min gap of each metric within each attribute and intersection, and the worst eligible
    group against everyone else. ``score`` must be probabilities in [0, 1] (ECE needs them);
    predicted positive is ``score >= threshold``. Groups with n < ``min_n`` are reported with
    ``too_small=True`` and kept out of gaps (see :class:`GroupResult`)."""
    a = v.alpha_level(alpha)
    t = v.threshold_value(threshold)
    yy, ss = v.paired(y, score, unit_interval=True)
    if not groups:
        raise MonitorInputError("Declare at least one group attribute (e.g. sex, age_band).")
    if min_n < 1 or n_bootstrap < 0:
        raise MonitorInputError(
            f"min_n must be >= 1 and n_bootstrap >= 0; got min_n={min_n}, "
            f"n_bootstrap={n_bootstrap}."
        )
    n = yy.size
    attrs = tuple(groups)
    labels = {name: _labels_of(groups[name], name, n) for name in attrs}
    families: list[tuple[str, ...]] = [(name,) for name in attrs]
    if intersections:
        for r in range(2, len(attrs) + 1):
            families.extend(itertools.combinations(attrs, r))

    results: list[GroupResult] = []
    masks: dict[str, npt.NDArray[np.bool_]] = {}
    group_draws: dict[str, dict[str, npt.NDArray[np.float64]]] = {}
    by_family: dict[str, list[GroupResult]] = {}
    for family in families:
        codes, combos = _combine([labels[a_] for a_ in family])
        fam_name = "&".join(family)
        by_family[fam_name] = []
        for code, combo in enumerate(combos):
            mask = codes == code
            values = dict(zip(family, combo, strict=True))
            name = " & ".join(f"{k}={val}" for k, val in values.items())
            rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
            g = bs.prepare(yy[mask], ss[mask], t)
            est = bs.point(g)
            draws = bs.draws(g, n_bootstrap, rng)
            res = GroupResult(
                name=name,
                attributes=values,
                n=g.n,
                n_pos=g.n_pos,
                n_neg=g.n - g.n_pos,
                too_small=g.n < min_n,
                tpr=_ci(est["tpr"], draws["tpr"], a, g.n_pos),
                fpr=_ci(est["fpr"], draws["fpr"], a, g.n - g.n_pos),
                auroc=_ci(est["auroc"], draws["auroc"], a, g.n),
                ece=_ci(est["ece"], draws["ece"], a, g.n),
            )
            results.append(res)
            masks[name] = mask
            group_draws[name] = draws
            by_family[fam_name].append(res)

    rest = _Rest(yy, ss, t, n_bootstrap, seed)
    gaps: list[GapResult] = []
    worst: list[WorstVsRest] = []
    for fam_name, members in by_family.items():
        for metric in _WORST:
            gap, w = _compare(fam_name, metric, members, masks, group_draws, rest, a)
            gaps.extend([gap] if gap else [])
            worst.extend([w] if w else [])
    return FairnessReport(
        n=int(n),
        threshold=t,
        min_n=min_n,
        n_bootstrap=n_bootstrap,
        alpha=a,
        attributes=attrs,
        groups=tuple(results),
        gaps=tuple(gaps),
        worst_vs_rest=tuple(worst),
    )


class _Rest:
    """Point estimates and draws of "everyone but group g", computed once per worst group."""

    def __init__(
        self, y: v.BoolArray, score: v.FloatArray, threshold: float, n_boot: int, seed: int
    ) -> None:
        self._y, self._s, self._t, self._b, self._seed = y, score, threshold, n_boot, seed
        self._cache: dict[str, tuple[dict[str, float], dict[str, npt.NDArray[np.float64]]]] = {}

    def get(
        self, name: str, mask: npt.NDArray[np.bool_]
    ) -> tuple[dict[str, float], dict[str, npt.NDArray[np.float64]]]:
        if name not in self._cache:
            g = bs.prepare(self._y[~mask], self._s[~mask], self._t)
            rng = np.random.default_rng([self._seed, zlib.crc32(("rest:" + name).encode())])
            self._cache[name] = (bs.point(g), bs.draws(g, self._b, rng))
        return self._cache[name]


def _compare(
    family: str,
    metric: str,
    members: list[GroupResult],
    masks: Mapping[str, npt.NDArray[np.bool_]],
    group_draws: Mapping[str, Mapping[str, npt.NDArray[np.float64]]],
    rest: _Rest,
    alpha: float,
) -> tuple[GapResult | None, WorstVsRest | None]:
    """The max-min gap of ``metric`` over the family's eligible groups, and its worst group
    against everyone else (None where fewer than 2, or no, eligible groups)."""
    eligible = [
        (val, g) for g in members if not g.too_small and (val := g.metric(metric).value) is not None
    ]
    if not eligible:
        return None, None
    hi_v, hi_g = max(eligible, key=lambda x: x[0])
    lo_v, lo_g = min(eligible, key=lambda x: x[0])
    gap = None
    if len(eligible) >= 2:
        gap = GapResult(
            family, metric, hi_v - lo_v, hi_g.name, hi_v, lo_g.name, lo_v, len(eligible)
        )
    w_v, w_g = (lo_v, lo_g) if _WORST[metric] == "min" else (hi_v, hi_g)
    mask = masks[w_g.name]
    if mask.all():
        return gap, None
    r_est, r_draws = rest.get(w_g.name, mask)
    if not np.isfinite(r_est[metric]):
        return gap, None
    diff = group_draws[w_g.name][metric] - r_draws[metric]
    finite = diff[np.isfinite(diff)]
    lo = hi = None
    if finite.size:
        q = np.quantile(finite, [alpha / 2.0, 1.0 - alpha / 2.0])
        lo, hi = float(q[0]), float(q[1])
    worst = WorstVsRest(
        family=family,
        metric=metric,
        group=w_g.name,
        group_value=w_v,
        rest_value=r_est[metric],
        difference=w_v - r_est[metric],
        lower=lo,
        upper=hi,
        n_group=w_g.n,
        n_rest=int((~mask).sum()),
    )
    return gap, worst
