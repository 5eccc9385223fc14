/* hakmem's C interface (hakmem.h) and glibc's introspection calls, from a
 * program linked with -lhakmem:
 *
 *   cc stats.c $(pkg-config --cflags --libs hakmem) -o stats && ./stats
 *
 * It allocates, reads the exact figures, frees everything and trims, and
 * checks each step; it prints "stats ok" and exits 0 when all hold.
 * hakmem-malloc/tests/preload.rs builds and runs it. */
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hakmem.h>

#define CHECK(cond)                                                          \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, \
                    #cond);                                                  \
            exit(1);                                                         \
        }                                                                    \
    } while (0)

enum { N = 10000, SMALL = 100, LARGE = 1 << 20 };

static void *blocks[N];
static void *volatile sink; /* keeps the compiler from dropping a malloc */

int main(void) {
    char want[32];
    snprintf(want, sizeof want, "%d.%d.%d", HAKMEM_VERSION_MAJOR,
             HAKMEM_VERSION_MINOR, HAKMEM_VERSION_PATCH);
    CHECK(strcmp(hakmem_version(), want) == 0);

    /* The thread's first allocation sets its heap up, which registers a
     * thread-exit handler (a block that stays held): take it first. */
    sink = malloc(1);
    free(sink);
    hakmem_stats_t before;
    CHECK(hakmem_stats_get(&before) == 0);
    CHECK(hakmem_stats_get(NULL) == EINVAL);

    /* N small blocks and one large one: held bytes cover them. */
    for (int i = 0; i < N; i++) {
        blocks[i] = malloc(SMALL);
        CHECK(blocks[i] != NULL);
        memset(blocks[i], i, SMALL);
    }
    char *large = malloc(LARGE);
    CHECK(large != NULL);
    memset(large, 1, LARGE);

    hakmem_stats_t live;
    CHECK(hakmem_stats_get(&live) == 0);
    CHECK(live.held_bytes >= before.held_bytes + (size_t)N * SMALL + LARGE);
    CHECK(live.held_blocks >= before.held_blocks + N + 1);
    CHECK(live.large_count >= 1 && live.large_bytes >= LARGE);
    CHECK(live.mapped_bytes >= live.held_bytes);
    CHECK(live.os_mapped_bytes >= live.mapped_bytes);
    CHECK(live.thread_heaps >= 1);

    /* glibc's view of the same moment. */
    struct mallinfo2 mi = mallinfo2();
    CHECK(mi.uordblks == live.held_bytes);
    CHECK(mi.hblks == live.large_count);
    CHECK(mi.hblkhd == live.large_mapped_bytes);
    CHECK(mi.arena + mi.hblkhd + live.large_cached_bytes == live.mapped_bytes);
    CHECK(mi.uordblks + mi.fordblks == live.mapped_bytes);
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
#endif
    struct mallinfo old = mallinfo();
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif
    CHECK((size_t)old.uordblks == mi.uordblks);

    /* Free everything and trim: nothing held, nothing left to trim. */
    for (int i = 0; i < N; i++)
        free(blocks[i]);
    free(large);
    hakmem_stats_t freed;
    CHECK(hakmem_stats_get(&freed) == 0);
    CHECK(freed.held_bytes == before.held_bytes);
    CHECK(freed.held_blocks == before.held_blocks);
    size_t released = hakmem_trim();
    hakmem_stats_t trimmed;
    CHECK(hakmem_stats_get(&trimmed) == 0);
    CHECK(trimmed.superslabs_released >= freed.superslabs_released + released);
    CHECK(trimmed.superslabs_retained == 0);
    CHECK(trimmed.large_cached_bytes == 0);
    CHECK(trimmed.mapped_bytes < live.mapped_bytes);
    CHECK(mallinfo2().keepcost == 0);
    CHECK(malloc_trim(0) == 0); /* nothing left to give back */
    malloc_stats();             /* the table, on stderr */

    /* Options: the environment's values; only show_stats changes. */
    CHECK(hakmem_option_get(HAKMEM_OPTION_RETAIN) ==
          (getenv("HAKMEM_RETAIN") ? atoll(getenv("HAKMEM_RETAIN")) : 4));
    CHECK(hakmem_option_get((hakmem_option_t)99) == -1);
    CHECK(hakmem_option_set(HAKMEM_OPTION_RETAIN, 0) == EPERM);
    CHECK(hakmem_option_set(HAKMEM_OPTION_SHOW_STATS, 2) == EINVAL);
    CHECK(hakmem_option_set(HAKMEM_OPTION_SHOW_STATS, 1) == 0);
    CHECK(hakmem_option_get(HAKMEM_OPTION_SHOW_STATS) == 1);
    printf("stats ok\n");
    return 0; /* the table is printed once more, at exit */
}
