#!/usr/bin/env bash
# Runs every test of the project: formatting and lints, Rust unit/property/
# stress tests and doctests, the loom models, the C tests (plain, valgrind,
# ASan, header freshness) and the Go tests. This is the README's test command
# and what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings
cargo clippy -p kvfeed --all-targets --features async -- -D warnings
step "cargo clippy under --cfg kvfeed_loom (the loom facade and stand-ins)"
CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}/loom" RUSTFLAGS="${RUSTFLAGS:-} --cfg kvfeed_loom" \
  cargo clippy -p kvfeed -p loom-tests --features kvfeed/loom --all-targets -- -D warnings

step "cargo test (unit, property, stress, doctests)"
cargo test --workspace --exclude kvfeed-nats
cargo test -p kvfeed --features async --lib --test '*'
cargo test -p kvfeed --features async --doc   # the async examples (WatchStream, the guide's tokio example)

step "NATS bridge: cargo test -p kvfeed-nats (real nats-server processes on loopback)"
cargo test -p kvfeed-nats

step "C ABI: header freshness, C99/C++ compile, C tests (static, shared, valgrind, ASan)"
bash ffi/run-c-tests.sh

step "Go: go vet, go test -race"
bash go/run-go-tests.sh

step "benchmarks, quick mode (every workload and peer runs briefly: the code cannot rot; the numbers mean nothing)"
bash bench/quick.sh

step "loom models of the concurrency protocols (loom-tests/run.sh)"
bash loom-tests/run.sh
