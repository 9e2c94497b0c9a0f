#!/usr/bin/env bash
# Issue 7's one command: set up .venv (tvm-aie) and .venv-aie4ml (AIE4ML, kept apart so its pinned
# dependencies never meet ours), run every benchmark and write docs/benchmarks.md from scratch.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
PY=${PYTHON:-python3}
[ -x .venv-aie4ml/bin/python ] || "$PY" -m venv .venv-aie4ml
.venv-aie4ml/bin/python -m pip install -q --upgrade pip
.venv-aie4ml/bin/python -m pip install -q "aie4ml[onnx]==0.2.1"
rm -rf out/bench
exec .venv/bin/python scripts/benchmarks.py "$@"
