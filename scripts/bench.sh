#!/usr/bin/env bash
# Runs every benchmark (issue 3 acceptance) and writes benchmarks/results/*.json.
# The peers (Evidently 0.7, NannyML 0.13, alibi-detect) go into a separate .venv-bench: they are
# benchmark baselines, never radwatch dependencies. Pass --no-peers to skip installing them; their
# columns then say "skipped". Takes about 45 minutes on a 2-core machine.
set -euo pipefail
cd "$(dirname "$0")/.."

[[ -x .venv/bin/python ]] || ./scripts/install.sh --dev
if [[ "${1:-}" != "--no-peers" && ! -x .venv-bench/bin/python ]]; then
  "${PYTHON:-python3.11}" -m venv .venv-bench
  .venv-bench/bin/pip install --quiet --progress-bar off "numpy<2" "pandas<3" torch==2.13.0 \
    "evidently>=0.7,<0.8" "nannyml==0.13.1" "alibi-detect[torch]"
fi
PYTHONPATH=. .venv/bin/python -m benchmarks.run
