"""Acceptance 1: false-alarm rate of every drift test on data with no shift, and the online
detector's mean run length against its configured ERT.

Each trial draws reference and current independently from the same distribution and runs each
test at alpha = 0.05 with its default seed, as a monitor does window after window (the tests mix
a data fingerprint into the seed, see ``monitors.drift._inputs.data_seed``). Distributions are
deliberately not Gaussian: a skewed numeric column (lognormal), a categorical column with a 1%
category (exercises chi-squared pooling), 32-dim correlated embeddings and 4 correlated sigmoid
output scores.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from benchmarks.drift.common import RESULTS, wilson
from monitors.drift import (
    DriftConfig,
    OnlineMMDDetector,
    bbsd_test,
    chi2_test,
    classifier_test,
    jensen_shannon,
    ks_test,
    mmd_test,
    psi,
    run_drift,
    wasserstein,
)

ALPHA = 0.05
CATEGORIES = np.array(["GE", "Siemens", "Philips", "Agfa", "Fuji", "Canon", "Konica"], dtype=object)
CATEGORY_P = np.array([0.40, 0.25, 0.15, 0.10, 0.06, 0.03, 0.01])
EMB_DIM = 32
#: Reference rows for the online detector (half test reference, half simulation pool).
REFERENCE_ROWS = 6000


class World:
    """One fixed no-shift distribution for all trials."""

    def __init__(self, seed: int = 1234) -> None:
        rng = np.random.default_rng(seed)
        self.mix = rng.normal(size=(EMB_DIM, EMB_DIM)) / np.sqrt(EMB_DIM)
        self.score_mix = np.linalg.cholesky(0.5 * np.eye(4) + 0.5 * np.ones((4, 4)))

    def numeric(self, rng: np.random.Generator, n: int) -> npt.NDArray[np.float64]:
        return rng.lognormal(0.0, 0.6, size=n)

    def categorical(self, rng: np.random.Generator, n: int) -> npt.NDArray[Any]:
        return np.asarray(CATEGORIES[rng.choice(CATEGORIES.size, size=n, p=CATEGORY_P)])

    def embeddings(self, rng: np.random.Generator, n: int) -> npt.NDArray[np.float64]:
        return np.asarray(rng.normal(size=(n, EMB_DIM)) @ self.mix.T)

    def scores(self, rng: np.random.Generator, n: int) -> npt.NDArray[np.float64]:
        z = rng.normal(size=(n, 4)) @ self.score_mix.T - 1.5
        return np.asarray(1.0 / (1.0 + np.exp(-z)))

    def frame(self, rng: np.random.Generator, n: int) -> dict[str, npt.NDArray[Any]]:
        return {
            "x1": self.numeric(rng, n),
            "x2": rng.normal(size=n),
            "x3": rng.gamma(2.0, size=n),
            "x4": np.round(rng.normal(60, 15, size=n)),
            "vendor": self.categorical(rng, n),
            "sex": np.array(["F", "M"], dtype=object)[rng.integers(0, 2, size=n)],
        }


def _tests(world: World, n_perm: int) -> dict[str, Callable[[np.random.Generator, int, int], bool]]:
    def numeric(
        test: Callable[..., Any], **kw: Any
    ) -> Callable[[np.random.Generator, int, int], bool]:
        def run(rng: np.random.Generator, n: int, seed: int) -> bool:
            return bool(test(world.numeric(rng, n), world.numeric(rng, n), **kw).drift)

        return run

    def categorical(
        test: Callable[..., Any], **kw: Any
    ) -> Callable[[np.random.Generator, int, int], bool]:
        def run(rng: np.random.Generator, n: int, seed: int) -> bool:
            return bool(test(world.categorical(rng, n), world.categorical(rng, n), **kw).drift)

        return run

    def embed(
        test: Callable[..., Any], **kw: Any
    ) -> Callable[[np.random.Generator, int, int], bool]:
        def run(rng: np.random.Generator, n: int, seed: int) -> bool:
            return bool(test(world.embeddings(rng, n), world.embeddings(rng, n), **kw).drift)

        return run

    def bbsd(rng: np.random.Generator, n: int, seed: int) -> bool:
        return bool(bbsd_test(world.scores(rng, n), world.scores(rng, n)).drift)

    def report(rng: np.random.Generator, n: int, seed: int) -> bool:
        cfg = DriftConfig(n_permutations=n_perm)
        rep = run_drift(
            world.frame(rng, n),
            world.frame(rng, n),
            cfg,
            reference_scores=world.scores(rng, n),
            current_scores=world.scores(rng, n),
        )
        return rep.drift

    perm = {"n_permutations": n_perm}
    return {
        "ks": numeric(ks_test),
        "chi2": categorical(chi2_test),
        "psi_numeric": numeric(psi, **perm),
        "psi_categorical": categorical(psi, **perm),
        "jensen_shannon_numeric": numeric(jensen_shannon, **perm),
        "jensen_shannon_categorical": categorical(jensen_shannon, **perm),
        "wasserstein": numeric(wasserstein, **perm),
        "mmd": embed(mmd_test, **perm),
        "classifier": embed(classifier_test),
        "bbsd": bbsd,
        "report_overall_bh": report,
    }


def false_alarm_rates(
    trials: int, sizes: tuple[int, ...], n_perm: int, seed: int = 0
) -> dict[str, Any]:
    world = World()
    tests = _tests(world, n_perm)
    out: dict[str, Any] = {}
    for name, run in tests.items():
        out[name] = {}
        for n in sizes:
            rng = np.random.default_rng([seed, n, len(name)])
            start = time.perf_counter()
            alarms = sum(run(rng, n, seed + t) for t in range(trials))
            lo, hi = wilson(alarms, trials)
            rate = alarms / trials
            out[name][str(n)] = {
                "trials": trials,
                "alarms": alarms,
                "false_alarm_rate": rate,
                "ci95": [lo, hi],
                "within_0.03_0.07": 0.03 <= rate <= 0.07,
                "seconds": time.perf_counter() - start,
            }
            print(f"  {name:28s} n={n:5d}  FAR={rate:.3f}  [{lo:.3f}, {hi:.3f}]", flush=True)
    return out


def online_run_lengths(erts: tuple[int, ...], runs: int, seed: int = 0) -> dict[str, Any]:
    """Mean run length without shift, on fresh events (not the calibration pool)."""
    world = World()
    out: dict[str, Any] = {}
    for ert in erts:
        rng = np.random.default_rng([seed, ert])
        start = time.perf_counter()
        det = OnlineMMDDetector.calibrate(
            world.embeddings(rng, REFERENCE_ROWS), ert=ert, window_size=50, seed=seed
        )
        calib_s = time.perf_counter() - start
        lengths = []
        start = time.perf_counter()
        events = 0
        for _ in range(runs):
            det.reset()
            while det.state.alarm_at is None:
                det.update(world.embeddings(rng, 100))
                events += 100
            lengths.append(det.state.alarm_at)
        rl = np.array(lengths, dtype=np.float64)
        mean = float(rl.mean())
        se = float(rl.std(ddof=1) / np.sqrt(rl.size))
        out[str(ert)] = {
            "configured_ert": ert,
            "reference_rows": REFERENCE_ROWS,
            "window_size": 50,
            "runs": runs,
            "mean_run_length": mean,
            "standard_error": se,
            "median_run_length": float(np.median(rl)),
            "ratio_to_ert": mean / ert,
            "within_20_percent": abs(mean / ert - 1.0) <= 0.2,
            "simulated_mean_run_length": det.calibration.simulated_mean_run_length,
            "threshold": det.calibration.threshold,
            "calibration_seconds": calib_s,
            "update_microseconds_per_event": 1e6 * (time.perf_counter() - start) / events,
        }
        print(
            f"  online ERT={ert}: mean RL {mean:.0f} +- {se:.0f} (ratio {mean / ert:.2f})",
            flush=True,
        )
    return out


def _previous_far() -> dict[str, Any]:
    """The false-alarm part of the last full run (for re-running only the online part)."""
    previous = json.loads((RESULTS / "drift_calibration.json").read_text())
    far: dict[str, Any] = previous["false_alarm_rates"]
    return far


def run(
    *, trials: int = 500, n_perm: int = 500, online_runs: int = 300, online_only: bool = False
) -> dict[str, Any]:
    start = time.perf_counter()
    far = _previous_far() if online_only else false_alarm_rates(trials, (200, 2000), n_perm)
    online = online_run_lengths((500, 2000), online_runs)
    return {
        "alpha": ALPHA,
        "n_permutations": n_perm,
        "false_alarm_rates": far,
        "online": online,
        "all_tests_within_0.03_0.07": all(
            cell["within_0.03_0.07"] for per_n in far.values() for cell in per_n.values()
        ),
        "online_all_within_20_percent": all(v["within_20_percent"] for v in online.values()),
        "seconds": time.perf_counter() - start,
    }
