#!/usr/bin/env bash
# Runs everything that checks the C ABI from C:
#
#   1. include/kvfeed.h is what cbindgen 0.29.4 generates (ffi/check-header.sh)
#   2. builds libkvfeed (release, feature test-hooks) into an install tree
#   3. the header compiles as C99, C11, C++11 and C++17 with -Wall -Wextra -Werror -pedantic
#   4. the example: the build lines in hello.c's comment run as written; hello
#      linked through `pkg-config --static --libs kvfeed` runs with no
#      LD_LIBRARY_PATH/rpath and needs no libkvfeed.so; kvfeed-shared.pc links the .so
#   5. the C tests, linked statically, then against the shared library
#   6. the C tests under valgrind (--leak-check=full --error-exitcode=1)
#   7. the C tests under AddressSanitizer + UBSan (static library, LeakSanitizer on)
#   8. canaries: deliberate use-after-free and leak programs must be caught by
#      valgrind and by ASan (so that clean runs above mean something)
#
# The last line is "N passed, M failed" over every test run above; the exit
# status is non-zero on any failure.
#
# Environment: CARGO_TARGET_DIR (default: the workspace's target/), CC, CXX,
# KVFEED_VALGRIND_SCALE (percent of the default iteration counts under
# valgrind, default 20), KVFEED_TEST_SCALE (the same for the other runs,
# default 100), KVFEED_SKIP_VALGRIND=1, KVFEED_SKIP_ASAN=1.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target}
CC=${CC:-cc}
CXX=${CXX:-c++}
out="$CARGO_TARGET_DIR/c-tests"
tests="$root/ffi/tests-c"
mkdir -p "$out"
export RUST_BACKTRACE=0 # the INTERNAL test panics on purpose: one line, not a backtrace

passed=0
failed=0
failures=()

step() { printf '\n== %s\n' "$*"; }

# run_suite NAME CMD...: runs a C test binary, adds its "N passed, M failed".
run_suite() {
    local name=$1
    shift
    local log="$out/$name.log" rc
    set +e
    "$@" >"$log" 2>&1
    rc=$?
    set -e
    cat "$log"
    local line p f
    line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log" | tail -n 1 || true)
    if [ -n "$line" ]; then
        p=${line%% passed*}
        f=${line#*, }
        f=${f%% failed*}
    else
        p=0
        f=1
    fi
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        f=1 # the tests passed but the tool (valgrind, ASan) reported an error
    fi
    passed=$((passed + p))
    failed=$((failed + f))
    if [ "$f" -ne 0 ] || [ "$rc" -ne 0 ]; then
        failures+=("$name (exit $rc)")
        echo "-- $name: FAILED (exit $rc)"
    else
        echo "-- $name: ok"
    fi
}

# expect_caught NAME CMD...: a canary must exit non-zero with a report.
expect_caught() {
    local name=$1
    shift
    local log="$out/$name.log" rc
    set +e
    "$@" >"$log" 2>&1
    rc=$?
    set -e
    if [ "$rc" -ne 0 ] && grep -qE 'ERROR: (Address|Leak)Sanitizer|Invalid read|definitely lost' "$log"; then
        passed=$((passed + 1))
        echo "ok   $name: caught ($(grep -m1 -oE 'heap-use-after-free|detected memory leaks|Invalid read of size [0-9]+|definitely lost' "$log"))"
    else
        failed=$((failed + 1))
        failures+=("$name (not caught, exit $rc)")
        echo "FAIL $name: not caught (exit $rc); log: $log"
    fi
}

step "1/8 header"
"$root/ffi/check-header.sh"

step "2/8 build libkvfeed (release, feature test-hooks)"
prefix=$("$root/ffi/build-c.sh" --features test-hooks --prefix "$out/prefix")
version=$(cd "$root" && cargo pkgid -p kvfeed-ffi)
version=${version##*[#@]}
echo "Cargo.toml version: $version"
static_libs="$prefix/lib/libkvfeed.a -lpthread -ldl -lm"
cflags=(-I"$prefix/include" -Wall -Wextra -Werror -g)

step "3/8 header compiles as C and C++ (-Wall -Wextra -Werror -pedantic)"
for std in c99 c11; do
    $CC -std=$std -pedantic "${cflags[@]}" -c "$tests/header_check.c" -o "$out/header_$std.o"
    echo "ok   $CC -std=$std"
done
for std in c++11 c++17; do
    $CXX -x c++ -std=$std -pedantic "${cflags[@]}" -c "$tests/header_check.c" -o "$out/header_$std.o"
    echo "ok   $CXX -std=$std"
done

step "4/8 example and packaging"
# (a) The build lines in the comment at the top of ffi/examples/hello.c, run
# as written from the repository root (they write ./hello there; removed).
hello_lines=$(sed -n '1,/\*\//s/^ \*   \(.*\)$/\1/p' "$root/ffi/examples/hello.c")
echo "$hello_lines" | sed 's/^/   $ /'
[ "$(echo "$hello_lines" | grep -c .)" -eq 4 ] || { echo "hello.c: expected 4 command lines" >&2; exit 1; }
trap 'rm -f "$root/hello"' EXIT
(cd "$root" && bash -euo pipefail -c "$hello_lines") >"$out/hello-comment.log" 2>&1 ||
    { cat "$out/hello-comment.log"; echo "FAIL the commands in hello.c's comment" >&2; exit 1; }
grep -q '^kvfeed ' "$out/hello-comment.log"
rm -f "$root/hello"
echo "ok   hello.c's comment: its cc lines build and run hello (twice)"
# (b) pkg-config: `--static --libs kvfeed` links statically. The program
# runs with no LD_LIBRARY_PATH and no rpath, and needs no libkvfeed.so.
pc() { PKG_CONFIG_PATH="$prefix/lib/pkgconfig" pkg-config "$@"; }
$CC -std=c99 -Wall "$root/ffi/examples/hello.c" $(pc --cflags --static --libs kvfeed) -o "$out/hello-static"
if readelf -d "$out/hello-static" | grep -Eq 'NEEDED.*libkvfeed|RPATH|RUNPATH'; then
    readelf -d "$out/hello-static" >&2
    echo "FAIL hello-static depends on libkvfeed.so or has an rpath" >&2
    exit 1
fi
env -u LD_LIBRARY_PATH "$out/hello-static" >/dev/null
echo "ok   hello-static (pkg-config --static --libs kvfeed: $(pc --static --libs kvfeed))"
# (c) The shared library through kvfeed-shared.pc (with an rpath).
$CC -std=c99 -Wall "$root/ffi/examples/hello.c" $(pc --cflags --libs kvfeed-shared) \
    -Wl,-rpath,"$prefix/lib" -o "$out/hello-shared"
readelf -d "$out/hello-shared" | grep -q 'NEEDED.*libkvfeed.so'
env -u LD_LIBRARY_PATH "$out/hello-shared" >/dev/null
echo "ok   hello-shared (pkg-config --libs kvfeed-shared: $(pc --libs kvfeed-shared))"

step "5/8 C tests"
test_flags=("${cflags[@]}" -std=c11 -O1 -DKVFEED_EXPECTED_VERSION="\"$version\"" -pthread)
$CC "${test_flags[@]}" "$tests/test_kvfeed.c" $static_libs -o "$out/test_kvfeed"
$CC "${test_flags[@]}" "$tests/test_kvfeed.c" -L"$prefix/lib" -lkvfeed -Wl,-rpath,"$prefix/lib" \
    -o "$out/test_kvfeed_shared"
echo "-- static library"
run_suite static "$out/test_kvfeed"
echo "-- shared library"
run_suite shared "$out/test_kvfeed_shared"

step "6/8 C tests under valgrind"
if [ "${KVFEED_SKIP_VALGRIND:-0}" = 1 ] || ! command -v valgrind >/dev/null; then
    echo "SKIPPED (valgrind missing or KVFEED_SKIP_VALGRIND=1)"
    failures+=("valgrind skipped")
    failed=$((failed + 1))
else
    vg=(valgrind -q --leak-check=full --errors-for-leak-kinds=definite,possible --error-exitcode=1)
    KVFEED_TEST_SCALE=${KVFEED_VALGRIND_SCALE:-20} run_suite valgrind "${vg[@]}" "$out/test_kvfeed"
fi

step "7/8 C tests under AddressSanitizer + UBSan (static library)"
if [ "${KVFEED_SKIP_ASAN:-0}" = 1 ]; then
    echo "SKIPPED (KVFEED_SKIP_ASAN=1)"
    failures+=("asan skipped")
    failed=$((failed + 1))
else
    san=(-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all)
    $CC "${test_flags[@]}" "${san[@]}" "$tests/test_kvfeed.c" $static_libs -o "$out/test_kvfeed_asan"
    ASAN_OPTIONS=detect_leaks=1:halt_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
        run_suite asan "$out/test_kvfeed_asan"
fi

step "8/8 canaries: the sanitizer runs must catch deliberate bugs"
$CC -std=c11 -g -I"$prefix/include" "$tests/canary.c" $static_libs -o "$out/canary"
$CC -std=c11 -g -fsanitize=address -fno-omit-frame-pointer -I"$prefix/include" "$tests/canary.c" \
    $static_libs -o "$out/canary_asan"
if [ "${KVFEED_SKIP_VALGRIND:-0}" != 1 ] && command -v valgrind >/dev/null; then
    for mode in use-after-free leak; do
        expect_caught "valgrind-canary-$mode" \
            valgrind -q --leak-check=full --error-exitcode=1 "$out/canary" "$mode"
    done
fi
if [ "${KVFEED_SKIP_ASAN:-0}" != 1 ]; then
    for mode in use-after-free leak; do
        ASAN_OPTIONS=detect_leaks=1 expect_caught "asan-canary-$mode" "$out/canary_asan" "$mode"
    done
fi

echo
if [ ${#failures[@]} -ne 0 ]; then
    echo "failed runs: ${failures[*]}"
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
