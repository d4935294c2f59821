"""Label-free performance estimation (issue 3, acceptance 5): radwatch's CBPE against the true
metrics of each chunk, with NannyML's CBPE on the same chunks.

PYTHONPATH=. .venv/bin/python -m benchmarks.estimate.run [--chunks 12] [--chunk-size 5000]

Writes ``benchmarks/results/estimate_cbpe.json``. Acceptance: mean absolute error of the
estimated AUROC against the realised AUROC over >= 10 chunks <= 0.01.

Data: synthetic model outputs. Three patient/acquisition covariates x ~ N(mu, I); the true
P(y = 1 | x) is logistic in x; the model's score is a monotone but miscalibrated transform of
the true logit (over-confident, shifted), so the calibrator has real work. Covariate shift:
the analysis chunks move mu step by step (older patients, another scanner mix), which changes
prevalence and the score distribution but not P(y | score): the setting CBPE is built for.
A second scenario, ``concept_partial``, breaks that assumption on purpose (the model ignores
one covariate that shifts), to show what the estimate does when its assumption fails.

NannyML runs in .venv-bench through ``peer_nannyml.py`` on the same rows (never a radwatch
dependency). Without that venv its column says ``skipped``.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from monitors.estimate import estimate_performance

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
BENCH_PYTHON = ROOT / ".venv-bench" / "bin" / "python"
BETA = np.array([1.2, -0.8, 0.6])
THRESHOLD = 0.5


def _sample(
    rng: np.random.Generator, n: int, mu: np.ndarray, scenario: str
) -> tuple[np.ndarray, np.ndarray]:
    x = rng.normal(mu, 1.0, (n, 3))
    logit = x @ BETA - 1.0
    y = rng.random(n) < 1.0 / (1.0 + np.exp(-logit))
    seen = logit if scenario == "covariate" else x[:, :2] @ BETA[:2] - 1.0
    score = 1.0 / (1.0 + np.exp(-(1.6 * seen + 0.4)))
    return score, y


def _shifts(chunks: int) -> list[np.ndarray]:
    steps = np.linspace(-0.6, 0.9, chunks)
    return [np.array([s, -0.5 * s, 0.8 * s]) for s in steps]


def _nannyml(frame: pd.DataFrame) -> dict[str, Any]:
    if not BENCH_PYTHON.exists():
        return {"status": "skipped", "reason": ".venv-bench not found"}
    with tempfile.TemporaryDirectory() as tmp:
        data, out = Path(tmp) / "data.csv", Path(tmp) / "out.json"
        frame.to_csv(data, index=False)
        script = ROOT / "benchmarks" / "estimate" / "peer_nannyml.py"
        done = subprocess.run(
            [str(BENCH_PYTHON), str(script), str(data), str(out)],
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        if done.returncode != 0:
            return {"status": "failed", "stderr_tail": done.stderr[-2000:]}
        return {"status": "ok", **json.loads(out.read_text())}


def run_scenario(
    scenario: str, chunks: int, chunk_size: int, n_reference: int, seed: int
) -> dict[str, Any]:
    rng = np.random.default_rng([seed, len(scenario)])
    s_ref, y_ref = _sample(rng, n_reference, np.zeros(3), scenario)
    rows: list[dict[str, Any]] = []
    frames = [pd.DataFrame({"p": s_ref, "y": y_ref.astype(int), "period": "reference",
                            "chunk": -1})]  # fmt: skip
    ours_seconds = 0.0
    for i, mu in enumerate(_shifts(chunks)):
        s, y = _sample(rng, chunk_size, mu, scenario)
        start = time.perf_counter()
        est = estimate_performance(s_ref, y_ref, s, THRESHOLD, n_draws=200, seed=i)
        ours_seconds += time.perf_counter() - start
        pred = s >= THRESHOLD
        truth = {
            "auroc": float(roc_auc_score(y, s)),
            "sensitivity": float((pred & y).sum() / y.sum()),
            "specificity": float((~pred & ~y).sum() / (~y).sum()),
        }
        rows.append(
            {
                "chunk": i,
                "shift": float(mu[0]),
                "prevalence": float(y.mean()),
                "truth": truth,
                "radwatch": {k: est.metrics()[k].to_dict() for k in truth},
            }
        )
        frames.append(pd.DataFrame({"p": s, "y": y.astype(int), "period": "analysis",
                                    "chunk": i}))  # fmt: skip
    frame = pd.concat(frames, ignore_index=True)
    frame["pred"] = (frame["p"] >= THRESHOLD).astype(int)
    peer = _nannyml(frame)
    summary: dict[str, Any] = {"radwatch": {}, "nannyml": {}}
    for metric, peer_key in (("auroc", "roc_auc"), ("sensitivity", "sensitivity"),
                             ("specificity", "specificity")):  # fmt: skip
        truth = np.array([r["truth"][metric] for r in rows])
        ours = np.array([r["radwatch"][metric]["value"] for r in rows])
        lo = np.array([r["radwatch"][metric]["lower"] for r in rows])
        hi = np.array([r["radwatch"][metric]["upper"] for r in rows])
        summary["radwatch"][metric] = {
            "mae": float(np.mean(np.abs(ours - truth))),
            "max_abs_error": float(np.max(np.abs(ours - truth))),
            "interval_covers_truth": int(np.sum((lo <= truth) & (truth <= hi))),
        }
        if peer.get("status") == "ok":
            theirs = np.array([c[peer_key]["value"] for c in peer["chunks"]])
            for r, v in zip(rows, theirs, strict=True):
                r.setdefault("nannyml", {})[metric] = float(v)
            summary["nannyml"][metric] = {
                "mae": float(np.mean(np.abs(theirs - truth))),
                "max_abs_error": float(np.max(np.abs(theirs - truth))),
            }
    return {
        "scenario": scenario,
        "chunks": chunks,
        "chunk_size": chunk_size,
        "n_reference": n_reference,
        "summary": summary,
        "radwatch_seconds_total": ours_seconds,
        "nannyml_status": peer.get("status"),
        "nannyml_version": peer.get("version"),
        "nannyml_seconds": peer.get("seconds"),
        "nannyml_error": peer.get("stderr_tail") or peer.get("reason"),
        "per_chunk": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chunks", type=int, default=12)
    parser.add_argument("--chunk-size", type=int, default=5000)
    parser.add_argument("--reference", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    start = time.perf_counter()
    scenarios = [
        run_scenario(name, args.chunks, args.chunk_size, args.reference, args.seed)
        for name in ("covariate", "concept_partial")
    ]
    main_mae = scenarios[0]["summary"]["radwatch"]["auroc"]["mae"]
    payload = {
        "benchmark": "estimate",
        "acceptance": {
            "auroc_mae_max": 0.01,
            "radwatch_auroc_mae": main_mae,
            "pass": main_mae <= 0.01,
        },
        "threshold": THRESHOLD,
        "scenarios": scenarios,
        "machine": {"platform": platform.platform(), "python": platform.python_version()},
        "wall_seconds": time.perf_counter() - start,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "estimate_cbpe.json"
    path.write_text(json.dumps(payload, indent=2, allow_nan=False) + "\n")
    for s in scenarios:
        print(s["scenario"], json.dumps(s["summary"]), s["nannyml_status"])
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
