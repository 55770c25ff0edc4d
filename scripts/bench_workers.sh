#!/usr/bin/env bash
# The --workers table of docs/performance.md on a machine with many cores, from a checkout:
# capacity and TTFT accuracy at concurrency 256 with --workers 1, 2, 4, and 8 and 16 where
# the machine has that many cores, plus the capacity and health scenarios for context.
#
#   scripts/bench_workers.sh [--repeats N] [--quick]
#
# Needs Python 3.11+ and pip (nox is installed if missing). Writes bench/results-partial.json
# and .md; the calibration table of the health scenario goes to bench/health_calibration.md.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m nox --version >/dev/null 2>&1 || python3 -m pip install --quiet nox uv
echo "cores: $(nproc) (usable: $(python3 -c 'import os; print(len(os.sched_getaffinity(0)))'))"
exec python3 -m nox -s bench -- --scenario workers --scenario capacity --scenario health "$@"
