#!/usr/bin/env bash
# Installs radwatch into ./.venv. With --dev, also the test and lint tools.
# torch is pinned to 2.13.0 in pyproject.toml: on this kind of machine pip takes the CPU wheel from
# local disk; a looser spec would download a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."

extras=""
[[ "${1:-}" == "--dev" ]] && extras="[dev]"

python="${PYTHON:-python3.11}"
command -v "$python" >/dev/null 2>&1 || python=python3
if [[ ! -x .venv/bin/python ]]; then
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet --progress-bar off -e ".${extras}"
echo "radwatch installed in .venv ($(.venv/bin/python -c 'import torch, numpy; print("torch", torch.__version__, "numpy", numpy.__version__)'))"
