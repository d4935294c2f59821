"""Acceptance 4: detection delay of the online detector on a stream where a vendor change
starts at a known event, at ERT = 500 and 2000; alibi-detect's ``MMDDriftOnline`` on the same
streams and ERTs when it is installed in the benchmark venv.

Stream: ``CHANGE_AT`` no-shift events from the site's pool, then vendor-change events (same
site, scanner replaced). Runs that alarm before the change count as false alarms and are left
out of the delay. Delay = index of the alarm - ``CHANGE_AT`` (events after the change).
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from benchmarks.drift import synth_data
from benchmarks.drift.speed import BENCH_PYTHON
from monitors.drift import OnlineMMDDetector

CHANGE_AT = 100
POST_EVENTS = 1000
WINDOW = 50
PEER_ALIBI = Path(__file__).resolve().parent / "peer_alibi.py"


def _streams(runs: int, seed: int) -> npt.NDArray[np.float32]:
    pools = synth_data.pools()
    pre, post = pools["none"]["emb"], pools["vendor_change"]["emb"]
    out = np.empty((runs, CHANGE_AT + POST_EVENTS, pre.shape[1]), dtype=np.float32)
    for r in range(runs):
        rng = np.random.default_rng([seed, r])
        out[r, :CHANGE_AT] = pre[rng.permutation(pre.shape[0])[:CHANGE_AT]]
        out[r, CHANGE_AT:] = post[rng.permutation(post.shape[0])[:POST_EVENTS]]
    return out


def _summary(alarms: list[int | None]) -> dict[str, Any]:
    false = [a for a in alarms if a is not None and a <= CHANGE_AT]
    delays = [a - CHANGE_AT for a in alarms if a is not None and a > CHANGE_AT]
    missed = sum(a is None for a in alarms)
    return {
        "runs": len(alarms),
        "false_alarms_before_change": len(false),
        "missed_within_post_events": missed,
        "mean_delay": float(np.mean(delays)) if delays else None,
        "median_delay": float(np.median(delays)) if delays else None,
        "delays": delays,
    }


def run(*, erts: tuple[int, ...] = (500, 2000), runs: int = 50, seed: int = 0) -> dict[str, Any]:
    reference = synth_data.pools()["reference"]["emb"]
    streams = _streams(runs, seed)
    ours: dict[str, Any] = {}
    for ert in erts:
        start = time.perf_counter()
        det = OnlineMMDDetector.calibrate(reference, ert=ert, window_size=WINDOW, seed=seed)
        calib_s = time.perf_counter() - start
        alarms: list[int | None] = []
        start = time.perf_counter()
        for stream in streams:
            det.reset()
            result = det.update(stream[:CHANGE_AT])
            for begin in range(CHANGE_AT, stream.shape[0], 25):
                if result.alarm_at is not None:
                    break
                result = det.update(stream[begin : begin + 25])
            alarms.append(result.alarm_at)
        ours[str(ert)] = {
            **_summary(alarms),
            "calibration_seconds": calib_s,
            "stream_seconds": time.perf_counter() - start,
        }
        print(f"  ours ERT={ert}: mean delay {ours[str(ert)]['mean_delay']}", flush=True)
    alibi: dict[str, Any] = {"skipped": "alibi-detect not installed in .venv-bench"}
    if BENCH_PYTHON.exists():
        alibi = {}
        with tempfile.TemporaryDirectory() as tmp:
            np.save(f"{tmp}/ref.npy", reference)
            np.save(f"{tmp}/streams.npy", streams)
            for ert in erts:
                # One process per ERT: alibi's threshold set-up at large ERT is slow and memory
                # hungry, and a failure there should not lose the other ERT's numbers.
                proc = subprocess.run(
                    [
                        str(BENCH_PYTHON),
                        str(PEER_ALIBI),
                        f"{tmp}/ref.npy",
                        f"{tmp}/streams.npy",
                        str(CHANGE_AT),
                        str(WINDOW),
                        str(ert),
                    ],
                    capture_output=True,
                    text=True,
                    timeout=1800,
                    check=False,
                )
                if proc.returncode != 0:
                    alibi[str(ert)] = {"error": f"rc={proc.returncode}: {proc.stderr[-1500:]}"}
                    continue
                raw = json.loads(proc.stdout.strip().splitlines()[-1])
                alibi["version"] = raw["version"]
                info = raw["erts"][str(ert)]
                alibi[str(ert)] = {**_summary(info["alarms"]), "seconds": info["seconds"]}
                print(f"  alibi ERT={ert}: mean delay {alibi[str(ert)]['mean_delay']}", flush=True)
    return {
        "change_at": CHANGE_AT,
        "window_size": WINDOW,
        "post_events": POST_EVENTS,
        "shift": "vendor_change at site north (scanner replaced by 'cobalt')",
        "ours": ours,
        "alibi_detect_mmd_online": alibi,
    }
