"""alibi-detect side of the online-delay benchmark (benchmark venv only; alibi-detect is
BSL-licensed and never a radwatch dependency). Prints one JSON object.

    .venv-bench/bin/python benchmarks/drift/peer_alibi.py REF STREAMS CHANGE_AT WINDOW ERT...
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import numpy as np


def main() -> None:
    import alibi_detect
    from alibi_detect.cd import MMDDriftOnline

    ref = np.load(sys.argv[1]).astype(np.float32)
    streams = np.load(sys.argv[2]).astype(np.float32)
    change_at, window = int(sys.argv[3]), int(sys.argv[4])
    out: dict[str, Any] = {"version": alibi_detect.__version__, "erts": {}, "change_at": change_at}
    for ert in map(int, sys.argv[5:]):
        start = time.perf_counter()
        # alibi needs n_bootstraps well above the ERT to estimate its 1 - 1/ERT quantiles.
        det = MMDDriftOnline(
            ref,
            ert=ert,
            window_size=window,
            backend="pytorch",
            device="cpu",
            n_bootstraps=4 * ert,
            verbose=False,
        )
        alarms: list[int | None] = []
        for stream in streams:
            det.reset_state()
            alarm = None
            for t, x in enumerate(stream, start=1):
                if det.predict(x, return_test_stat=False)["data"]["is_drift"]:
                    alarm = t
                    break
            alarms.append(alarm)
        out["erts"][str(ert)] = {"alarms": alarms, "seconds": time.perf_counter() - start}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
