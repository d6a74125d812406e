#!/usr/bin/env bash
# Builds the kvfeed C library and runs the Go binding's checks:
#   go vet ./...  and  go test -race -count=1 ./...  (plus the example program).
#
# Usage: go/run-go-tests.sh [extra go test args, e.g. -run Snapshot -v]
#
# - Installs Debian's golang-go (Go 1.19) when `go` is missing.
# - Builds `cargo build --release -p kvfeed-ffi` and links its static library
#   (libkvfeed_ffi.a, so no LD_LIBRARY_PATH is needed). The target directory
#   is cargo's own answer (`cargo metadata`), so CARGO_TARGET_DIR and
#   build.target-dir are honoured; it reaches cgo through CGO_LDFLAGS (-L),
#   ahead of the package's default ${SRCDIR}/../target/release.
# - Offline: the module has no dependencies; GOPROXY=off and GOFLAGS=-mod=mod
#   make sure nothing is fetched.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"

if ! command -v go >/dev/null 2>&1; then
	echo "== installing golang-go (apt-get)"
	export DEBIAN_FRONTEND=noninteractive
	sudo_cmd=""
	if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null 2>&1; then sudo_cmd="sudo -E"; fi
	$sudo_cmd apt-get update -qq
	$sudo_cmd apt-get install -y -qq golang-go >/dev/null
fi
echo "== $(go version)"

echo "== cargo build --release -p kvfeed-ffi"
(cd "$root" && cargo build --release -p kvfeed-ffi)

target_dir="$(cd "$root" && cargo metadata --format-version 1 --no-deps 2>/dev/null |
	sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
target_dir="${target_dir:-${CARGO_TARGET_DIR:-$root/target}}"
case "$target_dir" in /*) ;; *) target_dir="$root/$target_dir" ;; esac
lib="$target_dir/release/libkvfeed_ffi.a"
if [ ! -f "$lib" ]; then
	echo "error: $lib not found after the cargo build" >&2
	exit 1
fi
echo "== linking $lib"

export CGO_ENABLED=1
export CGO_LDFLAGS="-L$target_dir/release${CGO_LDFLAGS:+ $CGO_LDFLAGS}"
export GOFLAGS="-mod=mod${GOFLAGS:+ $GOFLAGS}"
export GOPROXY=off

cd "$here"
echo "== go vet ./..."
go vet ./...
echo "== go test -race -count=1 ./... $*"
go test -race -count=1 "$@" ./...
echo "== go run ./example"
go run ./example >/dev/null
echo "== Go binding: all checks passed"
