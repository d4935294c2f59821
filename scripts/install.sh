#!/usr/bin/env bash
# Installs radwatch into ./.venv. With --dev, also the test and lint tools, and (as root, from
# Debian) the two system programs the tests drive: chromium (browser tests of the sign-off pages)
# and prometheus (the dashboards' PromQL is checked against a real Prometheus).
# torch is pinned to 2.13.0 in pyproject.toml: on this kind of machine pip takes the CPU wheel from
# local disk; a looser spec would download a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."

extras=""
[[ "${1:-}" == "--dev" ]] && extras="[dev]"

if [[ -n "$extras" ]]; then
  missing=()
  command -v chromium >/dev/null 2>&1 || missing+=(chromium)
  command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
  if (( ${#missing[@]} )); then
    if [[ "$(id -u)" == 0 ]]; then
      echo "installing ${missing[*]} from Debian"
      apt-get update -qq >/dev/null
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
    else
      echo "warning: ${missing[*]} not installed and not root; browser/Prometheus tests will fail" >&2
    fi
  fi
fi

python="${PYTHON:-python3.11}"
command -v "$python" >/dev/null 2>&1 || python=python3
if [[ ! -x .venv/bin/python ]]; then
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet --progress-bar off -e ".${extras}"
echo "radwatch installed in .venv ($(.venv/bin/python -c 'import torch, numpy; print("torch", torch.__version__, "numpy", numpy.__version__)'))"
