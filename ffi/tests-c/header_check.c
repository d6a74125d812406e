/*
 * Compiled (not run) by ffi/run-c-tests.sh, both as C99 and as C++11, with
 * -Wall -Wextra -Werror -pedantic: include/kvfeed.h must be clean in both
 * languages, and every declaration must be usable from both.
 */
#include "kvfeed.h"
#include "kvfeed.h" /* include guard */

#include <stdio.h>

int header_check(void);

int header_check(void) {
    kvfeed_config cfg = {0, 0, 0, 0};
    kvfeed_store *s = NULL;
    kvfeed_watcher *w = NULL;
    kvfeed_buf buf = {NULL, 0};
    kvfeed_bytes key = {NULL, 0};
    kvfeed_watch_opts opts = {&key, 1, NULL, 0, KVFEED_KIND_CREATE | KVFEED_KIND_UPDATE,
                              (uint32_t)KVFEED_START_NOW, 0};
    kvfeed_event ev;
    uint64_t u = 0, v = 0;
    kvfeed_status st = kvfeed_store_new(&cfg, &s);
    const kvfeed_store *cs = s;
    const kvfeed_watcher *cw;
    st = kvfeed_put(cs, key.ptr, key.len, NULL, 0, &u);
    st = kvfeed_get(cs, key.ptr, key.len, &buf, &v);
    kvfeed_buf_free(&buf);
    st = kvfeed_delete(cs, key.ptr, key.len, &u);
    st = kvfeed_delete_prefix(cs, NULL, 0, &u);
    st = kvfeed_compare_and_put(cs, key.ptr, key.len, 0, NULL, 0, &u, &v);
    st = kvfeed_head(cs, &u);
    st = kvfeed_watch_new(cs, &opts, &w);
    cw = w;
    st = kvfeed_watcher_next(w, 0, &ev);
    st = kvfeed_watcher_cursor(cw, &u);
    st = kvfeed_watcher_close(cw);
    kvfeed_watcher_free(w);
    st = kvfeed_store_close(cs);
    kvfeed_store_free(s);
    printf("%s %s %d.%d.%d %llu %llu %llu %llu\n", kvfeed_status_str(st), kvfeed_version(),
           KVFEED_VERSION_MAJOR, KVFEED_VERSION_MINOR, KVFEED_VERSION_PATCH,
           (unsigned long long)KVFEED_DEFAULT_CAPACITY, (unsigned long long)KVFEED_MAX_CAPACITY,
           (unsigned long long)KVFEED_DEFAULT_MAX_KEY_LEN,
           (unsigned long long)KVFEED_DEFAULT_MAX_VALUE_LEN);
    return (int)ev.kind + (int)KVFEED_KIND_DELETE + (int)KVFEED_KIND_SNAPSHOT_DONE +
           (int)KVFEED_START_FROM + (int)KVFEED_START_SNAPSHOT + (st == KVFEED_OK);
}
