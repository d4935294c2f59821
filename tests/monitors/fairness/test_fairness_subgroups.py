"""Subgroup report: point estimates equal Fairlearn's MetricFrame, small groups are kept and
flagged, the vectorised bootstrap equals explicit resampling, and gaps name the right groups."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import MetricFrame, count, false_positive_rate, true_positive_rate
from sklearn.metrics import roc_auc_score

from monitors.errors import MonitorInputError
from monitors.fairness import _bootstrap as bs
from monitors.fairness import subgroup_report
from monitors.performance import calibration

THRESHOLD = 0.5


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    rng = np.random.default_rng(11)
    n = 3000
    df = pd.DataFrame(
        {
            "sex": rng.choice(["F", "M"], n),
            "age_band": rng.choice(["<40", "40-65", ">65"], n, p=[0.3, 0.5, 0.2]),
            "site": rng.choice(["north", "south", "tiny"], n, p=[0.6, 0.395, 0.005]),
        }
    )
    y = rng.random(n) < 0.3
    weaker = (df["sex"] == "F") & (df["age_band"] == ">65")
    logit = rng.normal(size=n) + np.where(weaker, 0.6, 2.2) * y - 1.2
    df["y"] = y.astype(int)
    df["p"] = 1 / (1 + np.exp(-logit))
    return df


def _frame(df: pd.DataFrame, features: list[str]) -> MetricFrame:
    def tpr(y_true: np.ndarray, score: np.ndarray) -> float:
        return float(true_positive_rate(y_true, score >= THRESHOLD))

    def fpr(y_true: np.ndarray, score: np.ndarray) -> float:
        return float(false_positive_rate(y_true, score >= THRESHOLD))

    return MetricFrame(
        metrics={"tpr": tpr, "fpr": fpr, "auroc": roc_auc_score, "n": count},
        y_true=df["y"].to_numpy(),
        y_pred=df["p"].to_numpy(),
        sensitive_features=df[features],
    )


def test_point_estimates_equal_fairlearn(data: pd.DataFrame) -> None:
    rep = subgroup_report(
        data["y"].to_numpy(),
        data["p"].to_numpy(),
        THRESHOLD,
        {"sex": data["sex"].to_numpy(), "age_band": data["age_band"].to_numpy()},
        n_bootstrap=50,
    )
    by_name = {g.name: g for g in rep.groups}
    checked = 0
    for features in (["sex"], ["age_band"], ["sex", "age_band"]):
        frame = _frame(data, features).by_group
        for key, row in frame.iterrows():
            values = key if isinstance(key, tuple) else (key,)
            name = " & ".join(f"{f}={v}" for f, v in zip(features, values, strict=True))
            g = by_name[name]
            assert g.n == row["n"]
            for metric in ("tpr", "fpr", "auroc"):
                assert g.metric(metric).value == pytest.approx(row[metric], abs=1e-9), (
                    name,
                    metric,
                )
            checked += 1
    assert checked == 2 + 3 + 6
    assert len(rep.groups) == checked


def test_group_ece_equals_the_performance_monitor(data: pd.DataFrame) -> None:
    rep = subgroup_report(
        data["y"], data["p"], THRESHOLD, {"sex": data["sex"].to_numpy()}, n_bootstrap=10
    )
    for g in rep.groups:
        mask = data["sex"].to_numpy() == g.attributes["sex"]
        expected = calibration(data["y"].to_numpy()[mask], data["p"].to_numpy()[mask]).ece
        assert g.ece.value == pytest.approx(expected, abs=1e-12)


def test_too_small_groups_are_reported_not_dropped(data: pd.DataFrame) -> None:
    rep = subgroup_report(
        data["y"], data["p"], THRESHOLD, {"site": data["site"].to_numpy()}, n_bootstrap=100
    )
    tiny = next(g for g in rep.groups if g.name == "site=tiny")
    assert tiny.n < 30
    assert tiny.too_small
    assert rep.too_small_groups == ["site=tiny"]
    assert tiny.tpr.n == tiny.n_pos
    assert all("tiny" not in (gap.max_group + gap.min_group) for gap in rep.gaps)
    assert all(w.group != "site=tiny" for w in rep.worst_vs_rest)


def test_gaps_and_worst_group_find_the_degraded_intersection(data: pd.DataFrame) -> None:
    rep = subgroup_report(
        data["y"],
        data["p"],
        THRESHOLD,
        {"sex": data["sex"].to_numpy(), "age_band": data["age_band"].to_numpy()},
        n_bootstrap=300,
    )
    tpr_gap = next(g for g in rep.gaps if g.family == "sex&age_band" and g.metric == "tpr")
    assert tpr_gap.min_group == "sex=F & age_band=>65"
    worst = next(w for w in rep.worst_vs_rest if w.family == "sex&age_band" and w.metric == "tpr")
    assert worst.group == "sex=F & age_band=>65"
    assert worst.upper is not None
    assert worst.upper < 0.0
    back = json.loads(json.dumps(rep.to_dict(), allow_nan=False))
    assert {"groups", "gaps", "worst_vs_rest"} <= set(back)


def test_vectorised_bootstrap_equals_explicit_resampling() -> None:
    rng = np.random.default_rng(3)
    y = rng.random(400) < 0.4
    s = np.round(rng.random(400), 2)
    g = bs.prepare(y, s, THRESHOLD)
    draw_rng = np.random.default_rng(99)
    wp = bs._counts(draw_rng, 1, g.n_pos)[0]
    wn = bs._counts(draw_rng, 1, g.n - g.n_pos)[0]
    scores = np.r_[g.pos_score, g.neg_score]
    labels = np.r_[np.ones(g.n_pos), np.zeros(g.n - g.n_pos)]
    reps = np.r_[wp, wn].astype(int)
    rs, ry = np.repeat(scores, reps), np.repeat(labels, reps)
    # One resample computed from its multiplicities (as draws() does) and by materialising it.
    cn = bs._cum(wn[None, :])
    auc = (wp * (cn[0, g.pos_lo] + cn[0, g.pos_hi])).sum() / (2.0 * g.n_pos * (g.n - g.n_pos))
    assert auc == pytest.approx(roc_auc_score(ry, rs), abs=1e-12)
    # ECE with the group's fixed bins: bin membership follows each original case.
    pooled_bin = np.empty(g.n, dtype=int)
    pos_bin = np.repeat(np.arange(g.n_bins), np.diff(g.pos_bins))
    neg_bin = np.repeat(np.arange(g.n_bins), np.diff(g.neg_bins))
    pooled_bin[: g.n_pos], pooled_bin[g.n_pos :] = pos_bin, neg_bin
    resid = np.repeat(labels - scores, reps)
    bins = np.repeat(pooled_bin, reps)
    ece = np.abs(np.bincount(bins, weights=resid, minlength=g.n_bins)).sum() / g.n
    rp = bs._cum((wp * (1 - g.pos_score))[None, :])[0]
    rn = bs._cum((wn * g.neg_score)[None, :])[0]
    fast = (
        np.abs(
            (rp[g.pos_bins[1:]] - rp[g.pos_bins[:-1]]) - (rn[g.neg_bins[1:]] - rn[g.neg_bins[:-1]])
        ).sum()
        / g.n
    )
    assert fast == pytest.approx(ece, abs=1e-12)


def test_missing_attribute_values_form_their_own_group() -> None:
    rng = np.random.default_rng(0)
    y = rng.random(200) < 0.5
    s = rng.random(200)
    sex = np.array(["F", "M", None, np.nan] * 50, dtype=object)
    rep = subgroup_report(y, s, THRESHOLD, {"sex": sex}, n_bootstrap=20)
    assert {g.name for g in rep.groups} == {"sex=F", "sex=M", "sex=missing"}
    assert next(g for g in rep.groups if g.name == "sex=missing").n == 100


def test_bad_groups_are_refused() -> None:
    with pytest.raises(MonitorInputError, match="one value per case"):
        subgroup_report([0, 1, 0, 1], [0.1, 0.9, 0.2, 0.8], 0.5, {"sex": np.array(["F", "M"])})
    with pytest.raises(MonitorInputError, match="at least one group"):
        subgroup_report([0, 1], [0.1, 0.9], 0.5, {})


def test_deterministic_for_a_seed(data: pd.DataFrame) -> None:
    args = (data["y"], data["p"], THRESHOLD, {"sex": data["sex"].to_numpy()})
    a = subgroup_report(*args, n_bootstrap=100, seed=4).to_dict()
    b = subgroup_report(*args, n_bootstrap=100, seed=4).to_dict()
    assert a == b
