"""Run every benchmark in one process tree and write ``benchmarks/results/*.json``.

    ./scripts/bench.sh                            # installs the peers' venv, then this
    PYTHONPATH=. .venv/bin/python -m benchmarks.run [drift] [coverage] [fairness] [estimate]

Each suite also has its own entry point (see the README in its folder) for re-running a part.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

SUITES: dict[str, list[str]] = {
    "drift": ["-m", "benchmarks.drift.run"],
    "coverage": ["-m", "benchmarks.coverage.run"],
    "fairness": ["-m", "benchmarks.coverage.fairness"],
    "estimate": ["-m", "benchmarks.estimate.run"],
    "promotion": ["-m", "benchmarks.promotion.run"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("suites", nargs="*", help=f"any of {', '.join(SUITES)} (default: all)")
    args = parser.parse_args()
    unknown = sorted(set(args.suites) - set(SUITES))
    if unknown:
        parser.error(f"unknown suite(s) {', '.join(unknown)}; choose from {', '.join(SUITES)}")
    failed: list[str] = []
    for name in args.suites or list(SUITES):
        start = time.perf_counter()
        print(f"== {name}", flush=True)
        code = subprocess.call([sys.executable, *SUITES[name]])
        print(f"== {name}: exit {code} after {time.perf_counter() - start:.0f} s", flush=True)
        if code:
            failed.append(name)
    if failed:
        sys.exit(f"benchmarks failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
