"""Univariate drift tests: equality with scipy, category handling, permutation p-values, errors."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray
from scipy import stats
from scipy.spatial import distance

from monitors.drift.univariate import (
    chi2_test,
    jensen_shannon,
    ks_test,
    permutation_p_value,
    psi,
    wasserstein,
)
from monitors.errors import MonitorInputError


@pytest.mark.parametrize(
    ("n", "m", "shift"), [(300, 300, 0.1), (300, 251, 0.1), (12_000, 11_000, 0.02)]
)
def test_ks_equals_scipy(n: int, m: int, shift: float) -> None:
    rng = np.random.default_rng(n + m)
    ref, cur = rng.normal(size=n), rng.normal(shift, 1.0, size=m)
    ours = ks_test(ref, cur)
    theirs = stats.ks_2samp(ref, cur)
    assert ours.statistic == pytest.approx(theirs.statistic, abs=1e-15)
    assert ours.p_value == pytest.approx(theirs.pvalue, rel=1e-12)
    assert ours.details["p_value_method"] == ("exact" if n <= 10_000 else "asymptotic")
    assert ours.drift == (theirs.pvalue < 0.05)


def test_ks_tiny_p_values_use_the_limit_distribution() -> None:
    rng = np.random.default_rng(5)
    ref, cur = rng.normal(size=20_000), rng.normal(0.1, 1.0, size=20_000)
    ours = ks_test(ref, cur)
    theirs = stats.ks_2samp(ref, cur)
    assert ours.statistic == theirs.statistic
    assert ours.details["p_value_method"] == "asymptotic_limit"
    assert ours.p_value is not None
    assert ours.p_value == pytest.approx(theirs.pvalue, rel=0.05)
    assert ours.p_value < 1e-3


def test_ks_drops_missing_values_before_testing() -> None:
    rng = np.random.default_rng(1)
    ref, cur = rng.normal(size=200), rng.normal(0.4, 1, size=150)
    ref_nan, cur_nan = ref.copy(), cur.copy()
    ref_nan[::10] = np.nan
    res = ks_test(ref_nan, cur_nan, column="age")
    theirs = stats.ks_2samp(ref[~np.isnan(ref_nan)], cur)
    assert res.n_reference == 180
    assert res.n_current == 150
    assert res.p_value == pytest.approx(theirs.pvalue, rel=1e-12)


def _cats(counts: dict[str, int]) -> NDArray[Any]:
    return np.array([k for k, v in counts.items() for _ in range(v)], dtype=object)


def test_chi2_equals_scipy_without_sparse_categories() -> None:
    ref = _cats({"GE": 120, "Siemens": 80, "Philips": 50})
    cur = _cats({"GE": 90, "Siemens": 95, "Philips": 45})
    res = chi2_test(ref, cur)
    table = np.array([[120, 80, 50], [90, 95, 45]])
    chi2, p, dof, _ = stats.chi2_contingency(table, correction=False)
    assert res.statistic == pytest.approx(chi2, rel=1e-12)
    assert res.p_value == pytest.approx(p, rel=1e-12)
    assert res.details["dof"] == dof == 2


def test_chi2_new_category_is_kept_and_detected() -> None:
    ref = _cats({"GE": 200, "Siemens": 200})
    cur = _cats({"GE": 180, "Siemens": 180, "Canon": 40})
    res = chi2_test(ref, cur, column="manufacturer")
    assert res.drift
    assert res.details["new_categories"] == ["Canon"]
    table = np.array([[0, 200, 200], [40, 180, 180]])
    chi2, p, _, _ = stats.chi2_contingency(table, correction=False)
    assert res.statistic == pytest.approx(chi2, rel=1e-12)
    assert res.p_value == pytest.approx(p, rel=1e-12)
    assert res.p_value is not None
    assert res.p_value < 1e-6


def test_chi2_pools_sparse_categories_into_other() -> None:
    ref = _cats({"A": 300, "B": 250, "r1": 2, "r2": 3})
    cur = _cats({"A": 280, "B": 260, "r1": 1, "new": 4})
    res = chi2_test(ref, cur)
    assert set(res.details["pooled_into_other"]) == {"r1", "r2", "new"}
    # __other__: reference 2 + 3 = 5, current 1 + 4 = 5; the new category's mass stays in.
    table = np.array([[300, 250, 5], [280, 260, 5]])
    chi2, p, dof, _ = stats.chi2_contingency(table, correction=False)
    assert res.statistic == pytest.approx(chi2, rel=1e-12)
    assert res.p_value == pytest.approx(p, rel=1e-12)
    assert res.details["dof"] == dof


def test_chi2_counts_missing_as_a_category() -> None:
    ref = np.array(["a", "b"] * 100, dtype=object)
    cur = np.array(["a", "b"] * 70 + [None] * 30 + [float("nan")] * 30, dtype=object)
    res = chi2_test(ref, cur)
    assert res.details["new_categories"] == ["__missing__"]
    assert res.drift


def test_permutation_p_value_counts_the_observed_statistic() -> None:
    assert permutation_p_value(5.0, np.zeros(99)) == pytest.approx(1 / 100)
    assert permutation_p_value(0.0, np.zeros(99)) == 1.0
    assert permutation_p_value(1.0, np.array([0.5, 1.0, 2.0])) == pytest.approx(3 / 4)


@pytest.mark.parametrize("test", [psi, jensen_shannon, wasserstein])
def test_permutation_p_value_is_never_zero(test) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(7)
    ref, cur = rng.normal(size=300), rng.normal(5.0, 1.0, size=300)
    res = test(ref, cur, n_permutations=99)
    assert res.p_value == pytest.approx(1 / 100)
    assert res.drift


def test_wasserstein_equals_scipy() -> None:
    rng = np.random.default_rng(2)
    ref, cur = rng.exponential(size=400), rng.exponential(1.3, size=333)
    res = wasserstein(ref, cur, n_permutations=50)
    assert res.statistic == pytest.approx(stats.wasserstein_distance(ref, cur), rel=1e-10)
    assert res.details["normed"] == pytest.approx(res.statistic / ref.std(ddof=1))


def test_js_and_psi_on_categories_match_their_formulas() -> None:
    ref = _cats({"a": 50, "b": 30, "c": 20})
    cur = _cats({"a": 30, "b": 30, "c": 40})
    p, q = np.array([0.5, 0.3, 0.2]), np.array([0.3, 0.3, 0.4])
    js = jensen_shannon(ref, cur, n_permutations=20)
    assert js.statistic == pytest.approx(distance.jensenshannon(p, q, base=2), rel=1e-12)
    assert psi(ref, cur, n_permutations=20).statistic == pytest.approx(
        float(((q - p) * np.log(q / p)).sum()), rel=1e-12
    )


def test_threshold_mode_decides_on_the_statistic() -> None:
    rng = np.random.default_rng(4)
    ref, cur = rng.normal(size=500), rng.normal(0.3, 1, size=500)
    loose = psi(ref, cur, threshold=10.0)
    assert loose.threshold == 10.0
    assert not loose.drift
    assert loose.p_value is not None
    assert psi(ref, cur, threshold=1e-6).drift


@pytest.mark.parametrize("test", [ks_test, psi, jensen_shannon, wasserstein])
def test_no_shift_rarely_alarms(test) -> None:  # type: ignore[no-untyped-def]
    # 40 seeded no-shift pairs: a calibrated test alarms about twice; more than 6 alarms has
    # probability 0.014 for a test at level 0.05 and flags a broken null distribution.
    rng = np.random.default_rng(11)
    kwargs = {} if test is ks_test else {"n_permutations": 200}
    alarms = sum(
        test(rng.normal(size=200), rng.normal(size=200), **kwargs).drift for _ in range(40)
    )
    assert alarms <= 6


@pytest.mark.parametrize(
    ("ref", "cur", "message"),
    [
        (np.full(50, np.nan), np.ones(50), "only missing values"),
        (np.ones(50), np.ones(40), "constant"),
        (np.arange(3.0), np.arange(50.0), "at least 5"),
        (np.array(["a"] * 50, dtype=object), np.arange(50.0), "numeric"),
        (np.r_[np.arange(49.0), np.inf], np.arange(50.0), "infinite"),
    ],
)
def test_numeric_input_errors_name_the_column(
    ref: NDArray[Any], cur: NDArray[Any], message: str
) -> None:
    for test in (ks_test, psi, wasserstein):
        with pytest.raises(MonitorInputError, match=message) as info:
            test(ref, cur, column="kvp")
        assert "kvp" in str(info.value)


def test_categorical_input_errors() -> None:
    with pytest.raises(MonitorInputError, match="single category"):
        chi2_test(np.array(["a"] * 20), np.array(["a"] * 20), column="sex")
    with pytest.raises(MonitorInputError, match="declared categorical"):
        chi2_test(np.arange(20.0), np.arange(20.0), column="sex")
    with pytest.raises(MonitorInputError, match="numeric in one sample"):
        chi2_test(np.array(["a", "b"] * 10), np.arange(20), column="sex")
    with pytest.raises(MonitorInputError, match="only missing"):
        chi2_test(np.array([None] * 20, dtype=object), np.array(["a", "b"] * 10), column="sex")
    with pytest.raises(MonitorInputError, match="alpha"):
        ks_test(np.arange(20.0), np.arange(20.0) + 1, alpha=1.5)
