/* Shared helpers of the hakmem-bench C workloads: RSS, clock, a seeded
 * generator, and the lines the driver reads:
 *   metric NAME VALUE UNIT lower|higher   one measured figure
 *   check TEXT                            must be equal for every allocator
 *   rss_free BYTES                        RSS growth right after free-all
 *   sample LABEL MS BYTES                 RSS growth MS ms after free-all */
#ifndef HAKMEM_BENCH_COMMON_H
#define HAKMEM_BENCH_COMMON_H
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static inline long rss_bytes(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    long size = 0, resident = 0;
    if (!f || fscanf(f, "%ld %ld", &size, &resident) != 2) {
        perror("statm");
        exit(1);
    }
    fclose(f);
    return resident * sysconf(_SC_PAGESIZE);
}

static inline double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static inline void sleep_ms(long ms) {
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

/* xorshift64* */
static inline uint64_t rng_next(uint64_t *s) {
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1DULL;
}

static inline size_t rng_range(uint64_t *s, size_t lo, size_t hi) {
    return lo + (size_t)(rng_next(s) % (uint64_t)(hi - lo + 1));
}

static inline void *xmalloc(size_t n) {
    void *p = malloc(n);
    if (!p) {
        fprintf(stderr, "out of memory (%zu B)\n", n);
        exit(1);
    }
    return p;
}

static inline void metric(const char *name, double v, const char *unit, const char *better) {
    printf("metric %s %.6g %s %s\n", name, v, unit, better);
}

/* Prints RSS growth over `base` every 50 ms for `total_ms` ms. */
static inline void sample_rss(const char *label, long base, long total_ms) {
    for (long t = 0; t <= total_ms; t += 50) {
        printf("sample %s %ld %ld\n", label, t, rss_bytes() - base);
        if (t < total_ms)
            sleep_ms(50);
    }
}
#endif
