#!/usr/bin/env bash
# Quick mode of the whole kvfeed-bench suite: every workload, every
# implementation, shrunk sizes and a few milliseconds per benchmark, so CI
# proves the benches still build and run (the numbers mean nothing).
# Prints the report at the end. Extra arguments go to every bench binary
# (e.g. a name filter: bench/quick.sh kvfeed).
set -euo pipefail
cd "$(dirname "$0")/.."
export KVFEED_BENCH_QUICK=1
start=$(date +%s)
cargo bench -p kvfeed-bench -- "$@"
python3 bench/report.py
echo "bench quick mode: done in $(( $(date +%s) - start )) s"
