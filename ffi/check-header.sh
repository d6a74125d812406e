#!/usr/bin/env bash
# Regenerates include/kvfeed.h with the pinned cbindgen into a temporary file
# and fails when it differs from the committed header, or when the Go
# module's copy (go/kvfeed.h, which the module ships so that it builds
# outside this repository) differs from it.
#
#   ffi/check-header.sh            check (exit 1 and a diff when stale)
#   ffi/check-header.sh --update   rewrite include/kvfeed.h and go/kvfeed.h
#
# cbindgen runs as a CLI on ffi/src/lib.rs (it follows the `mod` lines), so
# normal cargo builds never need it. When the pinned version is missing it is
# installed with `cargo install --locked` (set KVFEED_NO_INSTALL=1 to refuse).
set -euo pipefail

CBINDGEN_VERSION=0.29.4
root=$(cd "$(dirname "$0")/.." && pwd)
header="$root/include/kvfeed.h"
go_header="$root/go/kvfeed.h"

have=$(cbindgen --version 2>/dev/null | awk '{print $2}' || true)
if [ "$have" != "$CBINDGEN_VERSION" ]; then
    if [ "${KVFEED_NO_INSTALL:-0}" = 1 ]; then
        echo "check-header: need cbindgen $CBINDGEN_VERSION, found '${have:-none}'" >&2
        echo "  cargo install cbindgen --version $CBINDGEN_VERSION --locked" >&2
        exit 1
    fi
    echo "check-header: installing cbindgen $CBINDGEN_VERSION (found '${have:-none}')" >&2
    cargo install cbindgen --version "$CBINDGEN_VERSION" --locked --quiet >&2
    export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
fi

tmp=$(mktemp "${TMPDIR:-/tmp}/kvfeed.h.XXXXXX")
trap 'rm -f "$tmp"' EXIT
cbindgen --quiet --config "$root/ffi/cbindgen.toml" --output "$tmp" "$root/ffi/src/lib.rs"

if [ "${1:-}" = "--update" ]; then
    cp "$tmp" "$header"
    cp "$tmp" "$go_header"
    echo "check-header: wrote include/kvfeed.h and go/kvfeed.h"
    exit 0
fi
if ! diff -u "$header" "$tmp"; then
    echo "check-header: include/kvfeed.h is stale; run ffi/check-header.sh --update" >&2
    exit 1
fi
if ! cmp -s "$header" "$go_header"; then
    diff -u "$header" "$go_header" || true
    echo "check-header: go/kvfeed.h differs from include/kvfeed.h; run ffi/check-header.sh --update" >&2
    exit 1
fi
echo "check-header: include/kvfeed.h and go/kvfeed.h are up to date (cbindgen $CBINDGEN_VERSION)"
