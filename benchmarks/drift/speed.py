"""Acceptance 3: speed and peak memory, ours and Evidently's side by side in one run.

* Tabular: 32 numeric + 8 categorical columns x 100,000 rows per side; our ``run_drift`` with
  its defaults against Evidently's ``DataDriftPreset`` defaults.
* Embeddings: 768 dims, 5,000 vs 5,000; our ``mmd_test`` with 500 permutations against each of
  Evidently's embedding drift methods at their defaults.

Each of ours runs in a fresh spawned process (so peak RSS is its own); Evidently runs in the
benchmark venv through ``peer_evidently.py``. Timings exclude data generation and file I/O.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from benchmarks.drift.common import run_isolated

ROOT = Path(__file__).resolve().parents[2]
BENCH_PYTHON = ROOT / ".venv-bench" / "bin" / "python"
PEER = Path(__file__).resolve().parent / "peer_evidently.py"
ROWS = 100_000
VENDORS = np.array(
    ["GE", "Siemens", "Philips", "Agfa", "Fuji", "Canon", "Konica", "Carestream"], dtype=object
)


def tabular_data(seed: int, shift: float) -> dict[str, npt.NDArray[Any]]:
    """Two numeric columns and one categorical column are shifted in the current sample."""
    rng = np.random.default_rng(seed)
    data: dict[str, npt.NDArray[Any]] = {}
    for i in range(32):
        data[f"num_{i}"] = rng.normal(shift if i < 2 else 0.0, 1.0, size=ROWS)
    for i in range(8):
        p = np.linspace(1.0, 3.0, VENDORS.size)
        if i == 0 and shift:
            p = p[::-1]
        data[f"cat_{i}"] = VENDORS[rng.choice(VENDORS.size, size=ROWS, p=p / p.sum())]
    return data


def _tabular_setup() -> tuple[dict[str, Any], dict[str, Any]]:
    import monitors.drift  # noqa: F401  (import cost is not part of the test)

    return tabular_data(1, 0.0), tabular_data(2, 0.05)


def _tabular_work(data: tuple[dict[str, Any], dict[str, Any]]) -> dict[str, Any]:
    import time

    from monitors.drift import DriftConfig, run_drift

    times = []
    for _ in range(3):
        start = time.perf_counter()
        report = run_drift(data[0], data[1], DriftConfig())
        times.append(time.perf_counter() - start)
    return {
        "drift": report.drift,
        "drifted_columns": report.drifted_columns,
        "seconds_each_call": times,
    }


def embedding_data(seed: int) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    rng = np.random.default_rng(seed)
    ref = rng.normal(size=(5000, 768)).astype(np.float32)
    cur = rng.normal(size=(5000, 768)).astype(np.float32)
    return ref, cur


def _mmd_setup() -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    import monitors.drift.mmd  # noqa: F401  (import cost is not part of the test)

    return embedding_data(3)


def _mmd_work(data: tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]) -> dict[str, Any]:
    import time

    from monitors.drift import mmd_test

    times = []
    for _ in range(3):
        start = time.perf_counter()
        res = mmd_test(data[0], data[1], n_permutations=500)
        times.append(time.perf_counter() - start)
    return {"p_value": res.p_value, "seconds_each_call": times}


def _evidently(*args: str) -> dict[str, Any]:
    if not BENCH_PYTHON.exists():
        return {"skipped": f"{BENCH_PYTHON} not found; create the benchmark venv (README)"}
    proc = subprocess.run(
        [str(BENCH_PYTHON), str(PEER), *args],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    if proc.returncode != 0:
        return {"error": proc.stderr[-2000:]}
    out: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


def run() -> dict[str, Any]:
    ours_tab = run_isolated(_tabular_setup, _tabular_work)
    tab_calls = ours_tab["result"]["seconds_each_call"]
    print(f"  ours tabular: {tab_calls}", flush=True)
    ours_mmd = run_isolated(_mmd_setup, _mmd_work)
    calls = ours_mmd["result"]["seconds_each_call"]
    print(f"  ours MMD 768d 5k/5k 500 perms: {calls}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        ref, cur = _tabular_setup()
        np.savez(f"{tmp}/ref.npz", **ref)
        np.savez(f"{tmp}/cur.npz", **cur)
        ev_tab = _evidently("tabular", f"{tmp}/ref.npz", f"{tmp}/cur.npz")
        print(f"  evidently tabular: {ev_tab.get('seconds')}", flush=True)
        emb_ref, emb_cur = embedding_data(3)
        np.save(f"{tmp}/ref.npy", emb_ref)
        np.save(f"{tmp}/cur.npy", emb_cur)
        ev_emb = _evidently("embeddings", f"{tmp}/ref.npy", f"{tmp}/cur.npy")
        ev_times = {k: v.get("seconds") for k, v in ev_emb.items() if isinstance(v, dict)}
        print(f"  evidently embeddings: {ev_times}", flush=True)
    speedup = ev_tab["seconds"] / tab_calls[0] if "seconds" in ev_tab else None
    return {
        "tabular": {
            "rows_per_side": ROWS,
            "numeric_columns": 32,
            "categorical_columns": 8,
            "ours_run_drift": ours_tab,
            "ours_first_call_seconds": tab_calls[0],
            "speedup_basis": "Evidently's one run against our first call in a fresh process",
            "evidently_data_drift_preset": ev_tab,
            "speedup": speedup,
            "target_speedup": 30.0,
            "meets_target": speedup is not None and speedup >= 30.0,
        },
        "embedding_mmd": {
            "dims": 768,
            "n_per_side": 5000,
            "n_permutations": 500,
            "ours_mmd": ours_mmd,
            "ours_first_call_seconds": calls[0],
            "ours_best_seconds": min(calls),
            "target_seconds": 3.0,
            "meets_target": max(calls) <= 3.0,
            "evidently_embedding_methods": ev_emb,
        },
    }
