#!/usr/bin/env bash
# Every number issue 9's "Targets" ask for, in one run, peers alongside, then
# the report (bench/report.py) with each target marked met / not / unclear:
#
#   1. W1 uniform + zipf, K = 0, 1, 4, 16, 64 (per-event and batch reads) and
#      W2 N = 0, 16, 256, 4096        criterion, `--bench feed`
#   2. W7, 4 writers + 4 watchers, 9 interleaved runs       `--bench oversub`
#   3. RSS per live u64 -> u64 key at 1M keys, fresh process per impl
#                                       `--example memory -- keys 1000000`
#   4. RSS over FLAT_PUTS puts (default 1e8) with a lapped watcher
#                                       `--example memory -- flat $FLAT_PUTS`
#   5. instructions per put / per delivered event     bench/callgrind.sh
#
# About 10 minutes on 2 cores after the build (step 4 is ~1 min per 1e8 puts
# at today's put cost). Nothing else should run meanwhile: the machine's load
# is printed with the report.
#
#   bench/issue9.sh               # everything
#   bench/issue9.sh --quick       # the same steps shrunk (smoke: numbers mean nothing)
#   FLAT_PUTS=10000000 bench/issue9.sh
#   SKIP=callgrind,flat bench/issue9.sh   # leave steps out (w1w2, w7, memory, flat, callgrind)
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0
for a in "$@"; do
  case "$a" in
    --quick) quick=1 ;;
    *) echo "usage: bench/issue9.sh [--quick]" >&2; exit 2 ;;
  esac
done
skip=",${SKIP:-},"
want() { [[ "$skip" != *",$1,"* ]]; }

keys=1000000
flat_puts=${FLAT_PUTS:-100000000}
if [ "$quick" = 1 ]; then
  export KVFEED_BENCH_QUICK=1
  keys=100000
  flat_puts=${FLAT_PUTS:-1000000}
  export ROUNDS_A=${ROUNDS_A:-4} ROUNDS_B=${ROUNDS_B:-8}
fi

step() { echo; echo "== $* ($(date +%T), load $(cut -d' ' -f1-3 /proc/loadavg))"; }
start=$(date +%s)

step "build"
cargo bench -p kvfeed-bench --no-run -q
cargo build --release -q -p kvfeed-bench --examples

if want w1w2; then
  step "W1 (per-event and batch reads) and W2 (put alone, idle watchers)"
  cargo bench -q -p kvfeed-bench --bench feed -- '^w1/|^w2/'
fi
if want w7; then
  step "W7 (4 writers + 4 watchers, interleaved runs)"
  cargo bench -q -p kvfeed-bench --bench oversub
fi
if want memory; then
  step "memory: RSS per live key at $keys keys"
  cargo run --release -q -p kvfeed-bench --example memory -- keys "$keys"
fi
if want flat; then
  step "memory: RSS over $flat_puts puts with a lapped watcher"
  cargo run --release -q -p kvfeed-bench --example memory -- flat "$flat_puts"
fi
if want callgrind; then
  step "instructions (callgrind)"
  if command -v valgrind >/dev/null; then
    bash bench/callgrind.sh --peers
  else
    echo "valgrind is not installed: instructions left out (apt-get install valgrind)"
  fi
fi

step "report"
python3 bench/report.py
echo "bench/issue9.sh: done in $(( $(date +%s) - start )) s"
