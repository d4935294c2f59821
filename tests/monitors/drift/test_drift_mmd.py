"""MMD, classifier and BBSD tests against direct computations and on seeded shifts."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray
from scipy import stats
from scipy.spatial.distance import pdist
from sklearn.metrics import roc_auc_score

from monitors.drift.mmd import bbsd_test, classifier_test, median_bandwidth, mmd_test
from monitors.errors import MonitorInputError


def _naive_mmd2(x: NDArray[Any], y: NDArray[Any], bandwidth: float) -> float:
    def k(a: NDArray[Any], b: NDArray[Any]) -> NDArray[Any]:
        return np.asarray(np.exp(-((a[:, None] - b[None]) ** 2).sum(-1) / (2 * bandwidth**2)))

    n, m = len(x), len(y)
    kxx, kyy = k(x, x), k(y, y)
    return float(
        (kxx.sum() - np.trace(kxx)) / (n * (n - 1))
        + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        - 2 * k(x, y).mean()
    )


def test_statistic_equals_direct_unbiased_mmd2() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(90, 6)), rng.normal(0.3, 1.0, size=(70, 6))
    res = mmd_test(x, y, n_permutations=50)
    expected = _naive_mmd2(x, y, res.details["bandwidth"])
    assert res.statistic == pytest.approx(expected, abs=1e-6)


def test_median_heuristic_is_the_median_pairwise_distance() -> None:
    x = np.random.default_rng(1).normal(size=(300, 4))
    assert median_bandwidth(x) == pytest.approx(float(np.median(pdist(x))), rel=1e-6)


def test_detects_mean_shift() -> None:
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(200, 32)), rng.normal(size=(200, 32))
    y[:, :4] += 0.5
    res = mmd_test(x, y, n_permutations=200)
    assert res.drift
    assert res.p_value < 0.01


def test_identical_distributions_rarely_alarm() -> None:
    # 20 seeded no-shift pairs: a calibrated test alarms about once; more than 4 alarms has
    # probability 0.016 at level 0.05.
    rng = np.random.default_rng(3)
    results = [
        mmd_test(rng.normal(size=(100, 16)), rng.normal(size=(100, 16)), n_permutations=100, seed=s)
        for s in range(20)
    ]
    assert sum(r.drift for r in results) <= 4
    assert all(r.p_value >= 1 / 101 for r in results)


def test_p_value_is_never_zero() -> None:
    rng = np.random.default_rng(4)
    res = mmd_test(rng.normal(size=(50, 8)), rng.normal(5.0, 1.0, size=(50, 8)), n_permutations=49)
    assert res.p_value == pytest.approx(1 / 50)


def test_max_n_subsamples_and_records_it() -> None:
    rng = np.random.default_rng(5)
    res = mmd_test(
        rng.normal(size=(400, 4)), rng.normal(size=(300, 4)), n_permutations=20, max_n=100
    )
    assert (res.n_reference, res.n_current) == (100, 100)
    assert res.details["subsampled"]
    assert res.details["n_reference_input"] == 400


def test_768_dims_10k_per_side_runs_in_bounded_memory() -> None:
    rng = np.random.default_rng(6)
    x = rng.normal(size=(10_000, 768)).astype(np.float32)
    y = rng.normal(size=(10_000, 768)).astype(np.float32)
    y[:, 0] += 0.3
    res = mmd_test(x, y, n_permutations=50, max_n=None)
    assert res.n_reference == 10_000
    assert res.drift


def test_classifier_auroc_and_p_value() -> None:
    rng = np.random.default_rng(7)
    x, y = rng.normal(size=(400, 10)), rng.normal(size=(400, 10))
    y[:, 0] += 0.6
    res = classifier_test(x, y)
    assert res.drift
    assert res.statistic > 0.6
    same = classifier_test(rng.normal(size=(400, 10)), rng.normal(size=(400, 10)))
    assert not same.drift
    assert 0.4 < same.statistic < 0.6


def test_classifier_auroc_equals_sklearn_on_heldout_scores() -> None:
    from monitors.drift.mmd import _auroc

    rng = np.random.default_rng(8)
    pos, neg = rng.normal(0.5, 1, size=130), rng.normal(size=170)
    labels = np.r_[np.ones(130), np.zeros(170)]
    assert _auroc(pos, neg) == pytest.approx(roc_auc_score(labels, np.r_[pos, neg]), rel=1e-12)


def test_bbsd_is_bonferroni_over_per_output_ks() -> None:
    rng = np.random.default_rng(9)
    ref, cur = rng.uniform(size=(300, 4)), rng.uniform(size=(250, 4))
    cur[:, 2] = cur[:, 2] ** 1.3
    res = bbsd_test(ref, cur)
    p_each = [stats.ks_2samp(ref[:, j], cur[:, j]).pvalue for j in range(4)]
    assert res.p_value == pytest.approx(min(1.0, 4 * min(p_each)), rel=1e-12)
    assert res.details["ks_p_values"] == pytest.approx(p_each)


def test_input_errors() -> None:
    rng = np.random.default_rng(10)
    with pytest.raises(MonitorInputError, match="dims"):
        mmd_test(rng.normal(size=(20, 4)), rng.normal(size=(20, 5)))
    bad = rng.normal(size=(20, 4))
    bad[3, 1] = np.nan
    with pytest.raises(MonitorInputError, match="NaN"):
        mmd_test(bad, rng.normal(size=(20, 4)))
    with pytest.raises(MonitorInputError, match="at least 5"):
        classifier_test(rng.normal(size=(3, 4)), rng.normal(size=(20, 4)))
    with pytest.raises(MonitorInputError, match="bandwidth"):
        mmd_test(rng.normal(size=(20, 4)), rng.normal(size=(20, 4)), bandwidth=-1.0)
