#!/usr/bin/env bash
# The C ABI's cost per event against the core Rust API, same work on both
# sides: put (key copied into an Arc<[u8]>, value into a Box<[u8]>) plus one
# watcher reading every event. Prints both figures and the C/Rust ratio.
#
#   ffi/bench/run-bench.sh [events] [runs]      (defaults: 2000000 5; best of runs)
#
# Honours CARGO_TARGET_DIR (default: the workspace's target/) and CC.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target}
events=${1:-2000000}
runs=${2:-5}
out="$CARGO_TARGET_DIR/c-bench"
mkdir -p "$out"

prefix=$("$root/ffi/build-c.sh" 2>/dev/null)
${CC:-cc} -std=c11 -O2 -I"$prefix/include" "$root/ffi/bench/put_read.c" "$prefix/lib/libkvfeed.a" \
    -lpthread -ldl -lm -o "$out/put_read"
cbench="$out/put_read"
rbench=$(cd "$root" && cargo bench -p kvfeed-ffi --bench put_read --no-run 2>&1 |
    sed -n 's/.*Executable .*(\(.*\)).*/\1/p')

echo "== wall clock, best of $runs, $events events (only meaningful on an idle machine;"
echo "   load average now: $(cut -d' ' -f1-3 /proc/loadavg))"
rust=$("$rbench" --bench "$events" "$runs")
c=$("$cbench" "$events" "$runs")
echo "$rust"
echo "$c"
ratio() { # workload
    local r x
    r=$(echo "$rust" | awk -v w="$1" '$2 == w {print $3}')
    x=$(echo "$c" | awk -v w="$1" '$2 == w {print $3}')
    awk -v r="$r" -v c="$x" -v w="$1" 'BEGIN {printf "ratio C/Rust %-12s %.2fx\n", w, c / r}'
}
ratio interleaved
ratio threaded

if command -v valgrind >/dev/null; then
    # Instructions per event of the interleaved workload, counted by callgrind:
    # the same on a busy machine as on an idle one. (I(2n) - I(n)) / n leaves
    # out the setup.
    n=100000
    ir() { valgrind --tool=callgrind --callgrind-out-file=/dev/null "$@" 2>&1 | awk '/Collected/ {print $4}'; }
    c1=$(ir "$cbench" $n 1 interleaved)
    c2=$(ir "$cbench" $((2 * n)) 1 interleaved)
    r1=$(ir "$rbench" --bench $n 1 interleaved)
    r2=$(ir "$rbench" --bench $((2 * n)) 1 interleaved)
    echo "== instructions per event, interleaved (callgrind, load-independent)"
    awk -v c1="$c1" -v c2="$c2" -v r1="$r1" -v r2="$r2" -v n=$n 'BEGIN {
        c = (c2 - c1) / n; r = (r2 - r1) / n
        printf "rust interleaved %8.0f instructions/event\n", r
        printf "c    interleaved %8.0f instructions/event\n", c
        printf "ratio C/Rust interleaved  %.2fx\n", c / r }'
fi
mem=$(awk '/MemTotal/ {printf "%.0f", $2 / 1048576}' /proc/meminfo)
echo "(machine: $(nproc) cores, $mem GiB, $(uname -m); $(${CC:-cc} --version | head -n 1); $(rustc --version))"
