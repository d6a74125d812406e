#!/usr/bin/env bash
# Sanitizer runs of kvfeed's core: Miri and ThreadSanitizer (TSan).
#
# Not part of CI: both need a nightly toolchain, and they are slow (Miri
# interprets every instruction; TSan rebuilds std). Run by hand before a
# release or after a change to the unsafe or concurrent code:
#
#   scripts/sanitize.sh            # Miri, then TSan
#   scripts/sanitize.sh miri       # Miri only
#   scripts/sanitize.sh tsan       # TSan only
#
# What they cover that the loom models (loom-tests/) do not: the real
# reclamation in the engine (the engine's loom models replace the feed's
# collector with a stand-in; loom model 7 checks the epoch protocol alone),
# Rust's aliasing
# rules and use-after-free on the real allocator (Miri), and races in the
# real, optimized build with std's locks (TSan).
#
# What runs:
#   Miri  cargo +nightly miri test -p kvfeed --lib
#           every unit test except those listed in KVFEED_MIRI_SKIP (default:
#           the two 100,000-write memory tests, hours under Miri; the
#           word engine's `word_feed_smoke` is among those that run);
#         cargo +nightly miri test -p kvfeed --test words -- word_feed_matches_sequential_model
#           (PROPTEST_CASES=4: the word engine against its sequential model);
#         cargo +nightly miri test -p loom-tests --test sanitize_smoke
#           writers overwrite and churn while a watcher reads in place, with
#           enough writes (> three of kvfeed's seal batches of 2048) for
#           records to be freed while the feed lives.
#   TSan  RUSTFLAGS=-Zsanitizer=thread cargo +nightly test -Zbuild-std \
#           --target x86_64-unknown-linux-gnu -p kvfeed --lib --tests
#           (unit, property and stress tests; doctests are skipped)
#         ... and -p loom-tests --test sanitize_smoke.
#
# Reading TSan's reports: every report fails the run. TSan does not see
# fences (neither `atomic::fence` nor the `membarrier` system call that the
# epoch reclamation pairs with compiler fences, core/src/engine/epoch.rs),
# but it need not: a free happens after every guard that could reach the
# object through atomics TSan does see (the guard's `Release` leave, the
# sealer's `Acquire` scan, the epoch's CAS and the freeing thread's
# `Acquire` load of the epoch). The fences only stop a guard that starts
# *after* an unlink from reaching the object at all. (With seize, which the
# engine used until issue 9's third pass, TSan reported hundreds of races it
# could not see were ordered; those reports, and the classification this
# script did for them, are gone.)
# The full TSan output is kept in <target dir>/tsan/tsan.log.
#
# Environment: KVFEED_NIGHTLY (toolchain, default "nightly"), MIRIFLAGS,
# TSAN_OPTIONS, KVFEED_MIRI_SKIP (space-separated test-name filters).
# Build directories: <target dir>/miri and <target dir>/tsan, apart from the
# normal build.
set -euo pipefail
cd "$(dirname "$0")/.."

nightly="${KVFEED_NIGHTLY:-nightly}"
base="${CARGO_TARGET_DIR:-$PWD/target}"
skip="${KVFEED_MIRI_SKIP:-churn_of_unique_keys_runs_in_flat_memory updates_of_one_key_keep_no_history_alive}"
status=0

step() { printf '\n==> %s\n' "$*"; }

run_miri() {
  local rc=0
  step "Miri: installing the miri and rust-src components (if missing)"
  rustup component add --toolchain "$nightly" miri rust-src
  local skips=()
  for t in $skip; do skips+=(--skip "$t"); done
  export CARGO_TARGET_DIR="$base/miri"
  step "Miri: kvfeed unit tests (skipping: $skip)"
  cargo "+$nightly" miri test -p kvfeed --lib -- "${skips[@]}" || rc=1
  step "Miri: the word engine's property test (core/tests/words.rs, 4 cases)"
  # The intent record's address travels through a ctrl word (an integer):
  # exposed provenance, which Miri checks with permissive provenance.
  PROPTEST_CASES=4 MIRIFLAGS="${MIRIFLAGS:-} -Zmiri-disable-isolation -Zmiri-permissive-provenance" \
    cargo "+$nightly" miri test -p kvfeed --test words -- word_feed_matches_sequential_model || rc=1
  step "Miri: loom-tests/tests/sanitize_smoke.rs (the real reclamation, freeing while watchers read)"
  cargo "+$nightly" miri test -p loom-tests --test sanitize_smoke || rc=1
  return "$rc"
}

run_tsan() {
  local rc=0
  step "TSan: installing rust-src (for -Zbuild-std), if missing"
  rustup component add --toolchain "$nightly" rust-src
  local target
  target="$(rustc "+$nightly" -vV | sed -n 's/^host: //p')"
  export CARGO_TARGET_DIR="$base/tsan"
  export RUSTFLAGS="${RUSTFLAGS:-} -Zsanitizer=thread"
  export RUSTDOCFLAGS="${RUSTDOCFLAGS:-} -Zsanitizer=thread"
  # exitcode=0: a report does not fail the test binary; the classification
  # below decides. allocator_may_return_null=1: an allocation TSan's
  # allocator cannot serve fails (returns null) instead of killing the
  # process; the test that asks for a 32 TiB ring checks exactly that
  # failure. Without it the lib test binary died there, with exit code 0,
  # and the lib tests still running in parallel were silently cut short.
  export TSAN_OPTIONS="${TSAN_OPTIONS:-second_deadlock_stack=1 history_size=4 exitcode=0 allocator_may_return_null=1}"
  local log="$CARGO_TARGET_DIR/tsan.log"
  mkdir -p "$CARGO_TARGET_DIR"
  : >"$log"
  step "TSan: kvfeed unit, property and stress tests ($target)"
  cargo "+$nightly" test -Zbuild-std --target "$target" -p kvfeed --lib --tests 2>&1 \
    | tee -a "$log" || rc=1
  step "TSan: loom-tests/tests/sanitize_smoke.rs"
  cargo "+$nightly" test -Zbuild-std --target "$target" -p loom-tests --test sanitize_smoke 2>&1 \
    | tee -a "$log" || rc=1
  # Every test binary must have finished: one that dies under TSan (with
  # exitcode=0) leaves a "Running" line without its "test result: ok".
  local ran ok
  ran=$(grep -c '^ *Running ' "$log" || true)
  ok=$(grep -c '^test result: ok' "$log" || true)
  if [ "$ran" != "$ok" ]; then
    echo "TSan: $ran test binaries started, $ok finished with 'test result: ok'" >&2
    rc=1
  fi
  step "TSan: reports (full output: $log)"
  # Split the output into reports (blocks between "==================" lines
  # that start with "WARNING: ThreadSanitizer"); print and count them.
  awk '
    /^==================$/ { if (inblk) finish(); inblk = 1; blk = ""; next }
    inblk { blk = blk $0 "\n" }
    function finish() {
      if (blk ~ /WARNING: ThreadSanitizer/) {
        total++
        printf "%s==================\n", blk
      }
      inblk = 0; blk = ""
    }
    END {
      if (inblk) finish()
      printf "TSan: %d reports\n", total
      exit total > 0
    }' "$log" || rc=1
  return "$rc"
}

what=("$@")
[ ${#what[@]} -eq 0 ] && what=(miri tsan)
for w in "${what[@]}"; do
  case "$w" in
    miri) (run_miri) || status=1 ;;
    tsan) (run_tsan) || status=1 ;;
    *) echo "usage: $0 [miri] [tsan]" >&2; exit 2 ;;
  esac
done
exit "$status"
