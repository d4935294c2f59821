"""Simulated coverage of radwatch's 95% intervals: Wilson (threshold metrics), DeLong (AUROC)
and the stratified percentile bootstrap of the subgroup report (TPR, FPR, AUROC).

PYTHONPATH=. .venv/bin/python -m benchmarks.coverage.run [--trials 1000] [--wilson-trials 20000]

Writes ``benchmarks/results/coverage_ci.json``. Acceptance (issue 3): every interval's coverage
within [0.93, 0.97]. Each coverage comes with its own Monte-Carlo 95% interval (Wilson on
trials), so a 0.945 from 1000 trials reads as 0.930-0.958.

Data model for the AUROC/TPR/FPR intervals: binormal logits, logit | y ~ N(mu_y, 1) with
mu_1 = 1, mu_0 = -1, score = sigmoid(logit), threshold 0.5. The truths are analytic:
TPR = Phi(mu_1), FPR = Phi(mu_0), AUROC = Phi((mu_1 - mu_0) / sqrt(2)). Group sizes and
prevalences cover a small subgroup (n = 100, 10% positives: 10 positives) up to n = 1000.
Scope: the acceptance band is checked for groups with at least 30 expected positives and 30
expected negatives (``in_scope``). Smaller groups are reported too, and their intervals do
undercover (a percentile bootstrap of a TPR on 10 positives is degenerate whenever all 10 are
detected); that is what the subgroup report's ``too_small`` rule and a larger ``--min-n`` are
for. ECE is left out on purpose: the binned ECE estimator is biased upwards for a calibrated model
(its truth is 0 and every estimate is > 0), so its bootstrap interval describes variability,
not coverage of the truth.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from monitors.fairness import _bootstrap as bs
from monitors.performance import auroc_delong, wilson_interval

RESULTS = Path(__file__).resolve().parents[1] / "results"
MU1, MU0 = 1.0, -1.0
TRUTH = {
    "tpr": float(stats.norm.cdf(MU1)),
    "fpr": float(stats.norm.cdf(MU0)),
    "auroc": float(stats.norm.cdf((MU1 - MU0) / math.sqrt(2.0))),
}
WILSON_CASES = [(20, 0.9), (50, 0.9), (100, 0.95), (200, 0.85), (300, 0.3), (500, 0.9),
                (1000, 0.97)]  # fmt: skip
GROUP_CASES = [(100, 0.1), (200, 0.3), (500, 0.2), (1000, 0.3)]
MIN_EVENTS = 30


def _mc(k: int, n: int) -> dict[str, float | int]:
    k, n = int(k), int(n)
    lo, hi = wilson_interval(k, n)
    return {"coverage": k / n, "mc_lower": lo, "mc_upper": hi, "trials": n}


def wilson_coverage(trials: int, seed: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    rows = []
    for n, p in WILSON_CASES:
        xs = rng.binomial(n, p, trials)
        hits = 0
        cache: dict[int, tuple[float, float]] = {}
        for x in xs.tolist():
            lo, hi = cache.setdefault(x, wilson_interval(x, n))
            hits += lo <= p <= hi
        support = np.arange(n + 1)
        covered = [lo <= p <= hi for lo, hi in (wilson_interval(int(k), n) for k in support)]
        exact = float(stats.binom.pmf(support, n, p)[np.array(covered)].sum())
        rows.append({"n": n, "p": p, "exact_coverage": exact, **_mc(hits, trials)})
    return rows


def group_coverage(trials: int, n_bootstrap: int, seed: int) -> list[dict[str, Any]]:
    rows = []
    for case, (n, prevalence) in enumerate(GROUP_CASES):
        rng = np.random.default_rng([seed, case])
        hits = {k: 0 for k in ("tpr", "fpr", "auroc")}
        delong_hits = 0
        used = 0
        start = time.perf_counter()
        for _ in range(trials):
            y = rng.random(n) < prevalence
            if y.all() or not y.any():
                continue
            used += 1
            score = 1.0 / (1.0 + np.exp(-rng.normal(np.where(y, MU1, MU0), 1.0)))
            g = bs.prepare(y, score, 0.5)
            est = bs.point(g)
            draws = bs.draws(g, n_bootstrap, rng)
            for k in hits:
                lo, hi = np.quantile(draws[k], [0.025, 0.975])
                hits[k] += int(bool(lo <= TRUTH[k] <= hi and np.isfinite(est[k])))
            d = auroc_delong(y, score)
            delong_hits += bool(d.lower is not None and d.lower <= TRUTH["auroc"] <= (d.upper or 0))
        rows.append(
            {
                "n": n,
                "prevalence": prevalence,
                "expected_positives": n * prevalence,
                "in_scope": min(n * prevalence, n * (1 - prevalence)) >= MIN_EVENTS,
                "bootstrap": {k: _mc(v, used) for k, v in hits.items()},
                "delong_auroc": _mc(delong_hits, used),
                "seconds": time.perf_counter() - start,
            }
        )
        print(f"  n={n} prevalence={prevalence}: "
              + ", ".join(f"{k} {v / used:.3f}" for k, v in hits.items())
              + f", delong {delong_hits / used:.3f}", flush=True)  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=1000, help="trials per group case")
    parser.add_argument("--wilson-trials", type=int, default=20000)
    parser.add_argument("--bootstrap", type=int, default=1000, help="resamples per interval")
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    start = time.perf_counter()
    wilson_rows = wilson_coverage(args.wilson_trials, args.seed)
    group_rows = group_coverage(args.trials, args.bootstrap, args.seed)
    for row in wilson_rows:
        row["within_band"] = 0.93 <= row["coverage"] <= 0.97
    for row in group_rows:
        for c in [*row["bootstrap"].values(), row["delong_auroc"]]:
            c["within_band"] = 0.93 <= c["coverage"] <= 0.97
    in_scope = [
        c["within_band"]
        for r in group_rows
        if r["in_scope"]
        for c in [*r["bootstrap"].values(), r["delong_auroc"]]
    ]
    payload = {
        "benchmark": "coverage",
        "nominal": 0.95,
        "acceptance_band": [0.93, 0.97],
        "in_scope_within_band": f"{sum(in_scope)}/{len(in_scope)}",
        "wilson_within_band": f"{sum(r['within_band'] for r in wilson_rows)}/{len(wilson_rows)}",
        "truth": TRUTH,
        "wilson": wilson_rows,
        "groups": group_rows,
        "n_bootstrap": args.bootstrap,
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "numpy": np.__version__,
        },
        "wall_seconds": time.perf_counter() - start,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "coverage_ci.json"
    path.write_text(json.dumps(payload, indent=2, allow_nan=False) + "\n")
    print(
        f"wrote {path}; in [0.93, 0.97]: Wilson {payload['wilson_within_band']}, "
        f"groups in scope {payload['in_scope_within_band']}"
    )


if __name__ == "__main__":
    main()
