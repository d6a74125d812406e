#!/usr/bin/env bash
# Builds the kvfeed C library and stages an install tree:
#
#   <prefix>/include/kvfeed.h
#   <prefix>/lib/libkvfeed.a                   (static)
#   <prefix>/lib/libkvfeed.so                  (shared)
#   <prefix>/lib/pkgconfig/kvfeed.pc           static link: the archive by path
#                                              plus the system libraries it needs
#   <prefix>/lib/pkgconfig/kvfeed-shared.pc    dynamic link: -L<prefix>/lib -lkvfeed
#
# `pkg-config --libs kvfeed` (with or without --static) links statically, so
# programs (and the Go package, which uses `#cgo pkg-config: kvfeed`) need
# nothing at run time. A prefix that pkg-config searches by default
# (/usr/local on Debian) needs no PKG_CONFIG_PATH; any other needs
# PKG_CONFIG_PATH=<prefix>/lib/pkgconfig.
#
# Cargo names the artifacts libkvfeed_ffi.{a,so} (the crate `kvfeed` is the
# Rust core), so they are copied under the C name here.
#
#   ffi/build-c.sh [--debug] [--features LIST] [--prefix DIR]
#
# The default prefix is $CARGO_TARGET_DIR/kvfeed-c (CARGO_TARGET_DIR defaults
# to the workspace's target/). The last line printed is the prefix.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
profile=release
features=""
prefix=""
while [ $# -gt 0 ]; do
    case "$1" in
        --debug) profile=debug ;;
        --features) features="$2"; shift ;;
        --prefix) prefix="$2"; shift ;;
        *) echo "build-c: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
[ -n "$prefix" ] || prefix="$target/kvfeed-c"
mkdir -p "$prefix"
prefix=$(cd "$prefix" && pwd) # the .pc files need an absolute path

args=(-p kvfeed-ffi --lib)
[ "$profile" = release ] && args+=(--release)
[ -n "$features" ] && args+=(--features "$features")
(cd "$root" && CARGO_TARGET_DIR="$target" cargo build "${args[@]}" >&2)

version=$(cd "$root" && cargo pkgid -p kvfeed-ffi)
version=${version##*[#@]}
# What a static link needs besides libkvfeed.a (rustc --print native-static-libs on Linux).
native="-lgcc_s -lutil -lrt -lpthread -lm -ldl -lc"

mkdir -p "$prefix/include" "$prefix/lib/pkgconfig"
install -m 644 "$root/include/kvfeed.h" "$prefix/include/kvfeed.h"
install -m 644 "$target/$profile/libkvfeed_ffi.a" "$prefix/lib/libkvfeed.a"
install -m 755 "$target/$profile/libkvfeed_ffi.so" "$prefix/lib/libkvfeed.so"
for pc in kvfeed kvfeed-shared; do
    sed -e "s|@prefix@|$prefix|" -e "s|@version@|$version|" -e "s|@native_static_libs@|$native|" \
        "$root/ffi/$pc.pc.in" > "$prefix/lib/pkgconfig/$pc.pc"
done
echo "build-c: kvfeed $version ($profile${features:+, features $features}) staged in" >&2
echo "$prefix"
