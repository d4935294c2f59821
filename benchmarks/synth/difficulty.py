"""How hard the synthetic world is for the demo model (issue 12): per-finding AUROC, and the
subgroup TPR gaps a safety officer would see.

Trains the demo model (``TrainConfig.demo()``, the same run ``radwatch demo`` makes), then scores
a fresh validation stream (other patients, same sites) and reports, against the reported labels
(what a hospital has) and against the generator's ground truth (what it cannot have):

- AUROC per finding with a DeLong 95% interval; the target band is about 0.78-0.95, where real
  chest X-ray classifiers sit (CheXpert / MIMIC-CXR);
- the operating threshold per finding that reaches 0.85 sensitivity on the training run's own
  validation split (how the demo picks its operating point);
- at that threshold, every subgroup family's worst group against the rest (TPR difference with
  a bootstrap 95% interval): at least one should exclude zero.

    PYTHONPATH=. .venv/bin/python -m benchmarks.synth.difficulty [--n 3000] [--seed 0]

Writes ``benchmarks/results/synth_difficulty.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from benchmarks.drift.common import machine
from monitors.fairness import subgroup_report
from monitors.performance.auroc import auroc_delong
from pipelines.contract import FINDINGS
from pipelines.model import predict
from pipelines.preprocess import to_model_input
from pipelines.synth import RadiographGenerator, Study
from pipelines.train import TrainConfig, operating_thresholds, train
from services.monitoring.kinds import age_band

RESULTS = Path(__file__).resolve().parents[1] / "results"
#: Validation studies start here in the training stream (far past the training run's own).
VALIDATION_START = 1_000_000


def _attributes(studies: list[Study]) -> dict[str, npt.NDArray[np.object_]]:
    return {
        "sex": np.array([s.sex for s in studies], dtype=object),
        "age_band": np.array([age_band(s.age) for s in studies], dtype=object),
        "site": np.array([s.site for s in studies], dtype=object),
        "view_position": np.array([s.view_position for s in studies], dtype=object),
        "vendor": np.array([s.manufacturer for s in studies], dtype=object),
        "race_ethnicity": np.array([s.race_ethnicity for s in studies], dtype=object),
    }


def _auroc(y: npt.NDArray[np.int8], p: npt.NDArray[np.float32]) -> dict[str, Any]:
    ci = auroc_delong(y, p)
    return {"value": ci.value, "lower": ci.lower, "upper": ci.upper, "n_pos": int(y.sum())}


def run(n: int, seed: int) -> dict[str, Any]:
    started = time.perf_counter()
    result = train(TrainConfig.demo())
    train_s = time.perf_counter() - started
    thresholds = operating_thresholds(result.profile)
    gen = RadiographGenerator(seed=TrainConfig.demo().seed)
    studies = gen.generate(n, start_index=VALIDATION_START + seed * n)
    probs, _ = predict(result.model, to_model_input([s.image for s in studies]))
    groups = _attributes(studies)
    findings: dict[str, Any] = {}
    for j, finding in enumerate(FINDINGS):
        reported = np.array([s.labels[finding] for s in studies], dtype=np.int8)
        truth = np.array([s.truth[finding] for s in studies], dtype=np.int8)
        report = subgroup_report(
            reported, probs[:, j], thresholds[finding], groups, intersections=False, seed=seed
        )
        worst = [w.to_dict() for w in report.worst_vs_rest if w.metric == "tpr"]
        findings[finding] = {
            "auroc_reported_labels": _auroc(reported, probs[:, j]),
            "auroc_ground_truth": _auroc(truth, probs[:, j]),
            "label_noise": {
                "missed": float(((truth == 1) & (reported == 0)).sum() / max(truth.sum(), 1)),
                "false_calls": float(
                    ((truth == 0) & (reported == 1)).sum() / max(n - truth.sum(), 1)
                ),
            },
            "threshold": thresholds[finding],
            "tpr_worst_vs_rest": worst,
            "gaps_excluding_zero": [
                f"{w['family']}={w['group']}"
                for w in worst
                if w["upper"] is not None and w["upper"] < 0
            ],
        }
    return {
        "benchmark": "synth_difficulty",
        "date": time.strftime("%Y-%m-%d"),
        "command": f"PYTHONPATH=. .venv/bin/python -m benchmarks.synth.difficulty --n {n} "
        f"--seed {seed}",
        "machine": machine(),
        "train_seconds": round(train_s, 1),
        "train_metrics": result.metrics,
        "n_validation": n,
        "findings": findings,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=3000, help="validation studies")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    payload = run(args.n, args.seed)
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "synth_difficulty.json"
    path.write_text(json.dumps(payload, indent=2, allow_nan=False) + "\n")
    for finding, row in payload["findings"].items():
        a, t = row["auroc_reported_labels"], row["auroc_ground_truth"]
        print(
            f"{finding:13s} AUROC {a['value']:.3f} [{a['lower']:.3f}, {a['upper']:.3f}] "
            f"(truth {t['value']:.3f}); threshold {row['threshold']:.3f}; "
            f"gaps excluding 0: {', '.join(row['gaps_excluding_zero']) or 'none'}"
        )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
