"""DeLong AUROC, paired comparison and non-inferiority against a slow textbook implementation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score

from monitors.errors import MonitorInputError
from monitors.performance import auroc_delong, delong_compare, midranks, non_inferiority


def _slow_delong(y: np.ndarray, scores: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """DeLong et al. (1988) straight from the definition: the n_pos x n_neg kernel psi(X, Y)."""
    aucs, v10s, v01s = [], [], []
    for s in scores:
        x, yy = s[y == 1], s[y == 0]
        psi = (x[:, None] > yy[None, :]).astype(float) + 0.5 * (x[:, None] == yy[None, :])
        aucs.append(psi.mean())
        v10s.append(psi.mean(axis=1))
        v01s.append(psi.mean(axis=0))
    s10 = np.atleast_2d(np.cov(np.vstack(v10s)))
    s01 = np.atleast_2d(np.cov(np.vstack(v01s)))
    return np.array(aucs), s10 / len(v10s[0]) + s01 / len(v01s[0])


def _data(seed: int, n: int = 300, ties: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(int)
    a = y * 1.0 + rng.normal(size=n)
    b = 0.6 * a + y * 0.5 + rng.normal(size=n)
    if ties:
        a, b = np.round(a), np.round(b * 2) / 2
    return y, a, b


def test_midranks_match_scipy() -> None:
    x = np.array([3.0, 1.0, 3.0, 2.0, 3.0, 1.0])
    np.testing.assert_allclose(midranks(x), stats.rankdata(x))


@pytest.mark.parametrize("ties", [False, True])
def test_auroc_and_variance_match_slow_delong(ties: bool) -> None:
    y, a, _ = _data(1, ties=ties)
    auc, cov = _slow_delong(y, [a])
    plain = auroc_delong(y, a, alpha=0.05, transform="none")
    assert plain.value == pytest.approx(auc[0], abs=1e-12)
    assert plain.value == pytest.approx(roc_auc_score(y, a), abs=1e-12)
    z, se = stats.norm.ppf(0.975), np.sqrt(cov[0, 0])
    assert plain.lower == pytest.approx(auc[0] - z * se, abs=1e-12)
    assert plain.upper == pytest.approx(auc[0] + z * se, abs=1e-12)
    assert plain.n == y.size
    assert plain.method == "delong"
    res = auroc_delong(y, a, alpha=0.05)
    logit = np.log(auc[0] / (1 - auc[0]))
    half = z * se / (auc[0] * (1 - auc[0]))
    assert res.lower == pytest.approx(1 / (1 + np.exp(-(logit - half))), abs=1e-12)
    assert res.upper == pytest.approx(1 / (1 + np.exp(-(logit + half))), abs=1e-12)
    assert res.method == "delong-logit"


def test_perfect_separation_falls_back_to_the_plain_interval() -> None:
    res = auroc_delong([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9])
    assert (res.value, res.lower, res.upper, res.method) == (1.0, 1.0, 1.0, "delong")


@pytest.mark.parametrize("ties", [False, True])
def test_paired_comparison_matches_slow_delong(ties: bool) -> None:
    y, a, b = _data(2, ties=ties)
    auc, cov = _slow_delong(y, [a, b])
    var = cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]
    z = (auc[0] - auc[1]) / np.sqrt(var)
    res = delong_compare(y, a, b)
    assert res.difference == pytest.approx(auc[0] - auc[1], abs=1e-12)
    assert res.se == pytest.approx(np.sqrt(var), abs=1e-12)
    assert res.p_value == pytest.approx(2 * stats.norm.sf(abs(z)), abs=1e-12)
    assert res.n_pos + res.n_neg == y.size


def test_non_inferiority_decision_and_p_value() -> None:
    y, a, b = _data(3, n=2000)
    auc, cov = _slow_delong(y, [a, b])
    se = np.sqrt(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    res = non_inferiority(y, a, b, margin=0.02, alpha=0.05)
    assert res.p_value == pytest.approx(stats.norm.sf((auc[0] - auc[1] + 0.02) / se), abs=1e-12)
    assert res.non_inferior == (res.lower > -0.02)
    # b is a noisier version of a plus label signal: a strict margin the other way must fail.
    worse = non_inferiority(y, a - 0.0, a + 3.0 * y, margin=0.0)
    assert not worse.non_inferior
    assert worse.p_value > 0.5


def test_identical_scores_are_non_inferior_at_any_positive_margin() -> None:
    y, a, _ = _data(4)
    res = non_inferiority(y, a, a, margin=0.01)
    assert res.se == 0.0
    assert res.non_inferior
    assert delong_compare(y, a, a).p_value == 1.0


@pytest.mark.parametrize(
    ("y", "s", "match"),
    [
        ([1, 1, 1], [0.1, 0.2, 0.3], "only positive"),
        ([0, 1, 0], [0.1, np.nan, 0.3], "NaN"),
        ([0, 1], [0.1, 0.2, 0.3], "same length"),
        ([0, 2, 1], [0.1, 0.2, 0.3], "only 0 and 1"),
        (["a", "b"], [0.1, 0.2], "0/1"),
    ],
)
def test_degenerate_inputs_raise_with_fix(y: list[object], s: list[float], match: str) -> None:
    with pytest.raises(MonitorInputError, match=match):
        auroc_delong(np.asarray(y), np.asarray(s))


def test_negative_margin_refused() -> None:
    y, a, b = _data(5)
    with pytest.raises(MonitorInputError, match="margin"):
        non_inferiority(y, a, b, margin=-0.1)


def test_fast_on_a_million_cases() -> None:
    import time

    rng = np.random.default_rng(0)
    y = rng.random(1_000_000) < 0.1
    s = rng.normal(size=y.size) + y
    t0 = time.perf_counter()
    res = auroc_delong(y, s)
    assert time.perf_counter() - t0 < 5.0
    assert res.lower is not None
    assert res.upper is not None
    assert res.lower < res.value < res.upper  # type: ignore[operator]
