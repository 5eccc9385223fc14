/* The seed's scaling workload as a C program, for any malloc (run it under
 * LD_PRELOAD): allocate N blocks of 16 B (or, with "mixed", of 8..1024 B in
 * a fixed pseudo-random sequence), touching each; print the data size, the
 * RSS growth and the overhead; free all; print the RSS growth right after
 * and 1.2 s later. RSS comes from /proc/self/statm, relative to the level
 * just before the run; MB = 10^6 B. The pointer table is mapped and
 * touched before that baseline, outside the allocator.
 *
 *   cc -O2 -o scaling scripts/scaling.c
 *   LD_PRELOAD=target/release/libhakmem.so ./scaling 16 1000000
 *
 * scripts/preload-bench.sh runs it under each allocator, one process per
 * case. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static long rss_bytes(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    long size = 0, resident = 0;
    if (!f || fscanf(f, "%ld %ld", &size, &resident) != 2) {
        perror("statm");
        exit(1);
    }
    fclose(f);
    return resident * sysconf(_SC_PAGESIZE);
}

static size_t mixed_size(size_t i) {
    uint64_t x = (uint64_t)i * 0x9e3779b97f4a7c15ULL;
    x ^= x >> 29;
    return 8 + (size_t)(x % 1017);
}

int main(int argc, char **argv) {
    if (argc != 3 || (strcmp(argv[1], "16") != 0 && strcmp(argv[1], "mixed") != 0)) {
        fprintf(stderr, "usage: %s 16|mixed N\n", argv[0]);
        return 2;
    }
    int mixed = strcmp(argv[1], "mixed") == 0;
    size_t n = strtoul(argv[2], NULL, 10);
    void **slot = mmap(NULL, n * sizeof *slot, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (slot == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    memset(slot, 0, n * sizeof *slot);
    /* One allocation first, so the allocator's set-up is in the baseline. */
    free(malloc(16));
    long base = rss_bytes();
    size_t data = 0;
    for (size_t i = 0; i < n; i++) {
        size_t sz = mixed ? mixed_size(i) : 16;
        char *p = malloc(sz);
        if (!p) {
            fprintf(stderr, "out of memory\n");
            return 1;
        }
        memset(p, 0x5a, sz);
        data += sz;
        slot[i] = p;
    }
    long live = rss_bytes();
    for (size_t i = 0; i < n; i++)
        free(slot[i]);
    long freed = rss_bytes();
    struct timespec wait = {1, 200000000};
    nanosleep(&wait, NULL);
    long later = rss_bytes();
    printf("%-6s %8zu %9.2f %10.2f %9.1f%% %12.2f %12.2f\n", mixed ? "8-1K" : "16 B", n,
           data / 1e6, (live - base) / 1e6, ((double)(live - base) / (double)data - 1.0) * 100.0,
           (freed - base) / 1e6, (later - base) / 1e6);
    return 0;
}
