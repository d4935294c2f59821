"""Subgroup report: speed at realistic sizes and agreement with Fairlearn's MetricFrame.

PYTHONPATH=. .venv/bin/python -m benchmarks.coverage.fairness

Writes ``benchmarks/results/fairness_speed.json``: wall time of ``subgroup_report`` (1000
stratified bootstrap resamples per interval, intersections on) for 10k and 50k cases with two
and three attributes, the number of groups, and the largest absolute difference of the point
estimates (TPR, FPR, AUROC, n) from Fairlearn 0.x ``MetricFrame`` on the same data, with
Fairlearn's time for the point estimates alone (it computes no intervals).
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from fairlearn.metrics import MetricFrame, count, false_positive_rate, true_positive_rate
from sklearn.metrics import roc_auc_score

from monitors.fairness import subgroup_report

RESULTS = Path(__file__).resolve().parents[1] / "results"
THRESHOLD = 0.5


def _data(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "sex": rng.choice(["F", "M"], n),
            "age_band": rng.choice(["<40", "40-65", ">65"], n, p=[0.3, 0.5, 0.2]),
            "site": rng.choice(["a", "b", "c", "d"], n, p=[0.4, 0.3, 0.2, 0.1]),
        }
    )
    y = rng.random(n) < 0.3
    weak = (df["sex"] == "F").to_numpy() & (df["age_band"] == ">65").to_numpy()
    logit = rng.normal(size=n) + np.where(weak, 0.8, 2.0) * y - 1.2
    df["y"] = y.astype(int)
    df["p"] = 1.0 / (1.0 + np.exp(-logit))
    return df


def _fairlearn(df: pd.DataFrame, features: list[str]) -> tuple[pd.DataFrame, float]:
    def tpr(y: np.ndarray, s: np.ndarray) -> float:
        return float(true_positive_rate(y, s >= THRESHOLD))

    def fpr(y: np.ndarray, s: np.ndarray) -> float:
        return float(false_positive_rate(y, s >= THRESHOLD))

    start = time.perf_counter()
    frame = MetricFrame(
        metrics={"tpr": tpr, "fpr": fpr, "auroc": roc_auc_score, "n": count},
        y_true=df["y"].to_numpy(),
        y_pred=df["p"].to_numpy(),
        sensitive_features=df[features],
    )
    return frame.by_group, time.perf_counter() - start


def case(n: int, attributes: list[str]) -> dict[str, Any]:
    df = _data(n, seed=n + len(attributes))
    start = time.perf_counter()
    rep = subgroup_report(
        df["y"].to_numpy(),
        df["p"].to_numpy(),
        THRESHOLD,
        {a: df[a].to_numpy() for a in attributes},
        n_bootstrap=1000,
    )
    ours = time.perf_counter() - start
    by_name = {g.name: g for g in rep.groups}
    worst = 0.0
    fl_seconds = 0.0
    compared = 0
    families = [[a] for a in attributes] + ([attributes] if len(attributes) > 1 else [])
    for features in families:
        table, secs = _fairlearn(df, features)
        fl_seconds += secs
        for key, row in table.iterrows():
            values = key if isinstance(key, tuple) else (key,)
            name = " & ".join(f"{f}={v}" for f, v in zip(features, values, strict=True))
            g = by_name[name]
            worst = max(worst, abs(g.n - row["n"]))
            for metric in ("tpr", "fpr", "auroc"):
                value = g.metric(metric).value
                assert value is not None
                worst = max(worst, abs(value - row[metric]))
            compared += 1
    return {
        "n": n,
        "attributes": attributes,
        "groups": len(rep.groups),
        "n_bootstrap": 1000,
        "radwatch_seconds": ours,
        "fairlearn_point_estimates_seconds": fl_seconds,
        "groups_compared_with_fairlearn": compared,
        "max_abs_difference_vs_fairlearn": worst,
    }


def main() -> None:
    cases = [case(10_000, ["sex", "age_band"]), case(10_000, ["sex", "age_band", "site"]),
             case(50_000, ["sex", "age_band"])]  # fmt: skip
    for c in cases:
        print(json.dumps({k: c[k] for k in ("n", "groups", "radwatch_seconds",
                                            "max_abs_difference_vs_fairlearn")}))  # fmt: skip
    payload = {
        "benchmark": "fairness_speed",
        "cases": cases,
        "machine": {"platform": platform.platform(), "python": platform.python_version()},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "fairness_speed.json"
    path.write_text(json.dumps(payload, indent=2, allow_nan=False) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
