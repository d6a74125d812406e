/*
 * hello.c - put, get and watch through the kvfeed C ABI.
 *
 * Build and run from the repository root, with one cc line after the cargo
 * build (ffi/run-c-tests.sh runs these two lines as written). The library is
 * read from ${CARGO_TARGET_DIR:-target}, cargo's target directory whether or
 * not CARGO_TARGET_DIR is set; if you set another one in a cargo config
 * (build.target-dir), write that directory there instead:
 *
 *   cargo build --release -p kvfeed-ffi
 *   cc -std=c99 -Wall -Iinclude ffi/examples/hello.c ${CARGO_TARGET_DIR:-target}/release/libkvfeed_ffi.a -lpthread -ldl -lm -o hello && ./hello
 *
 * or against an install tree staged by ffi/build-c.sh, which prints its path
 * (pkg-config's kvfeed links statically: nothing is needed at run time):
 *
 *   prefix=$(ffi/build-c.sh)
 *   cc -std=c99 -Wall ffi/examples/hello.c $(PKG_CONFIG_PATH=$prefix/lib/pkgconfig pkg-config --cflags --libs kvfeed) -o hello && ./hello
 */
#include "kvfeed.h"

#include <stdio.h>
#include <string.h>

/* Prints the failing call and returns 1 from main on any unexpected status. */
#define TRY(call)                                                                                  \
    do {                                                                                           \
        kvfeed_status st_ = (call);                                                                \
        if (st_ != KVFEED_OK) {                                                                    \
            fprintf(stderr, "%s: %s\n", #call, kvfeed_status_str(st_));                           \
            return 1;                                                                              \
        }                                                                                          \
    } while (0)

#define BYTES(s) (const uint8_t *)(s), strlen(s)

int main(void) {
    printf("kvfeed %s\n", kvfeed_version());

    kvfeed_store *store = NULL;
    TRY(kvfeed_store_new(NULL, &store)); /* NULL config: defaults */

    /* Watch keys under "user/" from now on. */
    kvfeed_bytes prefix = {(const uint8_t *)"user/", 5};
    kvfeed_watch_opts opts;
    memset(&opts, 0, sizeof opts); /* every kind, start now */
    opts.prefixes = &prefix;
    opts.n_prefixes = 1;
    kvfeed_watcher *watcher = NULL;
    TRY(kvfeed_watch_new(store, &opts, &watcher));

    uint64_t seq = 0;
    TRY(kvfeed_put(store, BYTES("user/ada"), BYTES("Ada Lovelace"), &seq));
    TRY(kvfeed_put(store, BYTES("config/theme"), BYTES("dark"), NULL)); /* not watched */
    TRY(kvfeed_put(store, BYTES("user/ada"), BYTES("Countess of Lovelace"), NULL));
    TRY(kvfeed_delete(store, BYTES("user/ada"), NULL));

    /* get: the value comes back in a library-owned buffer. */
    kvfeed_buf value = {NULL, 0};
    uint64_t version = 0;
    TRY(kvfeed_get(store, BYTES("config/theme"), &value, &version));
    printf("get config/theme = %.*s (version %llu)\n", (int)value.len, (const char *)value.ptr,
           (unsigned long long)version);
    kvfeed_buf_free(&value);

    /* Read the watched events; the event's bytes live until the next call. */
    static const char *const kinds[] = {"?", "create", "update", "?", "delete"};
    kvfeed_event ev;
    kvfeed_status st;
    while ((st = kvfeed_watcher_next(watcher, 100 /* ms */, &ev)) == KVFEED_OK) {
        printf("seq %llu %-6s %.*s", (unsigned long long)ev.seq, kinds[ev.kind & 7],
               (int)ev.key_len, (const char *)ev.key);
        if (ev.has_old) printf(" old=\"%.*s\"", (int)ev.old_len, (const char *)ev.old);
        if (ev.has_value) printf(" new=\"%.*s\"", (int)ev.value_len, (const char *)ev.value);
        printf("\n");
    }
    if (st == KVFEED_LAGGED) printf("lagged: missed %llu\n", (unsigned long long)ev.missed);
    printf("then: %s\n", kvfeed_status_str(st)); /* "timed out" */

    kvfeed_watcher_free(watcher);
    kvfeed_store_free(store);
    return 0;
}
