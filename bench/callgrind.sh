#!/usr/bin/env bash
# Instructions per put and per delivered event, counted by callgrind (no
# timing noise): runs the `instr` example (bench/examples/instr.rs) under
# `valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*measured_*'`
# so only the measured functions are counted (not the setup: the 100k-key
# prefill, the warm-up laps), at two sizes, and divides the difference by the
# difference in operations (what a measured call costs once drops out).
#
#   bench/callgrind.sh             # kvfeed: put (no watcher), drain_with, try_next (1 watcher)
#   bench/callgrind.sh --peers     # the same, plus the mutex and dashmap+tokio peers
#
# Env: ROUNDS_A / ROUNDS_B (default 50 / 100 rounds of 1024 operations).
# Writes <target>/criterion-extra/instr/instr.json for bench/report.py.
# Takes about 1 minute on 2 cores (3-4 with --peers), after the build.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "callgrind.sh: valgrind is not installed (apt-get install valgrind)" >&2; exit 1; }

peers=0
for a in "$@"; do
  case "$a" in
    --peers) peers=1 ;;
    *) echo "usage: bench/callgrind.sh [--peers]" >&2; exit 2 ;;
  esac
done
ra=${ROUNDS_A:-50}
rb=${ROUNDS_B:-100}
batch=1024 # operations per round (BATCH in instr.rs)

target=${CARGO_TARGET_DIR:-target}
case "$target" in /*) ;; *) target="$PWD/$target" ;; esac
cargo build --release -q -p kvfeed-bench --example instr
bin="$target/release/examples/instr"

# Collected instructions of one run: instr MODE IMPL ROUNDS.
collected() {
  local out
  out=$(valgrind --tool=callgrind --callgrind-out-file=/dev/null --collect-atstart=no \
    '--toggle-collect=*measured_*' "$bin" "$@" 2>&1) || { echo "$out" >&2; return 1; }
  echo "$out" | sed -n 's/^==[0-9]*== Collected : \([0-9]*\)$/\1/p'
}

rows=(
  "put|kvfeed|kvfeed put (no watcher, 100k keys)|put"
  "drain|kvfeed|kvfeed drain_with (1 watcher)|event"
  "drain|kvfeed(try_next-per-event)|kvfeed try_next (1 watcher)|event"
)
if [ "$peers" = 1 ]; then
  rows+=(
    "put|mutex+vecdeque|mutex+vecdeque put|put"
    "drain|mutex+vecdeque|mutex+vecdeque drain, batch copied under one lock|event"
    "drain|mutex+vecdeque(lock-per-event)|mutex+vecdeque, lock per event read|event"
    "put|dashmap+tokio-broadcast|dashmap+tokio put|put"
    "drain|dashmap+tokio-broadcast|dashmap+tokio try_recv|event"
  )
fi

echo "valgrind --tool=callgrind, collecting inside measured_* only; ($batch x $rb - $batch x $ra) operations"
printf '%-58s %14s %14s %10s\n' "what" "Ir ($ra rounds)" "Ir ($rb rounds)" "Ir/op"
json_rows=()
for row in "${rows[@]}"; do
  IFS='|' read -r mode impl label unit <<<"$row"
  a=$(collected "$mode" "$impl" "$ra")
  b=$(collected "$mode" "$impl" "$rb")
  per=$(awk -v a="$a" -v b="$b" -v n=$(( (rb - ra) * batch )) 'BEGIN { printf "%.1f", (b - a) / n }')
  printf '%-58s %14s %14s %10s\n' "$label" "$a" "$b" "$per/$unit"
  json_rows+=("{\"impl\": \"$impl\", \"mode\": \"$mode\", \"what\": \"$label\", \"per\": \"$unit\", \"ir_a\": $a, \"ir_b\": $b, \"ops\": $(( (rb - ra) * batch )), \"ir_per_op\": $per}")
done

dir="$target/criterion-extra/instr"
mkdir -p "$dir"
{
  echo "{\"impl\": \"instr\", \"valgrind\": \"$(valgrind --version)\", \"rounds\": [$ra, $rb], \"batch\": $batch, \"rows\": ["
  for i in "${!json_rows[@]}"; do
    sep=","; [ "$i" = $(( ${#json_rows[@]} - 1 )) ] && sep=""
    echo "  ${json_rows[$i]}$sep"
  done
  echo "]}"
} >"$dir/instr.json"
echo "wrote $dir/instr.json"
