/*
 * Small static helpers between Go and the kvfeed C ABI.
 *
 * Every kvfeed function writes its results through out-parameters. If Go
 * passed the address of a Go variable, cgo would move that variable to the
 * heap (one allocation per call) and C would write into Go memory. These
 * wrappers keep the out-parameters on the C stack and return them by value,
 * so the Go side passes only C handles and, for the duration of one call,
 * pointers to Go byte slices (which contain no Go pointers, as cgo requires).
 *
 * Handles cross as uintptr_t. They point to C memory, which Go's GC neither
 * scans nor moves, so an integer is as good as a pointer on the Go side; and
 * cgo's pointer check of a pointer-to-incomplete-struct argument boxes it
 * into an interface, one heap allocation per call, which integers avoid.
 */
#ifndef KVFEED_GO_SHIM_H
#define KVFEED_GO_SHIM_H

#include <stdlib.h>
#include "kvfeed.h"

#define GOKV_S(h) ((kvfeed_store *)(h))
#define GOKV_W(h) ((kvfeed_watcher *)(h))

typedef struct gokv_r {
	kvfeed_status st;
	uint64_t a; /* seq, count, head or cursor */
	uint64_t b; /* current version (compare_and_put) */
} gokv_r;

typedef struct gokv_get_r {
	kvfeed_status st;
	kvfeed_buf buf;
	uint64_t version;
} gokv_get_r;

typedef struct gokv_store_r {
	kvfeed_status st;
	uintptr_t s;
} gokv_store_r;

typedef struct gokv_watch_r {
	kvfeed_status st;
	uintptr_t w;
} gokv_watch_r;

static inline gokv_store_r gokv_store_new(uint64_t capacity, uint32_t suppress, uint64_t max_key, uint64_t max_value) {
	kvfeed_config cfg = {0};
	cfg.capacity = capacity;
	cfg.suppress_unchanged = suppress;
	cfg.max_key_len = max_key;
	cfg.max_value_len = max_value;
	gokv_store_r r = {0};
	kvfeed_store *s = NULL;
	r.st = kvfeed_store_new(&cfg, &s);
	r.s = (uintptr_t)s;
	return r;
}

static inline gokv_r gokv_put(uintptr_t s, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl) {
	gokv_r r = {0};
	r.st = kvfeed_put(GOKV_S(s), k, kl, v, vl, &r.a);
	return r;
}

static inline gokv_get_r gokv_get(uintptr_t s, const uint8_t *k, size_t kl) {
	gokv_get_r r = {0};
	r.st = kvfeed_get(GOKV_S(s), k, kl, &r.buf, &r.version);
	return r;
}

static inline void gokv_buf_free(uint8_t *ptr, size_t len) {
	kvfeed_buf b;
	b.ptr = ptr;
	b.len = len;
	kvfeed_buf_free(&b);
}

static inline gokv_r gokv_delete(uintptr_t s, const uint8_t *k, size_t kl) {
	gokv_r r = {0};
	r.st = kvfeed_delete(GOKV_S(s), k, kl, &r.a);
	return r;
}

static inline gokv_r gokv_delete_prefix(uintptr_t s, const uint8_t *p, size_t pl) {
	gokv_r r = {0};
	r.st = kvfeed_delete_prefix(GOKV_S(s), p, pl, &r.a);
	return r;
}

static inline gokv_r gokv_compare_and_put(uintptr_t s, const uint8_t *k, size_t kl, uint64_t expected,
                                          const uint8_t *v, size_t vl) {
	gokv_r r = {0};
	r.st = kvfeed_compare_and_put(GOKV_S(s), k, kl, expected, v, vl, &r.a, &r.b);
	return r;
}

static inline gokv_r gokv_head(uintptr_t s) {
	gokv_r r = {0};
	r.st = kvfeed_head(GOKV_S(s), &r.a);
	return r;
}

/* opts points to C memory (or is NULL); see watchOptions.toC in watcher.go. */
static inline gokv_watch_r gokv_watch_new(uintptr_t s, const kvfeed_watch_opts *opts) {
	gokv_watch_r r = {0};
	kvfeed_watcher *w = NULL;
	r.st = kvfeed_watch_new(GOKV_S(s), opts, &w);
	r.w = (uintptr_t)w;
	return r;
}

static inline gokv_r gokv_watcher_cursor(uintptr_t w) {
	gokv_r r = {0};
	r.st = kvfeed_watcher_cursor(GOKV_W(w), &r.a);
	return r;
}

static inline void gokv_store_free(uintptr_t s) { kvfeed_store_free(GOKV_S(s)); }

static inline kvfeed_status gokv_watcher_close(uintptr_t w) { return kvfeed_watcher_close(GOKV_W(w)); }

static inline kvfeed_status gokv_watcher_interrupt(uintptr_t w) {
	return kvfeed_watcher_interrupt(GOKV_W(w));
}

typedef struct gokv_batch_r {
	kvfeed_status st;
	size_t n;
} gokv_batch_r;

/* evs points to C memory (gokv_events_new); see Watcher.fill in watcher.go. */
static inline gokv_batch_r gokv_watcher_next_batch(uintptr_t w, int64_t timeout_ms, kvfeed_event *evs,
                                                   size_t cap) {
	gokv_batch_r r = {0};
	r.st = kvfeed_watcher_next_batch(GOKV_W(w), timeout_ms, evs, cap, &r.n);
	return r;
}

static inline kvfeed_event *gokv_events_new(size_t n) {
	return (kvfeed_event *)calloc(n, sizeof(kvfeed_event));
}

static inline void gokv_watcher_free(uintptr_t w) { kvfeed_watcher_free(GOKV_W(w)); }

#endif
