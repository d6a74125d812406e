/*
 * put + one watcher reading, through the C ABI. The Rust twin, doing the same
 * work through the core API, is ffi/benches/put_read.rs; ffi/bench/run-bench.sh
 * runs both and prints the ratio.
 *
 *   put_read [events] [runs] [interleaved|threaded]
 *
 * Two workloads, each reported as the best of `runs` in ns per event:
 *   interleaved: one thread puts a batch of 256 events, then reads them all
 *                with kvfeed_watcher_next(w, 0, ...); the per-event cost of the
 *                whole pipeline, without scheduling noise.
 *   threaded:    a writer thread puts, the reader thread parks in
 *                kvfeed_watcher_next(w, -1, ...); wall time per event.
 * Keys: 1024 distinct 8-byte keys, values 16 bytes; ring of 65536.
 */
#define _POSIX_C_SOURCE 200809L
#include "kvfeed.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define KEYS 1024
#define BATCH 256

static uint8_t g_keys[KEYS][8];
static uint8_t g_value[16];

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static void die(const char *what, kvfeed_status st) {
    fprintf(stderr, "%s: %s\n", what, kvfeed_status_str(st));
    exit(1);
}

static kvfeed_store *setup(kvfeed_watcher **w) {
    kvfeed_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.capacity = 65536;
    kvfeed_store *s = NULL;
    kvfeed_status st = kvfeed_store_new(&cfg, &s);
    if (st != KVFEED_OK) die("store_new", st);
    st = kvfeed_watch_new(s, NULL, w);
    if (st != KVFEED_OK) die("watch_new", st);
    return s;
}

static volatile uint64_t g_sink;

static double interleaved(long events) {
    kvfeed_watcher *w = NULL;
    kvfeed_store *s = setup(&w);
    kvfeed_event ev;
    uint64_t sink = 0;
    long got = 0;
    double t0 = now_ns();
    for (long i = 0; i < events; i += BATCH) {
        for (long j = i; j < i + BATCH; j++) {
            g_value[0] = (uint8_t)j;
            kvfeed_status st = kvfeed_put(s, g_keys[j % KEYS], 8, g_value, 16, NULL);
            if (st != KVFEED_OK) die("put", st);
        }
        kvfeed_status st;
        while ((st = kvfeed_watcher_next(w, 0, &ev)) == KVFEED_OK) {
            sink += ev.value_len + ev.key[0];
            got++;
        }
        if (st != KVFEED_TIMEOUT) die("next", st);
    }
    double dt = now_ns() - t0;
    if (got != (events + BATCH - 1) / BATCH * BATCH) die("lost events", KVFEED_INTERNAL);
    g_sink = sink;
    kvfeed_watcher_free(w);
    kvfeed_store_free(s);
    return dt / (double)got;
}

struct writer {
    kvfeed_store *s;
    long events;
};

static void *writer_main(void *p) {
    struct writer *a = p;
    uint8_t value[16] = {0};
    for (long j = 0; j < a->events; j++) {
        value[0] = (uint8_t)j;
        kvfeed_status st = kvfeed_put(a->s, g_keys[j % KEYS], 8, value, 16, NULL);
        if (st != KVFEED_OK) die("put", st);
    }
    return NULL;
}

static double threaded(long events, long *missed_out) {
    kvfeed_watcher *w = NULL;
    kvfeed_store *s = setup(&w);
    struct writer a = {s, events};
    kvfeed_event ev;
    uint64_t sink = 0;
    long got = 0, missed = 0;
    pthread_t t;
    double t0 = now_ns();
    pthread_create(&t, NULL, writer_main, &a);
    while (got + missed < events) {
        kvfeed_status st = kvfeed_watcher_next(w, -1, &ev);
        if (st == KVFEED_OK) {
            sink += ev.value_len + ev.key[0];
            got++;
        } else if (st == KVFEED_LAGGED) {
            missed += (long)ev.missed;
        } else {
            die("next", st);
        }
    }
    double dt = now_ns() - t0;
    pthread_join(t, NULL);
    g_sink = sink;
    *missed_out = missed;
    kvfeed_watcher_free(w);
    kvfeed_store_free(s);
    return dt / (double)events;
}

int main(int argc, char **argv) {
    long events = argc > 1 ? atol(argv[1]) : 2000000;
    int runs = argc > 2 ? atoi(argv[2]) : 5;
    const char *only = argc > 3 ? argv[3] : ""; /* "interleaved" or "threaded": just that one */
    for (int i = 0; i < KEYS; i++) snprintf((char *)g_keys[i], 8, "k%06d", i);
    double best_i = 1e18, best_t = 1e18;
    long missed = 0, m;
    for (int r = 0; r < runs; r++) {
        if (strcmp(only, "threaded") != 0) {
            double x = interleaved(events);
            if (x < best_i) best_i = x;
        }
        if (strcmp(only, "interleaved") != 0) {
            double y = threaded(events, &m);
            if (y < best_t) best_t = y, missed = m;
        }
    }
    if (strcmp(only, "threaded") != 0) printf("c    interleaved %8.1f ns/event\n", best_i);
    if (strcmp(only, "interleaved") != 0)
        printf("c    threaded    %8.1f ns/event (missed %ld)\n", best_t, missed);
    return 0;
}
