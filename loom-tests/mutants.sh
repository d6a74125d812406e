#!/usr/bin/env bash
# Shows that each loom model can fail: builds kvfeed with one deliberate bug
# (`--cfg kvfeed_mutant="NAME"`, see the `kvfeed_mutant` cfgs in core/src)
# and runs the model that must catch it. A mutant that passes its model is
# a model that checks nothing: the script then fails.
#
# Usage: loom-tests/mutants.sh [NAME...]     (default: every mutant)
# Takes a few minutes per mutant on 2 cores (each is a rebuild under loom);
# not part of scripts/test-all.sh. Results: loom-tests/README.md.
set -uo pipefail
cd "$(dirname "$0")/.."

# mutant            model that must fail      the bug
table='
publish_relaxed     claim_publish_read        the ring stores a record and its stamp with Relaxed
no_prev_recheck     lap_detection             a reader takes the slot record and predecessor without re-reading the stamp
no_pending_wait     put_put_same_key          a writer installs over a write in flight
close_ignored       put_racing_close          a claim ignores the CLOSED bit
no_freeze           migration_racing_update   a migration copies a slot without freezing it
retire_early        late_record_retired_after_its_slot_moves_on a record is retired when its successor leaves the ring, even if its own slot has not moved on
scan_no_wait        snapshot_then_live        a snapshot scan reads a key in the middle of a write
no_wake             park_wake_next_timeout    a publisher does not wake parked watchers
park_no_fence       park_wake_next_timeout    a parking watcher re-checks its slot without the heavy fence
no_wake             word_park_wake_next_timeout a publisher does not wake parked watchers (word feed)
park_no_fence       word_park_wake_next_timeout a parking watcher re-checks its slot without the heavy fence (word feed)
no_prev_recheck     old_of_an_overtaken_read  a reader takes the slot predecessor without re-reading the stamp
epoch_skip          freed_only_after_every_guard_that_reached_it a seal advances the epoch by two
epoch_no_fence      freed_only_after_every_guard_that_reached_it a guard announces itself without a fence before its loads
word_no_intent      get_during_rewrites_of_one_key a word write stores the value while the word of its key still names the old version
intent_no_recheck   get_during_rewrites_of_one_key a reader takes an intent record without its seqlock checks
word_no_freeze      word_migration_racing_writes a word table migration copies a slot without freezing it
word_no_recheck     word_watcher_lapped_while_reading a word watcher takes the fields of a slot without re-reading the stamp
'

export CARGO_TARGET_DIR="${LOOM_TARGET_DIR:-${CARGO_TARGET_DIR:-$PWD/target}/loom}-mutant"
export RUST_BACKTRACE=0
status=0
while read -r mutant model what; do
  [ -z "$mutant" ] && continue
  if [ $# -gt 0 ] && [[ " $* " != *" $mutant "* ]]; then continue; fi
  log="$CARGO_TARGET_DIR/$mutant.log"
  mkdir -p "$CARGO_TARGET_DIR"
  RUSTFLAGS="--cfg kvfeed_loom --cfg kvfeed_mutant=\"$mutant\"" \
    cargo test -q -p loom-tests --release -- --exact "$model" >"$log" 2>&1
  rc=$?
  if [ $rc -ne 0 ] && grep -q "test result: FAILED\|panicked\|deadlock" "$log"; then
    reason=$(grep -m1 -E "panicked at|deadlock|assertion|Causality|retired" "$log" | cut -c1-110)
    printf 'caught    %-16s by %-24s (%s)\n          %s\n' "$mutant" "$model" "$what" "$reason"
  else
    printf 'MISSED    %-16s by %-24s (%s): log %s\n' "$mutant" "$model" "$what" "$log"
    status=1
  fi
done <<<"$table"
exit $status
