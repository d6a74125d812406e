#!/usr/bin/env bash
# Checks the Go binding (a module that builds outside this repository):
#
#   1. go/kvfeed.h, the header the module ships, is include/kvfeed.h
#   2. the C library is installed the way README-GO.md says (ffi/build-c.sh
#      --prefix ...) into <target dir>/kvfeed-go-prefix, found by cgo through
#      pkg-config
#   3. go vet ./..., go test -race -count=1 ./..., go run ./example
#   4. as a user would: only the module's files are copied to a temp dir (what
#      a module download holds), a fresh module in another temp dir imports
#      it, and README-GO.md's steps (its marked install and module blocks, and
#      its main.go) are run as written; the program is built and run with no
#      LD_LIBRARY_PATH (the library is linked statically). The one deviation:
#      the module is not fetched (no network here; GOPROXY=off) but replaced by
#      the copy with a `replace` directive.
#
# Usage: go/run-go-tests.sh [extra go test args, e.g. -run Snapshot -v]
# Installs Debian's golang-go (Go 1.19) when `go` is missing.
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

echo "== 1. go/kvfeed.h is include/kvfeed.h"
if ! cmp -s "$root/include/kvfeed.h" "$here/kvfeed.h"; then
	echo "error: go/kvfeed.h differs from include/kvfeed.h; run ffi/check-header.sh --update" >&2
	exit 1
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/kvfeed-go.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# A fixed prefix in the target directory, not a temp dir: Go's build cache
# keeps the link flags pkg-config gave when a package was first built (they
# are not part of its cache key), so a prefix that moves from run to run
# would leave cached packages pointing at a deleted library.
prefix="${CARGO_TARGET_DIR:-$root/target}/kvfeed-go-prefix"
echo "== 2. install the C library: ffi/build-c.sh --prefix $prefix"
"$root/ffi/build-c.sh" --prefix "$prefix" >/dev/null
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
export CGO_ENABLED=1 GOPROXY=off GOFLAGS=-mod=mod
# Go's build cache does not notice a changed C library (`go help cache`), nor
# pkg-config's link flags (Go 1.19 keeps those of the first build): a test
# binary linked against an older libkvfeed.a, or a deleted path, could be
# reused. A define naming the hash of the library and of kvfeed.pc (which
# holds the prefix) makes the cgo build, and so the link, new whenever
# either changes.
lib_id=$(cat "$prefix/lib/pkgconfig/kvfeed.pc" "$prefix/lib/libkvfeed.a" | sha256sum | cut -c1-16)
export CGO_CFLAGS="${CGO_CFLAGS:--O2 -g} -DKVFEED_LIB_ID=$lib_id"
echo "   pkg-config --libs kvfeed: $(pkg-config --libs kvfeed)"

echo "== 3. go vet, go test -race, the example"
cd "$here"
go vet ./...
go test -race -count=1 "$@" ./...
go run ./example >/dev/null

echo "== 4. as a user: a copy of the module, a fresh module, README-GO.md's steps"
# Only the module's files: those git tracks under go/ (what a published
# module holds); outside a git checkout, the directory as it is.
mod="$work/gomod/kvfeed"
mkdir -p "$mod"
if git -C "$root" rev-parse --git-dir >/dev/null 2>&1; then
	(cd "$here" && git ls-files -z . | xargs -0 cp --parents -t "$mod")
else
	cp -r "$here/." "$mod/"
fi
# README-GO.md's blocks, each the fenced block after a marker comment.
block() {
	awk -v m="<!-- test: $1 -->" '
		$0 == m { want = 1; next }
		want && /^```/ { if (inside) exit; inside = 1; next }
		inside { print }' "$here/README-GO.md"
}
install_steps="$(block install)"
module_steps="$(block module)"
main_go="$(block main.go)"
for b in install_steps module_steps main_go; do
	[ -n "${!b}" ] || { echo "error: README-GO.md has no '$b' block" >&2; exit 1; }
done
# The steps use $HOME/.local as the prefix: give them a HOME of their own
# (keeping the real toolchain and caches).
export CARGO_HOME="${CARGO_HOME:-$HOME/.cargo}" RUSTUP_HOME="${RUSTUP_HOME:-$HOME/.rustup}"
export GOCACHE="$(go env GOCACHE)" GOMODCACHE="$work/gomodcache"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
export HOME="$work/home"
mkdir -p "$HOME"
unset CGO_CFLAGS # as a user: nothing but the README's steps (the module's and the
# prefix's paths are new, so Go's cache has nothing to reuse)
unset PKG_CONFIG_PATH LD_LIBRARY_PATH
echo "-- install block, in the kvfeed checkout:"
echo "$install_steps" | sed 's/^/   | /'
app="$work/app"
mkdir -p "$app"
printf '%s\n' "$main_go" >"$app/main.go"
cat >"$app/go.mod" <<GOMOD
module example.com/app

go 1.19

replace github.com/kvfeed/kvfeed/go => $mod
GOMOD
echo "-- module block, in the new module (main.go from README-GO.md):"
echo "$module_steps" | sed 's/^/   | /'
# One shell, as a user would type them: the install block's exports hold for
# the module block.
(
	cd "$root"
	eval "$install_steps"
	cd "$app"
	eval "$module_steps"
) >"$work/user.log" 2>&1 || {
	cat "$work/user.log"
	echo "error: README-GO.md's steps failed" >&2
	exit 1
}
sed 's/^/   > /' "$work/user.log" | tail -n 12
if [ ! -x "$app/hello" ]; then
	echo "error: the module block did not build ./hello" >&2
	exit 1
fi
if readelf -d "$app/hello" | grep -q 'NEEDED.*libkvfeed'; then
	echo "error: the program needs libkvfeed.so at run time" >&2
	exit 1
fi
env -u LD_LIBRARY_PATH "$app/hello" >/dev/null
echo "== Go binding: all checks passed"
