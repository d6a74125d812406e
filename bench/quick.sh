#!/usr/bin/env bash
# Quick mode of the whole kvfeed-bench suite: every workload, every
# implementation, shrunk sizes and a few milliseconds per benchmark, so CI
# proves the benches still build and run (the numbers mean nothing).
# Prints the report at the end. Extra arguments go to every bench binary
# (e.g. a name filter: bench/quick.sh kvfeed).
set -euo pipefail
cd "$(dirname "$0")/.."
export KVFEED_BENCH_QUICK=1
# Quick results go apart from a full run's (bench/issue9.sh), which a
# report must never mix with them: criterion's to <target>/quick/criterion,
# the suite's own JSON to <target>/quick/criterion-extra (settings.rs).
target=${CARGO_TARGET_DIR:-target}
case "$target" in /*) ;; *) target="$PWD/$target" ;; esac
export CRITERION_HOME="$target/quick/criterion"
start=$(date +%s)
cargo bench -p kvfeed-bench -- "$@"
# The measurement examples, tiny sizes (bench/issue9.sh runs them in full;
# the instruction counts need valgrind: bench/callgrind.sh).
cargo run --release -q -p kvfeed-bench --example memory -- keys 20000
cargo run --release -q -p kvfeed-bench --example memory -- flat 200000 10000
cargo run --release -q -p kvfeed-bench --example instr -- put kvfeed 2
cargo run --release -q -p kvfeed-bench --example instr -- drain kvfeed 2
cargo run --release -q -p kvfeed-bench --example instr -- drain "kvfeed(try_next-per-event)" 2
python3 bench/report.py --target-dir "$target/quick"
echo "bench quick mode: done in $(( $(date +%s) - start )) s"
