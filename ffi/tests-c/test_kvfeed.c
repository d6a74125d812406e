/*
 * C tests of the kvfeed C ABI (include/kvfeed.h), run by ffi/run-c-tests.sh.
 *
 *   ./test_kvfeed [name-substring ...]
 *
 * Each test_* function is one test; the last line printed is
 * "N passed, M failed" (tests, not assertions). Environment:
 *   KVFEED_TEST_SCALE  percentage of the default iteration counts (default
 *                      100; run-c-tests.sh uses a small value under valgrind).
 *
 * Build flags expected: -DKVFEED_EXPECTED_VERSION="\"x.y.z\"" (the version
 * from Cargo.toml), and a library built with the cargo feature "test-hooks"
 * (for kvfeed_test_panic).
 */
#define _POSIX_C_SOURCE 200809L
#include "kvfeed.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifndef KVFEED_EXPECTED_VERSION
#error "compile with -DKVFEED_EXPECTED_VERSION=\"\\\"x.y.z\\\"\" (Cargo.toml's version)"
#endif

/* Only in libraries built with the cargo feature "test-hooks". */
kvfeed_status kvfeed_test_panic(void);

/* ------------------------------------------------------------------------ */
/* A minimal harness                                                         */

static atomic_long g_checks;
static atomic_long g_failures;

static void check_failed(const char *file, int line, const char *what) {
    atomic_fetch_add(&g_failures, 1);
    fprintf(stderr, "%s:%d: CHECK failed: %s\n", file, line, what);
}

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        atomic_fetch_add(&g_checks, 1);                                                            \
        if (!(cond)) check_failed(__FILE__, __LINE__, #cond);                                      \
    } while (0)

/* Checks a call's status, naming both statuses when it differs. */
#define CHECK_ST(call, want)                                                                       \
    do {                                                                                           \
        kvfeed_status st_ = (call);                                                                \
        kvfeed_status want_ = (want);                                                              \
        atomic_fetch_add(&g_checks, 1);                                                            \
        if (st_ != want_) {                                                                        \
            char msg_[512];                                                                        \
            snprintf(msg_, sizeof msg_, "%s -> %d (%s), want %d (%s)", #call, (int)st_,            \
                     kvfeed_status_str(st_), (int)want_, kvfeed_status_str(want_));                \
            check_failed(__FILE__, __LINE__, msg_);                                                \
        }                                                                                          \
    } while (0)

/* A byte-string argument from a C string: pointer, length. */
#define S(str) (const uint8_t *)(str), strlen(str)

static int g_scale = 100;
static long scaled(long n) {
    long v = n * g_scale / 100;
    return v < 1 ? 1 : v;
}

static bool bytes_eq(const uint8_t *p, size_t n, const char *s) {
    size_t m = strlen(s);
    return n == m && (m == 0 || memcmp(p, s, m) == 0);
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static kvfeed_store *new_store(uint64_t capacity) {
    kvfeed_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.capacity = capacity;
    kvfeed_store *s = NULL;
    CHECK_ST(kvfeed_store_new(&cfg, &s), KVFEED_OK);
    CHECK(s != NULL);
    return s;
}

static kvfeed_watcher *watch_all(const kvfeed_store *s) {
    kvfeed_watcher *w = NULL;
    CHECK_ST(kvfeed_watch_new(s, NULL, &w), KVFEED_OK);
    CHECK(w != NULL);
    return w;
}

static uint64_t head_of(const kvfeed_store *s) {
    uint64_t h = UINT64_MAX;
    CHECK_ST(kvfeed_head(s, &h), KVFEED_OK);
    return h;
}

/* An event filled with a recognisable pattern, to prove it is left untouched. */
static void poison(kvfeed_event *ev) { memset(ev, 0xAB, sizeof *ev); }
static bool is_poisoned(const kvfeed_event *ev) {
    const unsigned char *p = (const unsigned char *)ev;
    for (size_t i = 0; i < sizeof *ev; i++)
        if (p[i] != 0xAB) return false;
    return true;
}

/* ------------------------------------------------------------------------ */
/* Version and status                                                        */

static void test_version_matches_cargo_toml(void) {
    const char *v = kvfeed_version();
    CHECK(v != NULL);
    CHECK(strcmp(v, KVFEED_EXPECTED_VERSION) == 0);
    char macros[64];
    snprintf(macros, sizeof macros, "%d.%d.%d", KVFEED_VERSION_MAJOR, KVFEED_VERSION_MINOR,
             KVFEED_VERSION_PATCH);
    CHECK(strcmp(macros, KVFEED_EXPECTED_VERSION) == 0);
    CHECK(strcmp(macros, v) == 0);
    CHECK(kvfeed_version() == v); /* static */
}

static void test_status_str(void) {
    const char *seen[10];
    for (int i = 0; i <= 9; i++) {
        seen[i] = kvfeed_status_str((kvfeed_status)i);
        CHECK(seen[i] != NULL && seen[i][0] != '\0');
        for (int j = 0; j < i; j++) CHECK(strcmp(seen[i], seen[j]) != 0);
    }
    CHECK(strcmp(kvfeed_status_str(KVFEED_NOT_FOUND), "not found") == 0);
    CHECK(strcmp(kvfeed_status_str((kvfeed_status)10), "unknown status") == 0);
    CHECK(strcmp(kvfeed_status_str((kvfeed_status)-1), "unknown status") == 0);
    CHECK(strcmp(kvfeed_status_str((kvfeed_status)0x7fffffff), "unknown status") == 0);
    /* The numeric values are ABI. */
    CHECK(KVFEED_OK == 0 && KVFEED_NOT_FOUND == 1 && KVFEED_TIMEOUT == 2 && KVFEED_LAGGED == 3 &&
          KVFEED_CLOSED == 4 && KVFEED_CONFLICT == 5 && KVFEED_NULL_ARG == 6 &&
          KVFEED_TOO_LARGE == 7 && KVFEED_INVALID_ARG == 8 && KVFEED_INTERNAL == 9);
    CHECK(KVFEED_START_NOW == 0 && KVFEED_START_FROM == 1 && KVFEED_START_SNAPSHOT == 2);
    CHECK(KVFEED_KIND_CREATE == 1 && KVFEED_KIND_UPDATE == 2 && KVFEED_KIND_DELETE == 4 &&
          KVFEED_KIND_SNAPSHOT_DONE == 8);
}

static void test_internal_panic_is_caught(void) {
    /* The library prints the panic message on stderr; the process lives. */
    fprintf(stderr, "(a deliberate panic message follows)\n");
    CHECK_ST(kvfeed_test_panic(), KVFEED_INTERNAL);
    CHECK_ST(kvfeed_test_panic(), KVFEED_INTERNAL);
    kvfeed_store *s = new_store(0);
    uint64_t seq = 0;
    CHECK_ST(kvfeed_put(s, S("k"), S("v"), &seq), KVFEED_OK);
    CHECK(seq == 1);
    kvfeed_store_free(s);
}

/* ------------------------------------------------------------------------ */
/* Store                                                                     */

static void test_store_new_and_config(void) {
    kvfeed_store *s = NULL;
    CHECK_ST(kvfeed_store_new(NULL, &s), KVFEED_OK);
    CHECK(s != NULL);
    kvfeed_store_free(s);

    kvfeed_config cfg;
    memset(&cfg, 0, sizeof cfg);
    s = NULL;
    CHECK_ST(kvfeed_store_new(&cfg, &s), KVFEED_OK); /* zero = defaults */
    kvfeed_store_free(s);

    CHECK_ST(kvfeed_store_new(&cfg, NULL), KVFEED_NULL_ARG);
    CHECK_ST(kvfeed_store_new(NULL, NULL), KVFEED_NULL_ARG);

    /* Bad capacities: status, and *out untouched. */
    uint64_t bad[] = {1, 3, 6, 1000, 65535, (1ull << 30) + 1, UINT64_MAX};
    kvfeed_status want[] = {KVFEED_INVALID_ARG, KVFEED_INVALID_ARG, KVFEED_INVALID_ARG,
                            KVFEED_INVALID_ARG, KVFEED_INVALID_ARG, KVFEED_TOO_LARGE,
                            KVFEED_TOO_LARGE};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        kvfeed_store *sentinel = (kvfeed_store *)&cfg;
        s = sentinel;
        cfg.capacity = bad[i];
        CHECK_ST(kvfeed_store_new(&cfg, &s), want[i]);
        CHECK(s == sentinel);
    }
    cfg.capacity = 1ull << 31;
    CHECK_ST(kvfeed_store_new(&cfg, &s), KVFEED_TOO_LARGE);

    /* Good small capacities. */
    uint64_t good[] = {2, 4, 1024};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        cfg.capacity = good[i];
        s = NULL;
        CHECK_ST(kvfeed_store_new(&cfg, &s), KVFEED_OK);
        kvfeed_store_free(s);
    }

    kvfeed_store_free(NULL); /* harmless */
}

static void test_put_get(void) {
    kvfeed_store *s = new_store(0);
    uint64_t seq = 0, version = 0;
    CHECK(head_of(s) == 0);
    CHECK_ST(kvfeed_put(s, S("alpha"), S("one"), &seq), KVFEED_OK);
    CHECK(seq == 1);
    CHECK_ST(kvfeed_put(s, S("beta"), S("two"), NULL), KVFEED_OK); /* out_seq nullable */
    CHECK_ST(kvfeed_put(s, S("alpha"), S("uno"), &seq), KVFEED_OK);
    CHECK(seq == 3);
    CHECK(head_of(s) == 3);

    kvfeed_buf buf = {NULL, 0};
    CHECK_ST(kvfeed_get(s, S("alpha"), &buf, &version), KVFEED_OK);
    CHECK(bytes_eq(buf.ptr, buf.len, "uno"));
    CHECK(version == 3);
    kvfeed_buf_free(&buf);
    CHECK(buf.ptr == NULL && buf.len == 0);
    kvfeed_buf_free(&buf); /* second free harmless */
    kvfeed_buf_free(NULL);

    CHECK_ST(kvfeed_get(s, S("beta"), &buf, NULL), KVFEED_OK); /* out_version nullable */
    CHECK(bytes_eq(buf.ptr, buf.len, "two"));
    kvfeed_buf_free(&buf);

    /* NOT_FOUND leaves the outputs untouched. */
    kvfeed_buf untouched = {(uint8_t *)0x1234, 77};
    version = 999;
    CHECK_ST(kvfeed_get(s, S("gamma"), &untouched, &version), KVFEED_NOT_FOUND);
    CHECK(untouched.ptr == (uint8_t *)0x1234 && untouched.len == 77 && version == 999);

    /* Empty key and empty value: NULL with length 0 is the empty string. */
    CHECK_ST(kvfeed_put(s, NULL, 0, NULL, 0, &seq), KVFEED_OK);
    CHECK_ST(kvfeed_get(s, NULL, 0, &buf, &version), KVFEED_OK);
    CHECK(buf.ptr == NULL && buf.len == 0 && version == seq);
    kvfeed_buf_free(&buf);
    CHECK_ST(kvfeed_get(s, (const uint8_t *)"", 0, &buf, NULL), KVFEED_OK);

    /* Binary keys and values, with NUL bytes inside. */
    const uint8_t key[] = {0, 1, 2, 0, 255};
    const uint8_t val[] = {9, 0, 8, 0};
    CHECK_ST(kvfeed_put(s, key, sizeof key, val, sizeof val, &seq), KVFEED_OK);
    CHECK_ST(kvfeed_get(s, key, sizeof key, &buf, &version), KVFEED_OK);
    CHECK(buf.len == sizeof val && memcmp(buf.ptr, val, sizeof val) == 0 && version == seq);
    kvfeed_buf_free(&buf);

    /* A buffer outlives its store. */
    CHECK_ST(kvfeed_get(s, S("alpha"), &buf, NULL), KVFEED_OK);
    kvfeed_store_free(s);
    CHECK(bytes_eq(buf.ptr, buf.len, "uno"));
    kvfeed_buf_free(&buf);
}

static void test_delete_and_prefix(void) {
    kvfeed_store *s = new_store(0);
    kvfeed_watcher *w = watch_all(s);
    uint64_t seq = 0, n = 99;
    CHECK_ST(kvfeed_put(s, S("user/1"), S("a"), NULL), KVFEED_OK);
    CHECK_ST(kvfeed_put(s, S("user/2"), S("b"), NULL), KVFEED_OK);
    CHECK_ST(kvfeed_put(s, S("user/3"), S("c"), NULL), KVFEED_OK);
    CHECK_ST(kvfeed_put(s, S("group/1"), S("d"), NULL), KVFEED_OK);

    CHECK_ST(kvfeed_delete(s, S("user/1"), &seq), KVFEED_OK);
    CHECK(seq == 5 && head_of(s) == 5);
    /* Deleting an absent key: NOT_FOUND, no event, out untouched. */
    seq = 42;
    CHECK_ST(kvfeed_delete(s, S("user/1"), &seq), KVFEED_NOT_FOUND);
    CHECK_ST(kvfeed_delete(s, S("nobody"), NULL), KVFEED_NOT_FOUND);
    CHECK(seq == 42 && head_of(s) == 5);

    CHECK_ST(kvfeed_delete_prefix(s, S("user/"), &n), KVFEED_OK);
    CHECK(n == 2 && head_of(s) == 7);
    CHECK_ST(kvfeed_delete_prefix(s, S("user/"), &n), KVFEED_OK);
    CHECK(n == 0 && head_of(s) == 7);
    CHECK_ST(kvfeed_delete_prefix(s, S("zzz"), NULL), KVFEED_OK);
    kvfeed_buf buf = {NULL, 0};
    CHECK_ST(kvfeed_get(s, S("user/2"), &buf, NULL), KVFEED_NOT_FOUND);
    CHECK_ST(kvfeed_get(s, S("group/1"), &buf, NULL), KVFEED_OK);
    kvfeed_buf_free(&buf);
    /* Empty prefix: every key. */
    CHECK_ST(kvfeed_delete_prefix(s, NULL, 0, &n), KVFEED_OK);
    CHECK(n == 1 && head_of(s) == 8);

    /* The watcher saw 4 creates and 4 deletes, the deletes carrying old. */
    kvfeed_event ev;
    int creates = 0, deletes = 0;
    uint64_t last = 0;
    while (kvfeed_watcher_next(w, 0, &ev) == KVFEED_OK) {
        CHECK(ev.seq == last + 1);
        last = ev.seq;
        if (ev.kind == KVFEED_KIND_CREATE) {
            creates++;
            CHECK(ev.has_value && !ev.has_old);
        } else if (ev.kind == KVFEED_KIND_DELETE) {
            deletes++;
            CHECK(!ev.has_value && ev.has_old && ev.old_len == 1);
        }
    }
    CHECK(creates == 4 && deletes == 4);
    kvfeed_watcher_free(w);
    kvfeed_store_free(s);
}

static void test_compare_and_put(void) {
    kvfeed_store *s = new_store(0);
    uint64_t seq = 0, cur = 0;
    CHECK_ST(kvfeed_compare_and_put(s, S("k"), 0, S("v1"), &seq, &cur), KVFEED_OK);
    CHECK(seq == 1);
    /* expected 0 on a present key: CONFLICT, current version, out_seq untouched. */
    seq = 77;
    CHECK_ST(kvfeed_compare_and_put(s, S("k"), 0, S("v2"), &seq, &cur), KVFEED_CONFLICT);
    CHECK(cur == 1 && seq == 77);
    CHECK_ST(kvfeed_compare_and_put(s, S("k"), 5, S("v2"), &seq, &cur), KVFEED_CONFLICT);
    CHECK(cur == 1);
    CHECK_ST(kvfeed_compare_and_put(s, S("k"), 1, S("v2"), &seq, &cur), KVFEED_OK);
    CHECK(seq == head_of(s));
    uint64_t v2 = seq;
    /* An absent key with a non-zero expectation: conflict with current 0. */
    cur = 55;
    CHECK_ST(kvfeed_compare_and_put(s, S("absent"), 3, S("x"), &seq, &cur), KVFEED_CONFLICT);
    CHECK(cur == 0);
    /* Both outs are required. */
    CHECK_ST(kvfeed_compare_and_put(s, S("k"), v2, S("v3"), NULL, &cur), KVFEED_NULL_ARG);
    CHECK_ST(kvfeed_compare_and_put(s, S("k"), v2, S("v3"), &seq, NULL), KVFEED_NULL_ARG);
    kvfeed_buf buf = {NULL, 0};
    uint64_t version = 0;
    CHECK_ST(kvfeed_get(s, S("k"), &buf, &version), KVFEED_OK);
    CHECK(bytes_eq(buf.ptr, buf.len, "v2") && version == v2);
    kvfeed_buf_free(&buf);
    kvfeed_store_free(s);
}

static void test_suppress_unchanged(void) {
    kvfeed_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.suppress_unchanged = 1;
    kvfeed_store *s = NULL;
    CHECK_ST(kvfeed_store_new(&cfg, &s), KVFEED_OK);
    kvfeed_watcher *w = watch_all(s);
    uint64_t seq = 0;
    CHECK_ST(kvfeed_put(s, S("k"), S("same"), &seq), KVFEED_OK);
    CHECK(seq == 1);
    CHECK_ST(kvfeed_put(s, S("k"), S("same"), &seq), KVFEED_OK);
    CHECK(seq == 1); /* the current version, no event */
    CHECK_ST(kvfeed_put(s, S("k"), S("new"), &seq), KVFEED_OK);
    CHECK(seq == 2);
    kvfeed_event ev;
    CHECK_ST(kvfeed_watcher_next(w, 0, &ev), KVFEED_OK);
    CHECK(ev.seq == 1 && ev.kind == KVFEED_KIND_CREATE);
    CHECK_ST(kvfeed_watcher_next(w, 0, &ev), KVFEED_OK);
    CHECK(ev.seq == 2 && ev.kind == KVFEED_KIND_UPDATE);
    CHECK(bytes_eq(ev.old, ev.old_len, "same") && bytes_eq(ev.value, ev.value_len, "new"));
    CHECK_ST(kvfeed_watcher_next(w, 0, &ev), KVFEED_TIMEOUT);
    kvfeed_watcher_free(w);
    kvfeed_store_free(s);
}

/* ------------------------------------------------------------------------ */
/* Bad input: NULL, oversize, malformed (the spec's table)                  */

static void test_null_args(void) {
    kvfeed_store *s = new_store(0);
    kvfeed_watcher *w = watch_all(s);
    uint64_t u = 0;
    kvfeed_buf buf = {NULL, 0};
    kvfeed_event ev;
    CHECK_ST(kvfeed_put(s, S("k"), S("v"), NULL), KVFEED_OK);
    uint64_t head = head_of(s);

    /* NULL handles. */
    CHECK_ST(kvfeed_put(NULL, S("k"), S("v"), &u), KVFEED_NULL_ARG);
    CHECK_ST(kvfeed_get(NULL, S("k"), &buf, &u), KVFEED_NULL_ARG);
    CHECK_ST(kvfeed_delete(NULL, S("k"), &u), KVFEED_NULL_ARG);
    CHECK_ST(kvfeed_delete_prefix(NULL, S("k"), &u), KVFEED_NULL_ARG);
    CHECK_ST(kvfeed_compare_and_put(NULL, S("k"), 0, S("v"), &u, &u), KVFEED_NULL_ARG);
    CHECK_ST(kvfeed_head(NULL, &u), KVFEED_NULL_ARG);
    CHECK_ST(kvfeed_store_close(NULL), KVFEED_NULL_ARG);
    CHECK_ST(kvfeed_watch_new(NULL, NULL, &w), KVFEED_NULL_ARG);
    CHECK_ST(kvfeed_watcher_next(NULL, 0, &ev), KVFEED_NULL_ARG);
    CHECK_ST(kvfeed_watcher_cursor(NULL, &u), KVFEED_NULL_ARG);
    CHECK_ST(kvfeed_watcher_close(NULL), KVFEED_NULL_ARG);
    kvfeed_watcher_free(NULL);
    kvfeed_store_free(NULL);

    /* NULL required out-parameters. */
    CHECK_ST(kvfeed_get(s, S("k"), NULL, &u), KVFEED_NULL_ARG);
    CHECK_ST(kvfeed_head(s, NULL), KVFEED_NULL_ARG);
    CHECK_ST(kvfeed_watch_new(s, NULL, NULL), KVFEED_NULL_ARG);
    CHECK_ST(kvfeed_watcher_next(w, 0, NULL), KVFEED_NULL_ARG);
    CHECK_ST(kvfeed_watcher_cursor(w, NULL), KVFEED_NULL_ARG);

    /* NULL byte pointers with a non-zero length. */
    CHECK_ST(kvfeed_put(s, NULL, 1, S("v"), &u), KVFEED_NULL_ARG);
    CHECK_ST(kvfeed_put(s, S("k"), NULL, 3, &u), KVFEED_NULL_ARG);
    CHECK_ST(kvfeed_get(s, NULL, 1, &buf, &u), KVFEED_NULL_ARG);
    CHECK_ST(kvfeed_delete(s, NULL, 1, &u), KVFEED_NULL_ARG);
    CHECK_ST(kvfeed_delete_prefix(s, NULL, 1, &u), KVFEED_NULL_ARG);
    CHECK_ST(kvfeed_compare_and_put(s, NULL, 1, 0, S("v"), &u, &u), KVFEED_NULL_ARG);
    CHECK_ST(kvfeed_compare_and_put(s, S("k"), 1, NULL, 1, &u, &u), KVFEED_NULL_ARG);

    /* Nothing changed: same head, the watcher sees only the first put. */
    CHECK(head_of(s) == head);
    CHECK_ST(kvfeed_watcher_next(w, 0, &ev), KVFEED_OK);
    CHECK(ev.seq == 1);
    CHECK_ST(kvfeed_watcher_next(w, 0, &ev), KVFEED_TIMEOUT);
    CHECK_ST(kvfeed_get(s, S("k"), &buf, &u), KVFEED_OK);
    CHECK(bytes_eq(buf.ptr, buf.len, "v") && u == 1);
    kvfeed_buf_free(&buf);
    kvfeed_watcher_free(w);
    kvfeed_store_free(s);
}

static void test_too_large(void) {
    kvfeed_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.max_key_len = 8;
    cfg.max_value_len = 16;
    kvfeed_store *s = NULL;
    CHECK_ST(kvfeed_store_new(&cfg, &s), KVFEED_OK);
    kvfeed_watcher *w = watch_all(s);
    uint64_t u = 12345;
    kvfeed_buf buf = {NULL, 0};
    const char *k8 = "12345678", *k9 = "123456789";
    const char *v16 = "0123456789abcdef", *v17 = "0123456789abcdefg";

    CHECK_ST(kvfeed_put(s, S(k8), S(v16), NULL), KVFEED_OK); /* at the limit: fine */
    uint64_t head = head_of(s);
    CHECK_ST(kvfeed_put(s, S(k9), S("v"), &u), KVFEED_TOO_LARGE);
    CHECK_ST(kvfeed_put(s, S(k8), S(v17), &u), KVFEED_TOO_LARGE);
    CHECK_ST(kvfeed_put(s, S("k"), (const uint8_t *)v17, SIZE_MAX, &u), KVFEED_TOO_LARGE);
    CHECK_ST(kvfeed_get(s, S(k9), &buf, &u), KVFEED_TOO_LARGE);
    CHECK_ST(kvfeed_delete(s, S(k9), &u), KVFEED_TOO_LARGE);
    CHECK_ST(kvfeed_delete_prefix(s, S(k9), &u), KVFEED_TOO_LARGE);
    CHECK_ST(kvfeed_compare_and_put(s, S(k9), 0, S("v"), &u, &u), KVFEED_TOO_LARGE);
    CHECK_ST(kvfeed_compare_and_put(s, S(k8), 1, S(v17), &u, &u), KVFEED_TOO_LARGE);
    CHECK(u == 12345); /* outputs untouched */
    CHECK(buf.ptr == NULL);

    /* Watch filters are keys too. */
    kvfeed_bytes big = {(const uint8_t *)k9, 9};
    kvfeed_watch_opts o;
    memset(&o, 0, sizeof o);
    o.keys = &big;
    o.n_keys = 1;
    kvfeed_watcher *w2 = (kvfeed_watcher *)&o;
    CHECK_ST(kvfeed_watch_new(s, &o, &w2), KVFEED_TOO_LARGE);
    CHECK(w2 == (kvfeed_watcher *)&o);
    memset(&o, 0, sizeof o);
    o.prefixes = &big;
    o.n_prefixes = 1;
    CHECK_ST(kvfeed_watch_new(s, &o, &w2), KVFEED_TOO_LARGE);

    /* Nothing changed. */
    CHECK(head_of(s) == head);
    kvfeed_event ev;
    CHECK_ST(kvfeed_watcher_next(w, 0, &ev), KVFEED_OK);
    CHECK(bytes_eq(ev.key, ev.key_len, k8) && bytes_eq(ev.value, ev.value_len, v16));
    CHECK_ST(kvfeed_watcher_next(w, 0, &ev), KVFEED_TIMEOUT);
    kvfeed_watcher_free(w);
    kvfeed_store_free(s);
}

static void test_malformed_watch_opts(void) {
    kvfeed_store *s = new_store(0);
    kvfeed_watch_opts o;
    kvfeed_watcher *sentinel = (kvfeed_watcher *)&o, *w;
    kvfeed_bytes nullbytes = {NULL, 3};

#define EXPECT_BAD_OPTS(want)                                                                      \
    do {                                                                                           \
        w = sentinel;                                                                              \
        CHECK_ST(kvfeed_watch_new(s, &o, &w), want);                                               \
        CHECK(w == sentinel);                                                                      \
    } while (0)

    memset(&o, 0, sizeof o);
    o.n_keys = 2; /* keys NULL */
    EXPECT_BAD_OPTS(KVFEED_NULL_ARG);
    memset(&o, 0, sizeof o);
    o.n_prefixes = 1; /* prefixes NULL */
    EXPECT_BAD_OPTS(KVFEED_NULL_ARG);
    memset(&o, 0, sizeof o);
    o.keys = &nullbytes; /* an entry NULL with length 3 */
    o.n_keys = 1;
    EXPECT_BAD_OPTS(KVFEED_NULL_ARG);
    memset(&o, 0, sizeof o);
    o.prefixes = &nullbytes;
    o.n_prefixes = 1;
    EXPECT_BAD_OPTS(KVFEED_NULL_ARG);
    memset(&o, 0, sizeof o);
    o.keys = &nullbytes;
    o.n_keys = SIZE_MAX; /* cannot be an array */
    EXPECT_BAD_OPTS(KVFEED_INVALID_ARG);
    memset(&o, 0, sizeof o);
    o.start = 3;
    EXPECT_BAD_OPTS(KVFEED_INVALID_ARG);
    o.start = UINT32_MAX;
    EXPECT_BAD_OPTS(KVFEED_INVALID_ARG);
    memset(&o, 0, sizeof o);
    o.kinds = 16;
    EXPECT_BAD_OPTS(KVFEED_INVALID_ARG);
    o.kinds = KVFEED_KIND_CREATE | 0x100;
    EXPECT_BAD_OPTS(KVFEED_INVALID_ARG);
    o.kinds = KVFEED_KIND_SNAPSHOT_DONE; /* selects no change kind */
    EXPECT_BAD_OPTS(KVFEED_INVALID_ARG);
#undef EXPECT_BAD_OPTS

    /* keys non-NULL with n_keys 0 is simply "no keys"; SNAPSHOT_DONE in a mask is accepted. */
    memset(&o, 0, sizeof o);
    o.keys = &nullbytes;
    o.kinds = KVFEED_KIND_CREATE | KVFEED_KIND_SNAPSHOT_DONE;
    w = NULL;
    CHECK_ST(kvfeed_watch_new(s, &o, &w), KVFEED_OK);
    CHECK(w != NULL);
    kvfeed_watcher_free(w);
    kvfeed_store_free(s);
}

/* ------------------------------------------------------------------------ */
/* Watchers                                                                  */

static void test_watch_events(void) {
    kvfeed_store *s = new_store(0);
    CHECK_ST(kvfeed_put(s, S("before"), S("x"), NULL), KVFEED_OK); /* before the watcher */
    kvfeed_watcher *w = watch_all(s);
    uint64_t cursor = 0;
    CHECK_ST(kvfeed_watcher_cursor(w, &cursor), KVFEED_OK);
    CHECK(cursor == 2);

    kvfeed_event ev;
    poison(&ev);
    CHECK_ST(kvfeed_watcher_next(w, 0, &ev), KVFEED_TIMEOUT);
    CHECK(is_poisoned(&ev));
    double t0 = now_ms();
    CHECK_ST(kvfeed_watcher_next(w, 30, &ev), KVFEED_TIMEOUT);
    CHECK(now_ms() - t0 >= 25);
    CHECK(is_poisoned(&ev));

    CHECK_ST(kvfeed_put(s, S("k"), S("v1"), NULL), KVFEED_OK);
    CHECK_ST(kvfeed_put(s, S("k"), S("v2"), NULL), KVFEED_OK);
    CHECK_ST(kvfeed_put(s, S("e"), NULL, 0, NULL), KVFEED_OK);
    CHECK_ST(kvfeed_delete(s, S("k"), NULL), KVFEED_OK);

    CHECK_ST(kvfeed_watcher_next(w, 0, &ev), KVFEED_OK);
    CHECK(ev.seq == 2 && ev.kind == KVFEED_KIND_CREATE);
    CHECK(bytes_eq(ev.key, ev.key_len, "k") && ev.has_value && bytes_eq(ev.value, ev.value_len, "v1"));
    CHECK(!ev.has_old && ev.old == NULL && ev.old_len == 0);
    CHECK(ev.missed == 0 && ev.resume_at == 0 && ev.at == 0 && ev.consistent_at == 0);
    CHECK_ST(kvfeed_watcher_cursor(w, &cursor), KVFEED_OK);
    CHECK(cursor == 3);
    /* cursor does not invalidate the event */
    CHECK(bytes_eq(ev.key, ev.key_len, "k"));

    CHECK_ST(kvfeed_watcher_next(w, -1, &ev), KVFEED_OK); /* wait forever, but one is there */
    CHECK(ev.seq == 3 && ev.kind == KVFEED_KIND_UPDATE);
    CHECK(ev.has_old && bytes_eq(ev.old, ev.old_len, "v1"));
    CHECK(ev.has_value && bytes_eq(ev.value, ev.value_len, "v2"));

    CHECK_ST(kvfeed_watcher_next(w, 1000, &ev), KVFEED_OK);
    CHECK(ev.seq == 4 && ev.kind == KVFEED_KIND_CREATE);
    CHECK(ev.has_value && ev.value == NULL && ev.value_len == 0); /* empty, not absent */

    CHECK_ST(kvfeed_watcher_next(w, 0, &ev), KVFEED_OK);
    CHECK(ev.seq == 5 && ev.kind == KVFEED_KIND_DELETE);
    CHECK(!ev.has_value && ev.value == NULL);
    CHECK(ev.has_old && bytes_eq(ev.old, ev.old_len, "v2"));

    CHECK_ST(kvfeed_watcher_next(w, 0, &ev), KVFEED_TIMEOUT);
    kvfeed_watcher_free(w);
    kvfeed_store_free(s);
}

static void test_watch_filters(void) {
    kvfeed_store *s = new_store(0);
    kvfeed_bytes keys[2] = {{(const uint8_t *)"config", 6}, {(const uint8_t *)"flag", 4}};
    kvfeed_bytes prefixes[1] = {{(const uint8_t *)"user/", 5}};
    kvfeed_watch_opts o;
    memset(&o, 0, sizeof o);
    o.keys = keys;
    o.n_keys = 2;
    o.prefixes = prefixes;
    o.n_prefixes = 1;
    kvfeed_watcher *w_keys = NULL, *w_kinds = NULL, *w_prefix_only = NULL;
    CHECK_ST(kvfeed_watch_new(s, &o, &w_keys), KVFEED_OK);
    memset(&o, 0, sizeof o);
    o.kinds = KVFEED_KIND_UPDATE | KVFEED_KIND_DELETE;
    CHECK_ST(kvfeed_watch_new(s, &o, &w_kinds), KVFEED_OK);
    memset(&o, 0, sizeof o);
    o.prefixes = prefixes;
    o.n_prefixes = 1;
    o.kinds = KVFEED_KIND_CREATE;
    CHECK_ST(kvfeed_watch_new(s, &o, &w_prefix_only), KVFEED_OK);
    /* The options were only read during the call. */
    memset(&o, 0xFF, sizeof o);
    memset(keys, 0, sizeof keys);

    CHECK_ST(kvfeed_put(s, S("config"), S("1"), NULL), KVFEED_OK);  /* 1 keys */
    CHECK_ST(kvfeed_put(s, S("other"), S("1"), NULL), KVFEED_OK);   /* 2 none... */
    CHECK_ST(kvfeed_put(s, S("user/7"), S("1"), NULL), KVFEED_OK);  /* 3 keys, prefix */
    CHECK_ST(kvfeed_put(s, S("config"), S("2"), NULL), KVFEED_OK);  /* 4 keys, kinds */
    CHECK_ST(kvfeed_put(s, S("flagpole"), S("1"), NULL), KVFEED_OK); /* 5 none */
    CHECK_ST(kvfeed_delete(s, S("user/7"), NULL), KVFEED_OK);        /* 6 keys, kinds */
    CHECK_ST(kvfeed_put(s, S("other"), S("2"), NULL), KVFEED_OK);   /* 7 kinds */
    CHECK_ST(kvfeed_put(s, S("user"), S("1"), NULL), KVFEED_OK);    /* 8 none */

    struct {
        kvfeed_watcher *w;
        uint64_t want[8];
        int n;
    } cases[] = {{w_keys, {1, 3, 4, 6}, 4}, {w_kinds, {4, 6, 7}, 3}, {w_prefix_only, {3}, 1}};
    for (size_t c = 0; c < 3; c++) {
        kvfeed_event ev;
        for (int i = 0; i < cases[c].n; i++) {
            CHECK_ST(kvfeed_watcher_next(cases[c].w, 0, &ev), KVFEED_OK);
            CHECK(ev.seq == cases[c].want[i]);
        }
        CHECK_ST(kvfeed_watcher_next(cases[c].w, 0, &ev), KVFEED_TIMEOUT);
        kvfeed_watcher_free(cases[c].w);
    }
    kvfeed_store_free(s);
}

static void test_watch_from_seq(void) {
    kvfeed_store *s = new_store(16);
    for (int i = 0; i < 10; i++) {
        char k[16];
        snprintf(k, sizeof k, "k%d", i);
        CHECK_ST(kvfeed_put(s, S(k), S("v"), NULL), KVFEED_OK);
    }
    kvfeed_watch_opts o;
    memset(&o, 0, sizeof o);
    o.start = KVFEED_START_FROM;
    o.from_seq = 7;
    kvfeed_watcher *w = NULL;
    CHECK_ST(kvfeed_watch_new(s, &o, &w), KVFEED_OK);
    uint64_t cursor = 0;
    CHECK_ST(kvfeed_watcher_cursor(w, &cursor), KVFEED_OK);
    CHECK(cursor == 7);
    kvfeed_event ev;
    for (uint64_t want = 7; want <= 10; want++) {
        CHECK_ST(kvfeed_watcher_next(w, 0, &ev), KVFEED_OK);
        CHECK(ev.seq == want);
    }
    CHECK_ST(kvfeed_watcher_next(w, 0, &ev), KVFEED_TIMEOUT);
    kvfeed_watcher_free(w);

    o.from_seq = 0; /* 0 counts as 1 */
    CHECK_ST(kvfeed_watch_new(s, &o, &w), KVFEED_OK);
    CHECK_ST(kvfeed_watcher_next(w, 0, &ev), KVFEED_OK);
    CHECK(ev.seq == 1 && bytes_eq(ev.key, ev.key_len, "k0"));
    kvfeed_watcher_free(w);

    /* from_seq is ignored unless start is FROM */
    o.start = KVFEED_START_NOW;
    o.from_seq = 3;
    CHECK_ST(kvfeed_watch_new(s, &o, &w), KVFEED_OK);
    CHECK_ST(kvfeed_watcher_cursor(w, &cursor), KVFEED_OK);
    CHECK(cursor == 11);
    kvfeed_watcher_free(w);

    /* A seq already overwritten: LAGGED at once, with the count. */
    for (int i = 0; i < 30; i++) CHECK_ST(kvfeed_put(s, S("churn"), S("v"), NULL), KVFEED_OK);
    o.start = KVFEED_START_FROM;
    o.from_seq = 1;
    CHECK_ST(kvfeed_watch_new(s, &o, &w), KVFEED_OK);
    poison(&ev);
    CHECK_ST(kvfeed_watcher_next(w, 0, &ev), KVFEED_LAGGED);
    CHECK(ev.resume_at > 1 && ev.missed == ev.resume_at - 1);
    CHECK(ev.resume_at >= head_of(s) - 16 + 1);
    CHECK(ev.key == NULL && ev.value == NULL && ev.old == NULL && ev.kind == 0);
    CHECK_ST(kvfeed_watcher_cursor(w, &cursor), KVFEED_OK);
    CHECK(cursor == ev.resume_at);
    uint64_t next = ev.resume_at;
    CHECK_ST(kvfeed_watcher_next(w, 0, &ev), KVFEED_OK);
    CHECK(ev.seq == next);
    kvfeed_watcher_free(w);
    kvfeed_store_free(s);
}

static void test_lagged_slow_watcher(void) {
    kvfeed_store *s = new_store(8);
    kvfeed_watcher *w = watch_all(s);
    kvfeed_event ev;
    CHECK_ST(kvfeed_put(s, S("a"), S("0"), NULL), KVFEED_OK);
    CHECK_ST(kvfeed_watcher_next(w, 0, &ev), KVFEED_OK);
    CHECK(ev.seq == 1);
    for (int i = 0; i < 50; i++) CHECK_ST(kvfeed_put(s, S("a"), S("x"), NULL), KVFEED_OK);
    uint64_t head = head_of(s); /* 51 */
    uint64_t cursor = 0;
    CHECK_ST(kvfeed_watcher_cursor(w, &cursor), KVFEED_OK);
    CHECK(cursor == 2);
    CHECK_ST(kvfeed_watcher_next(w, 0, &ev), KVFEED_LAGGED);
    CHECK(ev.missed == ev.resume_at - cursor); /* exact count */
    CHECK(ev.resume_at + 8 > head);            /* within the ring */
    uint64_t delivered = 0, missed = ev.missed, last = ev.resume_at - 1;
    kvfeed_status st;
    while ((st = kvfeed_watcher_next(w, 0, &ev)) == KVFEED_OK) {
        CHECK(ev.seq == last + 1);
        last = ev.seq;
        delivered++;
    }
    CHECK(st == KVFEED_TIMEOUT);
    CHECK(1 + delivered + missed == head); /* every seq is delivered or counted */
    /* It continues: */
    CHECK_ST(kvfeed_put(s, S("b"), S("y"), NULL), KVFEED_OK);
    CHECK_ST(kvfeed_watcher_next(w, 0, &ev), KVFEED_OK);
    CHECK(ev.seq == head + 1);
    kvfeed_watcher_free(w);
    kvfeed_store_free(s);
}

static void test_snapshot(void) {
    kvfeed_store *s = new_store(0);
    uint64_t va = 0, vb = 0, vc = 0;
    CHECK_ST(kvfeed_put(s, S("a"), S("1"), NULL), KVFEED_OK);
    CHECK_ST(kvfeed_put(s, S("b"), S("1"), &vb), KVFEED_OK);
    CHECK_ST(kvfeed_put(s, S("a"), S("2"), &va), KVFEED_OK);
    CHECK_ST(kvfeed_put(s, S("c"), S("1"), &vc), KVFEED_OK);
    CHECK_ST(kvfeed_delete(s, S("c"), NULL), KVFEED_OK);
    CHECK_ST(kvfeed_put(s, S("other"), S("1"), NULL), KVFEED_OK);

    kvfeed_bytes keys[3] = {{(const uint8_t *)"a", 1}, {(const uint8_t *)"b", 1},
                            {(const uint8_t *)"c", 1}};
    kvfeed_watch_opts o;
    memset(&o, 0, sizeof o);
    o.start = KVFEED_START_SNAPSHOT;
    o.keys = keys;
    o.n_keys = 3;
    kvfeed_watcher *w = NULL;
    CHECK_ST(kvfeed_watch_new(s, &o, &w), KVFEED_OK);
    uint64_t head = head_of(s);

    kvfeed_event ev;
    bool seen_a = false, seen_b = false;
    for (int i = 0; i < 2; i++) {
        CHECK_ST(kvfeed_watcher_next(w, 0, &ev), KVFEED_OK);
        CHECK(ev.kind == KVFEED_KIND_CREATE && ev.has_value && !ev.has_old);
        if (bytes_eq(ev.key, ev.key_len, "a")) {
            seen_a = true;
            CHECK(ev.seq == va && bytes_eq(ev.value, ev.value_len, "2"));
        } else if (bytes_eq(ev.key, ev.key_len, "b")) {
            seen_b = true;
            CHECK(ev.seq == vb && bytes_eq(ev.value, ev.value_len, "1"));
        } else {
            CHECK(!"unexpected snapshot key");
        }
    }
    CHECK(seen_a && seen_b);
    CHECK_ST(kvfeed_watcher_next(w, 0, &ev), KVFEED_OK);
    CHECK(ev.kind == KVFEED_KIND_SNAPSHOT_DONE);
    CHECK(ev.at == head && ev.consistent_at >= ev.at);
    CHECK(ev.key == NULL && !ev.has_value && !ev.has_old);
    /* live events after the marker */
    CHECK_ST(kvfeed_put(s, S("c"), S("2"), &vc), KVFEED_OK);
    CHECK_ST(kvfeed_put(s, S("zzz"), S("2"), NULL), KVFEED_OK);
    CHECK_ST(kvfeed_watcher_next(w, 0, &ev), KVFEED_OK);
    CHECK(ev.seq == vc && ev.kind == KVFEED_KIND_CREATE && bytes_eq(ev.key, ev.key_len, "c"));
    CHECK_ST(kvfeed_watcher_next(w, 0, &ev), KVFEED_TIMEOUT);
    kvfeed_watcher_free(w);

    /* A snapshot of an empty store: just the marker. */
    kvfeed_store *empty = new_store(0);
    memset(&o, 0, sizeof o);
    o.start = KVFEED_START_SNAPSHOT;
    CHECK_ST(kvfeed_watch_new(empty, &o, &w), KVFEED_OK);
    CHECK_ST(kvfeed_watcher_next(w, 0, &ev), KVFEED_OK);
    CHECK(ev.kind == KVFEED_KIND_SNAPSHOT_DONE && ev.at == 0 && ev.consistent_at == 0);
    kvfeed_watcher_free(w);
    kvfeed_store_free(empty);
    kvfeed_store_free(s);
}

static void test_event_outlives_ring_until_next_call(void) {
    /* Zero copy: the event's bytes live in the watcher, not the ring; they
     * survive the ring overwriting that slot, and even the store's free. */
    kvfeed_store *s = new_store(4);
    kvfeed_watcher *w = watch_all(s);
    CHECK_ST(kvfeed_put(s, S("the-key"), S("the-value"), NULL), KVFEED_OK);
    CHECK_ST(kvfeed_put(s, S("the-key"), S("second"), NULL), KVFEED_OK);
    kvfeed_event ev;
    CHECK_ST(kvfeed_watcher_next(w, 0, &ev), KVFEED_OK);
    CHECK_ST(kvfeed_watcher_next(w, 0, &ev), KVFEED_OK);
    for (int i = 0; i < 40; i++) CHECK_ST(kvfeed_put(s, S("the-key"), S("churn"), NULL), KVFEED_OK);
    CHECK_ST(kvfeed_delete(s, S("the-key"), NULL), KVFEED_OK);
    CHECK(bytes_eq(ev.key, ev.key_len, "the-key"));
    CHECK(bytes_eq(ev.value, ev.value_len, "second"));
    CHECK(bytes_eq(ev.old, ev.old_len, "the-value"));
    kvfeed_store_free(s);
    CHECK(bytes_eq(ev.old, ev.old_len, "the-value"));
    kvfeed_watcher_free(w);
}

static void test_store_close(void) {
    kvfeed_store *s = new_store(0);
    kvfeed_watcher *w = watch_all(s);
    CHECK_ST(kvfeed_put(s, S("k"), S("1"), NULL), KVFEED_OK);
    CHECK_ST(kvfeed_put(s, S("k"), S("2"), NULL), KVFEED_OK);
    CHECK_ST(kvfeed_store_close(s), KVFEED_OK);
    CHECK_ST(kvfeed_store_close(s), KVFEED_OK); /* idempotent */
    uint64_t u = 5;
    CHECK_ST(kvfeed_put(s, S("k"), S("3"), &u), KVFEED_CLOSED);
    CHECK_ST(kvfeed_delete(s, S("k"), &u), KVFEED_CLOSED);
    CHECK_ST(kvfeed_delete_prefix(s, S("k"), &u), KVFEED_CLOSED);
    CHECK_ST(kvfeed_compare_and_put(s, S("k"), 2, S("3"), &u, &u), KVFEED_CLOSED);
    CHECK(u == 5);
    /* Reads keep working. */
    kvfeed_buf buf = {NULL, 0};
    CHECK_ST(kvfeed_get(s, S("k"), &buf, &u), KVFEED_OK);
    CHECK(bytes_eq(buf.ptr, buf.len, "2") && u == 2);
    kvfeed_buf_free(&buf);
    CHECK(head_of(s) == 2);
    /* Watchers drain, then CLOSED (also with an infinite timeout), and stay closed. */
    kvfeed_event ev;
    CHECK_ST(kvfeed_watcher_next(w, 0, &ev), KVFEED_OK);
    CHECK(ev.seq == 1);
    CHECK_ST(kvfeed_watcher_next(w, -1, &ev), KVFEED_OK);
    CHECK(ev.seq == 2);
    poison(&ev);
    CHECK_ST(kvfeed_watcher_next(w, -1, &ev), KVFEED_CLOSED);
    CHECK(is_poisoned(&ev));
    CHECK_ST(kvfeed_watcher_next(w, 0, &ev), KVFEED_CLOSED);
    /* A watcher created after close is closed too. */
    kvfeed_watcher *late = watch_all(s);
    CHECK_ST(kvfeed_watcher_next(late, 100, &ev), KVFEED_CLOSED);
    kvfeed_watcher_free(late);
    kvfeed_watcher_free(w);
    kvfeed_store_free(s);
}

static void test_store_free_with_live_watchers(void) {
    kvfeed_store *s = new_store(0);
    kvfeed_watcher *w1 = watch_all(s), *w2 = watch_all(s);
    CHECK_ST(kvfeed_put(s, S("k"), S("1"), NULL), KVFEED_OK);
    CHECK_ST(kvfeed_put(s, S("k"), S("2"), NULL), KVFEED_OK);
    kvfeed_store_free(s); /* closes the feed; the watchers keep it alive */
    kvfeed_event ev;
    CHECK_ST(kvfeed_watcher_next(w1, -1, &ev), KVFEED_OK);
    CHECK(ev.seq == 1 && bytes_eq(ev.value, ev.value_len, "1"));
    CHECK_ST(kvfeed_watcher_next(w1, -1, &ev), KVFEED_OK);
    CHECK(ev.seq == 2 && bytes_eq(ev.old, ev.old_len, "1"));
    CHECK_ST(kvfeed_watcher_next(w1, -1, &ev), KVFEED_CLOSED);
    kvfeed_watcher_free(w1);
    CHECK_ST(kvfeed_watcher_next(w2, 0, &ev), KVFEED_OK);
    kvfeed_watcher_free(w2); /* the last reference: everything is freed here */
}

static void test_watcher_close(void) {
    kvfeed_store *s = new_store(0);
    kvfeed_watcher *w = watch_all(s), *other = watch_all(s);
    CHECK_ST(kvfeed_put(s, S("k"), S("1"), NULL), KVFEED_OK);
    CHECK_ST(kvfeed_watcher_close(w), KVFEED_OK);
    CHECK_ST(kvfeed_watcher_close(w), KVFEED_OK); /* idempotent */
    kvfeed_event ev;
    poison(&ev);
    CHECK_ST(kvfeed_watcher_next(w, -1, &ev), KVFEED_CLOSED);
    CHECK(is_poisoned(&ev));
    /* Only that watcher: the store and the other watcher go on. */
    CHECK_ST(kvfeed_put(s, S("k"), S("2"), NULL), KVFEED_OK);
    CHECK_ST(kvfeed_watcher_next(other, 0, &ev), KVFEED_OK);
    CHECK_ST(kvfeed_watcher_next(other, 0, &ev), KVFEED_OK);
    CHECK(ev.seq == 2);
    kvfeed_watcher_free(w);
    kvfeed_watcher_free(other);
    kvfeed_store_free(s);
}

static void test_many_watchers_freed_while_writing(void) {
    /* Watchers freed while the feed runs: the writer is unaffected. */
    kvfeed_store *s = new_store(64);
    kvfeed_watcher *ws[32];
    for (int i = 0; i < 32; i++) ws[i] = watch_all(s);
    long n = scaled(2000);
    for (long i = 0; i < n; i++) {
        char v[32];
        snprintf(v, sizeof v, "%ld", i);
        CHECK_ST(kvfeed_put(s, S("k"), S(v), NULL), KVFEED_OK);
        if (i % (n / 32 + 1) == 0 && i / (n / 32 + 1) < 32) {
            kvfeed_watcher_free(ws[i / (n / 32 + 1)]);
            ws[i / (n / 32 + 1)] = NULL;
        }
    }
    CHECK(head_of(s) == (uint64_t)n);
    for (int i = 0; i < 32; i++) kvfeed_watcher_free(ws[i]);
    kvfeed_store_free(s);
}

/* ------------------------------------------------------------------------ */
/* Threads                                                                   */

struct blocked_arg {
    kvfeed_watcher *w;
    kvfeed_status status;
    atomic_int started;
    double waited_ms;
};

static void *blocked_reader(void *p) {
    struct blocked_arg *a = p;
    kvfeed_event ev;
    atomic_store(&a->started, 1);
    double t0 = now_ms();
    a->status = kvfeed_watcher_next(a->w, -1, &ev);
    a->waited_ms = now_ms() - t0;
    return NULL;
}

static void test_close_wakes_blocked_next_from_another_thread(void) {
    kvfeed_store *s = new_store(0);
    struct blocked_arg a;
    memset(&a, 0, sizeof a);
    a.w = watch_all(s);
    pthread_t t;
    CHECK(pthread_create(&t, NULL, blocked_reader, &a) == 0);
    while (!atomic_load(&a.started)) sleep_ms(1);
    sleep_ms(100); /* let it park */
    /* Misuse detection: a second thread inside a call on the same watcher. */
    kvfeed_event ev;
    uint64_t cursor;
    CHECK_ST(kvfeed_watcher_next(a.w, 0, &ev), KVFEED_INVALID_ARG);
    CHECK_ST(kvfeed_watcher_cursor(a.w, &cursor), KVFEED_INVALID_ARG);
    CHECK_ST(kvfeed_watcher_close(a.w), KVFEED_OK); /* const: from this thread */
    CHECK(pthread_join(t, NULL) == 0);
    CHECK(a.status == KVFEED_CLOSED);
    CHECK(a.waited_ms >= 90);
    kvfeed_watcher_free(a.w);

    /* The same through the store: freeing it wakes the blocked watcher. */
    memset(&a, 0, sizeof a);
    a.w = watch_all(s);
    CHECK(pthread_create(&t, NULL, blocked_reader, &a) == 0);
    while (!atomic_load(&a.started)) sleep_ms(1);
    sleep_ms(50);
    kvfeed_store_free(s);
    CHECK(pthread_join(t, NULL) == 0);
    CHECK(a.status == KVFEED_CLOSED);
    kvfeed_watcher_free(a.w);
}

/* The stress test: writers and watchers at once, checked after the fact on
 * what the C side received. */
#define ST_WRITERS 2
#define ST_KEYS 16
#define ST_WATCHERS 3

struct ledger_entry { /* what the writer got for a seq */
    int16_t key;      /* -1: no entry (a seq no writer got: a skip marker) */
    uint8_t kind;
    int32_t value; /* for Create/Update: the value written */
};

struct rec { /* what a watcher received */
    uint64_t seq;
    uint8_t kind;
    int16_t key;
    int32_t value, old; /* -1: absent */
};

struct stress {
    kvfeed_store *s;
    long per_writer;
    struct ledger_entry *ledger; /* indexed by seq */
    uint64_t ledger_len;
    atomic_int writers_done;
};

struct writer_arg {
    struct stress *st;
    int id;
};

struct watcher_arg {
    struct stress *st;
    kvfeed_watcher *w;
    int slow;
    struct rec *recs;
    size_t n_recs, cap_recs;
    uint64_t lag_from[4096], lag_to[4096]; /* missed ranges [from, to) */
    size_t n_lags;
    uint64_t total_missed;
    kvfeed_status end;
    long bad_lag_math;
};

static int parse_int(const uint8_t *p, size_t n) {
    char buf[32];
    if (n >= sizeof buf) return -2;
    memcpy(buf, p, n);
    buf[n] = 0;
    return atoi(buf);
}

static void *stress_writer(void *p) {
    struct writer_arg *a = p;
    struct stress *st = a->st;
    unsigned rng = 12345u + (unsigned)a->id * 7919u;
    for (long i = 0; i < st->per_writer; i++) {
        rng = rng * 1103515245u + 12345u;
        int key = (int)((rng >> 16) % ST_KEYS);
        char k[16], v[32];
        snprintf(k, sizeof k, "key-%02d", key);
        int32_t value = (int32_t)(a->id * 100000000 + i);
        snprintf(v, sizeof v, "%d", value);
        uint64_t seq = 0;
        kvfeed_status r;
        uint8_t kind;
        if ((rng >> 8) % 8 == 0) {
            r = kvfeed_delete(st->s, S(k), &seq);
            kind = KVFEED_KIND_DELETE;
            if (r == KVFEED_NOT_FOUND) continue;
        } else {
            r = kvfeed_put(st->s, S(k), S(v), &seq);
            kind = 0; /* Create or Update: decided by the watchers' chaining */
        }
        CHECK(r == KVFEED_OK);
        if (r != KVFEED_OK) continue;
        CHECK(seq > 0 && seq < st->ledger_len);
        if (seq > 0 && seq < st->ledger_len) {
            CHECK(st->ledger[seq].key == -1); /* seqs are unique */
            st->ledger[seq].key = (int16_t)key;
            st->ledger[seq].kind = kind;
            st->ledger[seq].value = kind == KVFEED_KIND_DELETE ? -1 : value;
        }
    }
    atomic_fetch_add(&a->st->writers_done, 1);
    return NULL;
}

static void *stress_watcher(void *p) {
    struct watcher_arg *a = p;
    kvfeed_event ev;
    for (;;) {
        uint64_t cursor_before = 0;
        if (a->slow) {
            /* Fall behind on purpose now and then. */
            if (a->n_recs % 64 == 0) sleep_ms(2);
        }
        CHECK_ST(kvfeed_watcher_cursor(a->w, &cursor_before), KVFEED_OK);
        kvfeed_status r = kvfeed_watcher_next(a->w, 1000, &ev);
        if (r == KVFEED_OK) {
            if (a->n_recs == a->cap_recs) {
                a->cap_recs = a->cap_recs * 2 + 1024;
                a->recs = realloc(a->recs, a->cap_recs * sizeof *a->recs);
            }
            struct rec *rc = &a->recs[a->n_recs++];
            rc->seq = ev.seq;
            rc->kind = (uint8_t)ev.kind;
            rc->key = (int16_t)(ev.key_len == 6 ? parse_int(ev.key + 4, 2) : -2);
            rc->value = ev.has_value ? parse_int(ev.value, ev.value_len) : -1;
            rc->old = ev.has_old ? parse_int(ev.old, ev.old_len) : -1;
        } else if (r == KVFEED_LAGGED) {
            if (ev.missed != ev.resume_at - cursor_before) a->bad_lag_math++;
            if (a->n_lags < 4096) {
                a->lag_from[a->n_lags] = cursor_before;
                a->lag_to[a->n_lags] = ev.resume_at;
                a->n_lags++;
            }
            a->total_missed += ev.missed;
        } else if (r == KVFEED_TIMEOUT) {
            continue;
        } else {
            a->end = r;
            return NULL;
        }
    }
}

/* capacity: the ring's; roomy: it holds every write, so no watcher may lag. */
static void run_stress(uint64_t capacity, bool roomy) {
    struct stress st;
    memset(&st, 0, sizeof st);
    st.per_writer = scaled(20000);
    st.ledger_len = (uint64_t)(st.per_writer * ST_WRITERS) + 2;
    st.ledger = malloc(st.ledger_len * sizeof *st.ledger);
    for (uint64_t i = 0; i < st.ledger_len; i++) st.ledger[i].key = -1;
    if (roomy) {
        while (capacity < st.ledger_len) capacity *= 2;
    }
    st.s = new_store(capacity);

    struct watcher_arg wa[ST_WATCHERS];
    memset(wa, 0, sizeof wa);
    for (int i = 0; i < ST_WATCHERS; i++) {
        wa[i].st = &st;
        wa[i].slow = i == 2;
        kvfeed_watch_opts o;
        memset(&o, 0, sizeof o);
        o.start = KVFEED_START_FROM;
        o.from_seq = 1;
        CHECK_ST(kvfeed_watch_new(st.s, &o, &wa[i].w), KVFEED_OK);
    }
    pthread_t wt[ST_WATCHERS], pt[ST_WRITERS];
    struct writer_arg pa[ST_WRITERS];
    for (int i = 0; i < ST_WATCHERS; i++)
        CHECK(pthread_create(&wt[i], NULL, stress_watcher, &wa[i]) == 0);
    for (int i = 0; i < ST_WRITERS; i++) {
        pa[i].st = &st;
        pa[i].id = i + 1;
        CHECK(pthread_create(&pt[i], NULL, stress_writer, &pa[i]) == 0);
    }
    for (int i = 0; i < ST_WRITERS; i++) pthread_join(pt[i], NULL);
    uint64_t head = head_of(st.s);
    CHECK_ST(kvfeed_store_close(st.s), KVFEED_OK); /* watchers drain, then CLOSED */
    for (int i = 0; i < ST_WATCHERS; i++) pthread_join(wt[i], NULL);

    /* What the writers got. */
    uint64_t real = 0;
    for (uint64_t q = 1; q <= head && q < st.ledger_len; q++) real += st.ledger[q].key >= 0;
    CHECK(head < st.ledger_len);

    long lagging_watchers = 0;
    for (int i = 0; i < ST_WATCHERS; i++) {
        struct watcher_arg *a = &wa[i];
        CHECK(a->end == KVFEED_CLOSED);
        CHECK(a->bad_lag_math == 0); /* missed == resume_at - cursor, every time */
        if (roomy) CHECK(a->n_lags == 0);
        lagging_watchers += a->n_lags > 0;
        /* 1. Total order. 2. Each event is what a writer wrote at that seq. */
        int32_t last_value[ST_KEYS];
        for (int k = 0; k < ST_KEYS; k++) last_value[k] = -1;
        size_t lag_i = 0;
        uint64_t prev = 0, delivered = 0, bad_order = 0, bad_ledger = 0, bad_chain = 0;
        for (size_t j = 0; j < a->n_recs; j++) {
            struct rec *rc = &a->recs[j];
            /* A lap between prev and this event: forget what we knew. */
            while (lag_i < a->n_lags && a->lag_to[lag_i] <= rc->seq) {
                for (int k = 0; k < ST_KEYS; k++) last_value[k] = -3; /* unknown */
                lag_i++;
            }
            if (rc->seq <= prev) bad_order++;
            prev = rc->seq;
            delivered++;
            struct ledger_entry *le = rc->seq < st.ledger_len ? &st.ledger[rc->seq] : NULL;
            if (!le || le->key != rc->key ||
                (le->kind == KVFEED_KIND_DELETE) != (rc->kind == KVFEED_KIND_DELETE) ||
                (rc->kind != KVFEED_KIND_DELETE && le->value != rc->value)) {
                bad_ledger++;
                continue;
            }
            /* 3. Per-key chaining: old == the previous value, kind follows. */
            int32_t before = last_value[rc->key];
            if (before != -3) {
                if (rc->old != before) bad_chain++;
                if (rc->kind == KVFEED_KIND_CREATE && before != -1) bad_chain++;
                if (rc->kind == KVFEED_KIND_UPDATE && before == -1) bad_chain++;
            }
            last_value[rc->key] = rc->value; /* -1 after a delete */
        }
        CHECK(bad_order == 0);
        CHECK(bad_ledger == 0);
        CHECK(bad_chain == 0);
        /* 4. No silent loss: every seq a writer got was delivered or lies in a
         * missed range; delivered + (real seqs in missed ranges) == real. */
        uint64_t real_in_missed = 0, missed_sum = 0;
        for (size_t l = 0; l < a->n_lags; l++) {
            missed_sum += a->lag_to[l] - a->lag_from[l];
            for (uint64_t q = a->lag_from[l]; q < a->lag_to[l] && q < st.ledger_len; q++)
                real_in_missed += st.ledger[q].key >= 0;
        }
        CHECK(a->n_lags < 4096);
        CHECK(missed_sum == a->total_missed);
        CHECK(delivered + real_in_missed == real);
        CHECK(delivered + a->total_missed <= head);
        if (delivered + real_in_missed != real || bad_order || bad_ledger || bad_chain)
            fprintf(stderr,
                    "watcher %d: delivered %llu, missed %llu in %zu laps, real %llu, head %llu, "
                    "bad order %llu ledger %llu chain %llu\n",
                    i, (unsigned long long)delivered, (unsigned long long)a->total_missed,
                    a->n_lags, (unsigned long long)real, (unsigned long long)head,
                    (unsigned long long)bad_order, (unsigned long long)bad_ledger,
                    (unsigned long long)bad_chain);
        kvfeed_watcher_free(a->w);
        free(a->recs);
    }
    /* Whether the small ring laps the watchers depends on scheduling; report
     * rather than require (test_lagged_slow_watcher covers it for sure). */
    fprintf(stderr, "  stress (capacity %llu): %llu writes, head %llu, %ld of %d watchers lagged\n",
            (unsigned long long)capacity, (unsigned long long)real, (unsigned long long)head,
            lagging_watchers, ST_WATCHERS);

    /* get agrees with the last event of each key. */
    for (int k = 0; k < ST_KEYS; k++) {
        char key[16];
        snprintf(key, sizeof key, "key-%02d", k);
        uint64_t last_seq = 0;
        for (uint64_t q = 1; q <= head && q < st.ledger_len; q++)
            if (st.ledger[q].key == k) last_seq = q;
        kvfeed_buf buf = {NULL, 0};
        uint64_t version = 0;
        kvfeed_status r = kvfeed_get(st.s, S(key), &buf, &version);
        if (last_seq == 0 || st.ledger[last_seq].kind == KVFEED_KIND_DELETE) {
            CHECK(r == KVFEED_NOT_FOUND);
        } else {
            CHECK(r == KVFEED_OK && version == last_seq &&
                  parse_int(buf.ptr, buf.len) == st.ledger[last_seq].value);
            kvfeed_buf_free(&buf);
        }
    }
    kvfeed_store_free(st.s);
    free(st.ledger);
}

static void test_threads_writers_and_watchers_lapped(void) { run_stress(256, false); }

static void test_threads_writers_and_watchers_roomy(void) { run_stress(1024, true); }

/* Snapshot + live while writers run: the view a watcher builds from what it
 * receives equals the store once everything is applied (guarantee 6). */
struct snap_writer {
    kvfeed_store *s;
    int id;
    long n;
    atomic_int *started;
};

static void *snap_writer_main(void *p) {
    struct snap_writer *a = p;
    unsigned rng = 99u + (unsigned)a->id;
    atomic_fetch_add(a->started, 1);
    for (long i = 0; i < a->n; i++) {
        rng = rng * 1103515245u + 12345u;
        char k[16], v[32];
        snprintf(k, sizeof k, "key-%02u", (rng >> 16) % ST_KEYS);
        snprintf(v, sizeof v, "%d", a->id * 100000000 + (int)i);
        kvfeed_status r = (rng >> 8) % 5 == 0 ? kvfeed_delete(a->s, S(k), NULL)
                                              : kvfeed_put(a->s, S(k), S(v), NULL);
        CHECK(r == KVFEED_OK || r == KVFEED_NOT_FOUND);
    }
    return NULL;
}

static void test_threads_snapshot_while_writing(void) {
    long n = scaled(20000);
    kvfeed_store *s = new_store(1ull << 17); /* holds every write: no lap */
    for (int k = 0; k < ST_KEYS; k += 2) {
        char key[16];
        snprintf(key, sizeof key, "key-%02d", k);
        CHECK_ST(kvfeed_put(s, S(key), S("0"), NULL), KVFEED_OK);
    }
    atomic_int started = 0;
    struct snap_writer wa[2] = {{s, 1, n, &started}, {s, 2, n, &started}};
    pthread_t t[2];
    for (int i = 0; i < 2; i++) CHECK(pthread_create(&t[i], NULL, snap_writer_main, &wa[i]) == 0);
    while (atomic_load(&started) < 2) sleep_ms(1);
    sleep_ms(2);
    kvfeed_watch_opts o;
    memset(&o, 0, sizeof o);
    o.start = KVFEED_START_SNAPSHOT;
    kvfeed_watcher *w = NULL;
    CHECK_ST(kvfeed_watch_new(s, &o, &w), KVFEED_OK);

    int32_t view[ST_KEYS];
    uint64_t version[ST_KEYS];
    for (int k = 0; k < ST_KEYS; k++) view[k] = -1, version[k] = 0;
    bool done = false;
    uint64_t last = 0, bad = 0, after_marker = 0;
    kvfeed_event ev;
    kvfeed_status r;
    int closed_after_writers = 0;
    for (;;) {
        r = kvfeed_watcher_next(w, 200, &ev);
        if (r == KVFEED_TIMEOUT) {
            if (!closed_after_writers) {
                for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
                CHECK_ST(kvfeed_store_close(s), KVFEED_OK);
                closed_after_writers = 1;
            }
            continue;
        }
        if (r != KVFEED_OK) break;
        if (ev.kind == KVFEED_KIND_SNAPSHOT_DONE) {
            CHECK(!done);
            CHECK(ev.consistent_at >= ev.at);
            done = true;
            last = ev.at;
            continue;
        }
        int k = ev.key_len == 6 ? parse_int(ev.key + 4, 2) : -1;
        if (k < 0 || k >= ST_KEYS) {
            bad++;
            continue;
        }
        if (!done) {
            CHECK(ev.kind == KVFEED_KIND_CREATE && ev.has_value);
        } else {
            after_marker++;
            if (ev.seq <= last) bad++; /* strictly increasing from at + 1 */
            last = ev.seq;
            if (ev.seq <= version[k]) bad++; /* already reflected by the snapshot */
        }
        view[k] = ev.has_value ? parse_int(ev.value, ev.value_len) : -1;
        version[k] = ev.seq;
    }
    CHECK(r == KVFEED_CLOSED);
    if (!closed_after_writers) {
        for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
    }
    CHECK(done);
    CHECK(bad == 0);
    (void)after_marker; /* 0 only if the writers finished first: nothing to check then */
    uint64_t mismatches = 0;
    for (int k = 0; k < ST_KEYS; k++) {
        char key[16];
        snprintf(key, sizeof key, "key-%02d", k);
        kvfeed_buf buf = {NULL, 0};
        uint64_t v = 0;
        kvfeed_status g = kvfeed_get(s, S(key), &buf, &v);
        if (g == KVFEED_NOT_FOUND) {
            mismatches += view[k] != -1;
        } else {
            mismatches += !(g == KVFEED_OK && view[k] == parse_int(buf.ptr, buf.len) &&
                            version[k] == v);
            kvfeed_buf_free(&buf);
        }
    }
    CHECK(mismatches == 0);
    kvfeed_watcher_free(w);
    kvfeed_store_free(s);
}

/* Many threads sharing one store handle (const): puts, gets, heads. */
struct shared_arg {
    const kvfeed_store *s;
    int id;
    long n;
};

static void *shared_user(void *p) {
    struct shared_arg *a = p;
    for (long i = 0; i < a->n; i++) {
        char k[32];
        snprintf(k, sizeof k, "t%d-%ld", a->id, i % 50);
        uint64_t seq = 0, version = 0, head = 0;
        CHECK_ST(kvfeed_put(a->s, S(k), S(k), &seq), KVFEED_OK);
        kvfeed_buf buf = {NULL, 0};
        CHECK_ST(kvfeed_get(a->s, S(k), &buf, &version), KVFEED_OK);
        CHECK(version >= seq && bytes_eq(buf.ptr, buf.len, k));
        kvfeed_buf_free(&buf);
        CHECK_ST(kvfeed_head(a->s, &head), KVFEED_OK);
        CHECK(head >= seq);
    }
    return NULL;
}

static void test_threads_share_a_store(void) {
    kvfeed_store *s = new_store(1024);
    pthread_t t[4];
    struct shared_arg a[4];
    for (int i = 0; i < 4; i++) {
        a[i].s = s;
        a[i].id = i;
        a[i].n = scaled(5000);
        CHECK(pthread_create(&t[i], NULL, shared_user, &a[i]) == 0);
    }
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    CHECK(head_of(s) == (uint64_t)(4 * a[0].n));
    kvfeed_store_free(s);
}

/* ------------------------------------------------------------------------ */
/* Batch reads and interrupts                                                */

static void test_batch_args(void) {
    kvfeed_store *s = new_store(0);
    kvfeed_watcher *w = watch_all(s);
    kvfeed_event evs[4];
    size_t n = 12345;
    CHECK_ST(kvfeed_put(s, S("k"), S("v"), NULL), KVFEED_OK);
    for (int i = 0; i < 4; i++) poison(&evs[i]);
    CHECK_ST(kvfeed_watcher_next_batch(NULL, 0, evs, 4, &n), KVFEED_NULL_ARG);
    CHECK_ST(kvfeed_watcher_next_batch(w, 0, NULL, 4, &n), KVFEED_NULL_ARG);
    CHECK_ST(kvfeed_watcher_next_batch(w, 0, evs, 4, NULL), KVFEED_NULL_ARG);
    CHECK_ST(kvfeed_watcher_next_batch(w, 0, NULL, 0, &n), KVFEED_NULL_ARG);
    CHECK_ST(kvfeed_watcher_next_batch(w, 0, evs, 0, &n), KVFEED_INVALID_ARG);
    CHECK_ST(kvfeed_watcher_next_batch(w, -1, evs, 0, &n), KVFEED_INVALID_ARG);
    CHECK_ST(kvfeed_watcher_next_batch(w, 0, evs, SIZE_MAX, &n), KVFEED_INVALID_ARG);
    CHECK_ST(kvfeed_watcher_interrupt(NULL), KVFEED_NULL_ARG);
    /* Nothing was read or written. */
    CHECK(n == 12345);
    for (int i = 0; i < 4; i++) CHECK(is_poisoned(&evs[i]));
    uint64_t cursor = 0;
    CHECK_ST(kvfeed_watcher_cursor(w, &cursor), KVFEED_OK);
    CHECK(cursor == 1);
    /* cap 1 works and returns the one event. */
    CHECK_ST(kvfeed_watcher_next_batch(w, 0, evs, 1, &n), KVFEED_OK);
    CHECK(n == 1 && evs[0].seq == 1 && bytes_eq(evs[0].key, evs[0].key_len, "k"));
    CHECK(is_poisoned(&evs[1]));
    /* Empty: TIMEOUT with n = 0, the array untouched. */
    poison(&evs[0]);
    CHECK_ST(kvfeed_watcher_next_batch(w, 0, evs, 4, &n), KVFEED_TIMEOUT);
    CHECK(n == 0 && is_poisoned(&evs[0]));
    CHECK_ST(kvfeed_watcher_next_batch(w, 5, evs, 4, &n), KVFEED_TIMEOUT);
    CHECK(n == 0 && is_poisoned(&evs[0]));
    kvfeed_watcher_free(w);
    kvfeed_store_free(s);
}

static void test_batch_reads_in_order_and_keeps_every_event_valid(void) {
    kvfeed_store *s = new_store(4); /* the ring holds 4: the batch outlives it */
    kvfeed_watcher *w = watch_all(s);
    char key[16], val[96];
    /* Short and long keys and values (the library keeps short ones inline). */
#define BATCH_VAL(i)                                                                               \
    snprintf(val, sizeof val, (i) == 1 ? "v%d-a-value-longer-than-any-inline-buffer-0123456789" : "v%d", i)
    for (int i = 0; i < 3; i++) {
        snprintf(key, sizeof key, "k%d", i);
        BATCH_VAL(i);
        CHECK_ST(kvfeed_put(s, S(key), S(val), NULL), KVFEED_OK);
    }
    CHECK_ST(kvfeed_put(s, S("k0"), S("v0b"), NULL), KVFEED_OK); /* seq 4: Update */
    kvfeed_event evs[8];
    for (int i = 0; i < 8; i++) poison(&evs[i]);
    size_t n = 0;
    CHECK_ST(kvfeed_watcher_next_batch(w, 0, evs, 3, &n), KVFEED_OK);
    CHECK(n == 3);
    CHECK(is_poisoned(&evs[3])); /* past cap: untouched */
    /* Overwrite the ring many times and free nothing: every event of the
     * batch must still be readable. */
    for (int i = 0; i < 40; i++) CHECK_ST(kvfeed_put(s, S("churn"), S("x"), NULL), KVFEED_OK);
    for (int i = 0; i < 3; i++) {
        snprintf(key, sizeof key, "k%d", i);
        BATCH_VAL(i);
        CHECK(evs[i].seq == (uint64_t)i + 1 && evs[i].kind == KVFEED_KIND_CREATE);
        CHECK(bytes_eq(evs[i].key, evs[i].key_len, key));
        CHECK(evs[i].has_value && bytes_eq(evs[i].value, evs[i].value_len, val));
        CHECK(!evs[i].has_old && evs[i].old == NULL);
    }
    /* The next batch first reports the lap (nothing returned with it). */
    uint64_t cursor = 0;
    CHECK_ST(kvfeed_watcher_cursor(w, &cursor), KVFEED_OK);
    CHECK(cursor == 4);
    CHECK_ST(kvfeed_watcher_next_batch(w, 0, evs, 8, &n), KVFEED_LAGGED);
    CHECK(n == 0);
    CHECK(evs[0].missed == evs[0].resume_at - cursor && evs[0].missed > 0);
    CHECK(evs[0].kind == 0 && evs[0].key == NULL && evs[0].seq == 0);
    uint64_t next = evs[0].resume_at;
    CHECK_ST(kvfeed_watcher_next_batch(w, 0, evs, 8, &n), KVFEED_OK);
    CHECK(n >= 1 && n <= 4);
    for (size_t i = 0; i < n; i++) CHECK(evs[i].seq == next + i);
    CHECK(evs[n - 1].seq == head_of(s));
    CHECK_ST(kvfeed_watcher_next_batch(w, 0, evs, 8, &n), KVFEED_TIMEOUT);

    /* Closed: what is left is delivered, then CLOSED with n = 0. */
    CHECK_ST(kvfeed_put(s, S("last"), S("1"), NULL), KVFEED_OK);
    CHECK_ST(kvfeed_store_close(s), KVFEED_OK);
    CHECK_ST(kvfeed_watcher_next_batch(w, -1, evs, 8, &n), KVFEED_OK);
    CHECK(n == 1 && bytes_eq(evs[0].key, evs[0].key_len, "last"));
    n = 99;
    CHECK_ST(kvfeed_watcher_next_batch(w, -1, evs, 8, &n), KVFEED_CLOSED);
    CHECK(n == 0);
    kvfeed_watcher_free(w);
    kvfeed_store_free(s);
}

static void test_batch_snapshot_and_kind_mask(void) {
    kvfeed_store *s = new_store(0);
    uint64_t va = 0, vb = 0;
    CHECK_ST(kvfeed_put(s, S("a"), S("1"), &va), KVFEED_OK);
    CHECK_ST(kvfeed_put(s, S("b"), S("2"), &vb), KVFEED_OK);
    kvfeed_watch_opts o;
    memset(&o, 0, sizeof o);
    o.start = KVFEED_START_SNAPSHOT;
    kvfeed_watcher *w = NULL;
    CHECK_ST(kvfeed_watch_new(s, &o, &w), KVFEED_OK);
    kvfeed_event evs[8];
    size_t n = 0;
    CHECK_ST(kvfeed_watcher_next_batch(w, 0, evs, 8, &n), KVFEED_OK);
    CHECK(n == 3); /* two Creates, then the marker, in one call */
    CHECK(evs[0].kind == KVFEED_KIND_CREATE && evs[1].kind == KVFEED_KIND_CREATE);
    CHECK(evs[0].seq + evs[1].seq == va + vb);
    CHECK(evs[2].kind == KVFEED_KIND_SNAPSHOT_DONE && evs[2].at == 2 && evs[2].key == NULL);
    kvfeed_watcher_free(w);

    /* Without Create in the mask, a snapshot delivers only its marker. */
    o.kinds = KVFEED_KIND_UPDATE | KVFEED_KIND_DELETE;
    CHECK_ST(kvfeed_watch_new(s, &o, &w), KVFEED_OK);
    CHECK_ST(kvfeed_put(s, S("a"), S("3"), NULL), KVFEED_OK);
    CHECK_ST(kvfeed_watcher_next_batch(w, 0, evs, 8, &n), KVFEED_OK);
    CHECK(n == 2);
    CHECK(evs[0].kind == KVFEED_KIND_SNAPSHOT_DONE);
    CHECK(evs[1].kind == KVFEED_KIND_UPDATE && bytes_eq(evs[1].old, evs[1].old_len, "1"));
    kvfeed_watcher_free(w);
    kvfeed_store_free(s);
}

/* One writer, one batch reader on a small ring: every seq is delivered in
 * order or counted as missed, with the values the writer wrote. */
struct batch_writer_arg {
    kvfeed_store *s;
    long n;
};

static void *batch_writer(void *p) {
    struct batch_writer_arg *a = p;
    char key[16], val[24];
    for (long i = 0; i < a->n; i++) {
        snprintf(key, sizeof key, "k%ld", i % 13);
        snprintf(val, sizeof val, "%ld", i + 1); /* = its seq (one writer) */
        CHECK_ST(kvfeed_put(a->s, S(key), S(val), NULL), KVFEED_OK);
    }
    CHECK_ST(kvfeed_store_close(a->s), KVFEED_OK);
    return NULL;
}

static void run_batch_reader(uint64_t capacity, bool roomy) {
    struct batch_writer_arg a = {new_store(capacity), scaled(200000)};
    kvfeed_watcher *w = watch_all(a.s);
    pthread_t t;
    CHECK(pthread_create(&t, NULL, batch_writer, &a) == 0);
    kvfeed_event evs[16];
    uint64_t expect = 1, delivered = 0, missed = 0, batches = 0, bad = 0;
    kvfeed_status st;
    size_t n;
    while ((st = kvfeed_watcher_next_batch(w, -1, evs, 16, &n)) != KVFEED_CLOSED) {
        if (st == KVFEED_LAGGED) {
            if (n != 0 || evs[0].resume_at != expect + evs[0].missed) bad++;
            missed += evs[0].missed;
            expect = evs[0].resume_at;
            continue;
        }
        if (st != KVFEED_OK || n == 0 || n > 16) {
            bad++;
            break;
        }
        batches++;
        for (size_t i = 0; i < n; i++) {
            char want[24];
            snprintf(want, sizeof want, "%llu", (unsigned long long)expect);
            if (evs[i].seq != expect || !bytes_eq(evs[i].value, evs[i].value_len, want)) bad++;
            expect = evs[i].seq + 1;
            delivered++;
        }
    }
    CHECK(pthread_join(t, NULL) == 0);
    CHECK(bad == 0);
    CHECK(n == 0);
    CHECK(delivered + missed == (uint64_t)a.n);
    CHECK(expect == (uint64_t)a.n + 1);
    if (roomy) CHECK(missed == 0);
    printf("     batch reader (capacity %llu): %llu events in %llu batches, %llu missed\n",
           (unsigned long long)capacity, (unsigned long long)delivered,
           (unsigned long long)batches, (unsigned long long)missed);
    kvfeed_watcher_free(w);
    kvfeed_store_free(a.s);
}

static void test_threads_batch_reader_lapped(void) { run_batch_reader(64, false); }
static void test_threads_batch_reader_roomy(void) { run_batch_reader(262144, true); }

struct waiter_arg {
    kvfeed_watcher *w;
    bool batch;
    atomic_int started;
    kvfeed_status status;
    size_t n;
};

static void *interrupted_waiter(void *p) {
    struct waiter_arg *a = p;
    kvfeed_event ev[2];
    atomic_store(&a->started, 1);
    a->n = 77;
    if (a->batch)
        a->status = kvfeed_watcher_next_batch(a->w, -1, ev, 2, &a->n);
    else
        a->status = kvfeed_watcher_next(a->w, -1, &ev[0]);
    return NULL;
}

static void test_interrupt_wakes_a_blocked_next_and_keeps_the_watcher(void) {
    /* An infinite wait: only the interrupt can end it (a broken interrupt
     * hangs this test). Whether the interrupt lands before the waiter parks
     * or after, the wait returns TIMEOUT; repeated to hit both. */
    kvfeed_store *s = new_store(0);
    kvfeed_watcher *w = watch_all(s);
    long rounds = scaled(200);
    long ok = 0;
    for (long i = 0; i < rounds; i++) {
        struct waiter_arg a;
        memset(&a, 0, sizeof a);
        a.w = w;
        a.batch = i % 2;
        pthread_t t;
        CHECK(pthread_create(&t, NULL, interrupted_waiter, &a) == 0);
        while (!atomic_load(&a.started)) sched_yield();
        CHECK_ST(kvfeed_watcher_interrupt(w), KVFEED_OK); /* const: from this thread */
        CHECK(pthread_join(t, NULL) == 0);
        if (a.status == KVFEED_TIMEOUT && (!a.batch || a.n == 0)) ok++;
    }
    CHECK(ok == rounds);
    /* Not closed, same cursor, nothing lost. */
    uint64_t cursor = 0;
    CHECK_ST(kvfeed_watcher_cursor(w, &cursor), KVFEED_OK);
    CHECK(cursor == 1);
    CHECK_ST(kvfeed_put(s, S("k"), S("v"), NULL), KVFEED_OK);
    kvfeed_event ev;
    CHECK_ST(kvfeed_watcher_next(w, -1, &ev), KVFEED_OK);
    CHECK(ev.seq == 1 && bytes_eq(ev.key, ev.key_len, "k"));
    kvfeed_watcher_free(w);
    kvfeed_store_free(s);
}

static void test_interrupt_is_kept_for_the_next_wait(void) {
    kvfeed_store *s = new_store(0);
    kvfeed_watcher *w = watch_all(s);
    kvfeed_event ev;
    size_t n = 0;
    /* Before any call: the next wait returns at once, once. */
    CHECK_ST(kvfeed_watcher_interrupt(w), KVFEED_OK);
    CHECK_ST(kvfeed_watcher_interrupt(w), KVFEED_OK); /* several count as one */
    CHECK_ST(kvfeed_watcher_next(w, -1, &ev), KVFEED_TIMEOUT);
    CHECK_ST(kvfeed_watcher_next(w, 1, &ev), KVFEED_TIMEOUT); /* a real 1 ms timeout */
    /* A poll (timeout 0) neither waits nor consumes it. */
    CHECK_ST(kvfeed_watcher_interrupt(w), KVFEED_OK);
    CHECK_ST(kvfeed_watcher_next(w, 0, &ev), KVFEED_TIMEOUT);
    CHECK_ST(kvfeed_watcher_next_batch(w, -1, &ev, 1, &n), KVFEED_TIMEOUT);
    CHECK(n == 0);
    /* A call that finds an event returns it and leaves the interrupt for the
     * next wait. */
    CHECK_ST(kvfeed_watcher_interrupt(w), KVFEED_OK);
    CHECK_ST(kvfeed_put(s, S("a"), S("1"), NULL), KVFEED_OK);
    CHECK_ST(kvfeed_watcher_next_batch(w, -1, &ev, 1, &n), KVFEED_OK);
    CHECK(n == 1 && ev.seq == 1);
    CHECK_ST(kvfeed_watcher_next(w, -1, &ev), KVFEED_TIMEOUT);
    /* Close still wins over a pending interrupt. */
    CHECK_ST(kvfeed_watcher_interrupt(w), KVFEED_OK);
    CHECK_ST(kvfeed_watcher_close(w), KVFEED_OK);
    CHECK_ST(kvfeed_watcher_next(w, -1, &ev), KVFEED_CLOSED);
    kvfeed_watcher_free(w);
    kvfeed_store_free(s);
}

/* ------------------------------------------------------------------------ */

struct test {
    const char *name;
    void (*fn)(void);
};

#define T(f) {#f, f}
static const struct test TESTS[] = {
    T(test_version_matches_cargo_toml),
    T(test_status_str),
    T(test_internal_panic_is_caught),
    T(test_store_new_and_config),
    T(test_put_get),
    T(test_delete_and_prefix),
    T(test_compare_and_put),
    T(test_suppress_unchanged),
    T(test_null_args),
    T(test_too_large),
    T(test_malformed_watch_opts),
    T(test_watch_events),
    T(test_watch_filters),
    T(test_watch_from_seq),
    T(test_lagged_slow_watcher),
    T(test_snapshot),
    T(test_event_outlives_ring_until_next_call),
    T(test_store_close),
    T(test_store_free_with_live_watchers),
    T(test_watcher_close),
    T(test_many_watchers_freed_while_writing),
    T(test_close_wakes_blocked_next_from_another_thread),
    T(test_threads_writers_and_watchers_lapped),
    T(test_threads_writers_and_watchers_roomy),
    T(test_threads_snapshot_while_writing),
    T(test_threads_share_a_store),
    T(test_batch_args),
    T(test_batch_reads_in_order_and_keeps_every_event_valid),
    T(test_batch_snapshot_and_kind_mask),
    T(test_threads_batch_reader_lapped),
    T(test_threads_batch_reader_roomy),
    T(test_interrupt_wakes_a_blocked_next_and_keeps_the_watcher),
    T(test_interrupt_is_kept_for_the_next_wait),
};

int main(int argc, char **argv) {
    const char *scale = getenv("KVFEED_TEST_SCALE");
    if (scale && atoi(scale) > 0) g_scale = atoi(scale);
    setvbuf(stdout, NULL, _IOLBF, 0);
    int passed = 0, failed = 0;
    for (size_t i = 0; i < sizeof TESTS / sizeof TESTS[0]; i++) {
        bool selected = argc < 2;
        for (int a = 1; a < argc; a++) selected |= strstr(TESTS[i].name, argv[a]) != NULL;
        if (!selected) continue;
        long before = atomic_load(&g_failures);
        double t0 = now_ms();
        TESTS[i].fn();
        bool ok = atomic_load(&g_failures) == before;
        printf("%s %s (%.0f ms)\n", ok ? "ok  " : "FAIL", TESTS[i].name, now_ms() - t0);
        if (ok)
            passed++;
        else
            failed++;
    }
    printf("%ld checks, %ld failed checks\n", (long)atomic_load(&g_checks),
           (long)atomic_load(&g_failures));
    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
