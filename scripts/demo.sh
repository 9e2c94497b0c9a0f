#!/usr/bin/env bash
# README command 1: set up, then compile the bundled models for the default AIE device, run them
# on the simulator, check them against TVM on the CPU and print the report.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/python scripts/demo.py "$@"
