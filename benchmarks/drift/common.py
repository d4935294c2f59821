"""Shared helpers for the drift benchmarks: result files, binomial intervals, timing, memory."""

from __future__ import annotations

import json
import math
import multiprocessing as mp
import os
import platform
import resource
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parents[1] / "results"


def machine() -> dict[str, Any]:
    """What the numbers were measured on; timings mean nothing without it."""
    import numpy as np
    import torch

    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": mp.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        # Other sessions share this machine's 2 cores; timings scale with the load.
        "load_average_1_5_15min": list(os.getloadavg()),
    }


def write_result(name: str, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"drift_{name}.json"
    payload = {"benchmark": name, "machine": machine(), **payload}
    path.write_text(json.dumps(payload, indent=2, allow_nan=False) + "\n")
    return path


def wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval for a binomial proportion k / n."""
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def _child(setup: Callable[[], Any], work: Callable[[Any], Any], queue: Any) -> None:
    data = setup()
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    result = work(data)
    elapsed = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    queue.put(
        {
            "seconds": elapsed,
            "peak_rss_mb": peak / 1024,
            "peak_rss_before_work_mb": base / 1024,
            "result": result,
        }
    )


def run_isolated(setup: Callable[[], Any], work: Callable[[Any], Any]) -> dict[str, Any]:
    """Run ``work(setup())`` in a fresh spawned process and time only ``work``.

    Returns the wall time, the process's peak resident memory (MB, imports and data included)
    and the peak before ``work`` started, so the difference is what the work itself added.
    Both callables must be module-level (picklable).
    """
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(setup, work, queue))
    proc.start()
    out: dict[str, Any] = queue.get()
    proc.join()
    return out
