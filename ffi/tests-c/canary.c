/*
 * Deliberately wrong programs that ffi/run-c-tests.sh runs under valgrind and
 * AddressSanitizer, expecting them to be caught. They prove the sanitizer
 * runs see the library's allocations (so a clean run means something).
 *
 *   ./canary use-after-free   reads an event's key after kvfeed_watcher_free
 *   ./canary leak             never calls kvfeed_buf_free
 */
#include "kvfeed.h"

#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
    kvfeed_store *s = NULL;
    kvfeed_watcher *w = NULL;
    if (argc < 2 || kvfeed_store_new(NULL, &s) != KVFEED_OK) return 2;
    if (kvfeed_watch_new(s, NULL, &w) != KVFEED_OK) return 2;
    static const char key[] = "a-key-long-enough-to-be-its-own-allocation";
    kvfeed_put(s, (const uint8_t *)key, sizeof key - 1, (const uint8_t *)"v", 1, NULL);
    int result = 0;
    if (strcmp(argv[1], "use-after-free") == 0) {
        kvfeed_event ev;
        if (kvfeed_watcher_next(w, 0, &ev) != KVFEED_OK) return 2;
        kvfeed_watcher_free(w);
        kvfeed_store_free(s); /* the last references to the key: it is freed */
        volatile uint8_t first = ev.key[0]; /* BUG: the event died with the watcher */
        result = first == 'a' ? 0 : 3;
        return result;
    }
    if (strcmp(argv[1], "leak") == 0) {
        kvfeed_buf buf = {NULL, 0};
        if (kvfeed_get(s, (const uint8_t *)key, sizeof key - 1, &buf, NULL) != KVFEED_OK) return 2;
        buf.ptr = NULL; /* BUG: the buffer is lost, never freed */
    }
    kvfeed_watcher_free(w);
    kvfeed_store_free(s);
    return result;
}
