#!/usr/bin/env bash
# Runs kvfeed's loom models (loom-tests/tests/*.rs).
#
# The models are compiled only under `--cfg kvfeed_loom`, which swaps kvfeed's
# sync facade (core/src/sync.rs) for loom's primitives and the feed's
# collector for its checked stand-in (core/src/engine/reclaim_loom.rs). A plain
# `cargo test` compiles them away; this script is what runs them.
#
# Usage: loom-tests/run.sh [test-binary args...]
#   loom-tests/run.sh                      # every model
#   loom-tests/run.sh park_wake            # models whose name contains "park_wake"
#   LOOM_MAX_PREEMPTIONS=3 loom-tests/run.sh claim_publish_read
#
# Environment:
#   LOOM_MAX_PREEMPTIONS  unset: each model uses its own bound (stated in its
#                         doc comment: 2 or 3); set: overrides every model's.
#   LOOM_TARGET_DIR       where to build (default: <target dir>/loom, so the
#                         cfg does not invalidate the normal build's cache).
#   Any other LOOM_* variable (LOOM_LOG, LOOM_LOCATION, LOOM_CHECKPOINT_FILE,
#   ...) is passed to loom as usual; see loom's docs for replaying a failure.
#
# Each model prints "loom model NAME: N executions, preemption bound B, T".
# The models take under a minute in all once built (see loom-tests/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${LOOM_TARGET_DIR:-${CARGO_TARGET_DIR:-$PWD/target}/loom}"
export RUSTFLAGS="${RUSTFLAGS:-} --cfg kvfeed_loom"
# Keep panics short: a model's failure message is what matters; the loom
# location of a causality violation is printed regardless.
export RUST_BACKTRACE="${RUST_BACKTRACE:-0}"

exec cargo test -p loom-tests --release --no-fail-fast -- --nocapture "$@"
