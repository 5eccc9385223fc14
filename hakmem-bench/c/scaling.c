/* The seed's scaling workload as a C program, for any malloc (run under
 * LD_PRELOAD by hakmem-bench): for each case KIND:N, allocate N blocks of
 * 16 B (KIND 16) or of 8..1024 B in a fixed pseudo-random sequence (KIND
 * mixed), touching each; report the RSS growth over the data (overhead);
 * free all; sample the RSS growth every 50 ms for WAIT_MS ms (the value at
 * 1.2 s is the "after the purge delay" figure). RSS comes from
 * /proc/self/statm, relative to the level just before the case. The pointer
 * table is mapped and touched before that baseline, outside the allocator.
 *
 *   scaling [--fork] WAIT_MS KIND:N...
 *
 * With --fork the parent first allocates and frees a mixed working set
 * (keeping a tenth of it live), then runs the cases in a fork()ed child:
 * the allocator's state after fork is what is measured. */
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include "common.h"

static size_t mixed_size(size_t i) {
    uint64_t x = (uint64_t)i * 0x9e3779b97f4a7c15ULL;
    x ^= x >> 29;
    return 8 + (size_t)(x % 1017);
}

static void run_case(const char *spec, long wait_ms, uint64_t *check) {
    int mixed = strncmp(spec, "mixed:", 6) == 0;
    if (!mixed && strncmp(spec, "16:", 3) != 0) {
        fprintf(stderr, "bad case %s (16:N or mixed:N)\n", spec);
        exit(2);
    }
    size_t n = strtoul(strchr(spec, ':') + 1, NULL, 10);
    char label[64];
    snprintf(label, sizeof label, "%s-%zuK", mixed ? "mixed" : "16B", n / 1000);
    void **slot = mmap(NULL, n * sizeof *slot, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (slot == MAP_FAILED) {
        perror("mmap");
        exit(1);
    }
    memset(slot, 0, n * sizeof *slot);
    free(malloc(16)); /* the allocator's set-up belongs to the baseline */
    long base = rss_bytes();
    size_t data = 0;
    double t0 = now_s();
    for (size_t i = 0; i < n; i++) {
        size_t sz = mixed ? mixed_size(i) : 16;
        unsigned char *p = xmalloc(sz);
        memset(p, (int)(i & 0xff), sz);
        data += sz;
        slot[i] = p;
    }
    long live = rss_bytes();
    for (size_t i = 0; i < n; i++) {
        *check += ((unsigned char *)slot[i])[0];
        free(slot[i]);
    }
    double t1 = now_s();
    long freed = rss_bytes();
    char name[96];
    snprintf(name, sizeof name, "overhead.%s", label);
    metric(name, ((double)(live - base) / (double)data - 1.0) * 100.0, "%", "lower");
    snprintf(name, sizeof name, "rss_live.%s", label);
    metric(name, (double)(live - base) / 1e6, "MB", "lower");
    snprintf(name, sizeof name, "rss_freed.%s", label);
    metric(name, (double)(freed - base) / 1e6, "MB", "lower");
    sample_rss(label, base, wait_ms);
    snprintf(name, sizeof name, "rss_after_delay.%s", label);
    metric(name, (double)(rss_bytes() - base) / 1e6, "MB", "lower");
    snprintf(name, sizeof name, "time.%s", label);
    metric(name, (t1 - t0) * 1e3, "ms", "lower");
    printf("rss_free %ld\n", freed - base);
    *check += data;
    munmap(slot, n * sizeof *slot);
}

int main(int argc, char **argv) {
    int i = 1, forked = 0;
    if (i < argc && strcmp(argv[i], "--fork") == 0) {
        forked = 1;
        i++;
    }
    if (argc - i < 2) {
        fprintf(stderr, "usage: %s [--fork] WAIT_MS 16:N|mixed:N...\n", argv[0]);
        return 2;
    }
    long wait_ms = strtol(argv[i++], NULL, 10);
    if (forked) {
        enum { W = 200000 };
        static void *keep[W / 10];
        for (size_t j = 0; j < W; j++) {
            void *p = xmalloc(mixed_size(j));
            memset(p, 1, 8);
            if (j % 10 == 0)
                keep[j / 10] = p;
            else
                free(p);
        }
        fflush(stdout);
        pid_t pid = fork();
        if (pid < 0) {
            perror("fork");
            return 1;
        }
        if (pid > 0) {
            int status = 0;
            waitpid(pid, &status, 0);
            for (size_t j = 0; j < W / 10; j++)
                free(keep[j]);
            return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
        }
    }
    uint64_t check = 0;
    for (; i < argc; i++)
        run_case(argv[i], wait_ms, &check);
    printf("check %llu\n", (unsigned long long)check);
    fflush(stdout);
    return 0;
}
