"""Run the drift benchmarks and write ``benchmarks/results/drift_<name>.json``.

PYTHONPATH=. .venv/bin/python -m benchmarks.drift.run                 # everything
PYTHONPATH=. .venv/bin/python -m benchmarks.drift.run speed calibration
"""

from __future__ import annotations

import argparse
import time

from benchmarks.drift.common import write_result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "names",
        nargs="*",
        default=["speed", "calibration", "online_delay", "power"],
        help="benchmarks to run: speed, calibration, online_delay, power",
    )
    parser.add_argument(
        "--online-only",
        action="store_true",
        help="calibration: re-run only the online part, keep the last false-alarm rates",
    )
    parser.add_argument("--power-trials", type=int, default=50, help="trials per power cell")
    parser.add_argument(
        "--far-trials", type=int, default=200, help="no-shift trials per n (the FAR gate)"
    )
    parser.add_argument("--trials", type=int, default=500, help="no-shift trials per test and n")
    parser.add_argument(
        "--permutations",
        type=int,
        default=200,
        help="permutations per permutation test in the calibration benchmark",
    )
    args = parser.parse_args()
    for name in args.names:
        start = time.perf_counter()
        print(f"[{name}]", flush=True)
        if name == "speed":
            from benchmarks.drift import speed

            payload = speed.run()
        elif name == "calibration":
            from benchmarks.drift import calibration

            payload = calibration.run(
                trials=args.trials, n_perm=args.permutations, online_only=args.online_only
            )
        elif name == "online_delay":
            from benchmarks.drift import online_delay

            payload = online_delay.run()
        elif name == "power":
            from benchmarks.drift import power

            payload = power.run(trials=args.power_trials, far_trials=args.far_trials)
        else:
            parser.error(f"unknown benchmark {name!r}")
        path = write_result(name, {**payload, "wall_seconds": time.perf_counter() - start})
        print(f"[{name}] wrote {path}", flush=True)


if __name__ == "__main__":
    main()
