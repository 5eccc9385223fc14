/* Shared by the C programs that tests/preload.rs runs under
 * LD_PRELOAD=libhakmem.so. A failed CHECK prints the file, line and the
 * expression and exits with status 1, so the Rust driver reports it. */
#ifndef HAKMEM_TEST_COMMON_H
#define HAKMEM_TEST_COMMON_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CHECK(cond)                                                          \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "%s:%d: CHECK failed: %s (errno %d)\n",          \
                    __FILE__, __LINE__, #cond, errno);                       \
            exit(1);                                                         \
        }                                                                    \
    } while (0)

/* The malloc this process calls must be libhakmem's: otherwise every other
 * check would test glibc. (HAKMEM_TEST_ANY_MALLOC=1 lifts this, to compare
 * a run with another allocator by hand.) */
static inline void require_hakmem(void) {
    const char *any = getenv("HAKMEM_TEST_ANY_MALLOC");
    if (any && strcmp(any, "1") == 0)
        return;
    Dl_info info;
    void *m = dlsym(RTLD_DEFAULT, "malloc");
    if (!m || !dladdr(m, &info) || !info.dli_fname ||
        !strstr(info.dli_fname, "libhakmem")) {
        fprintf(stderr, "malloc is not hakmem's (it comes from %s); run under "
                        "LD_PRELOAD=libhakmem.so\n",
                info.dli_fname ? info.dli_fname : "?");
        exit(2);
    }
}

/* Fills a block with a pattern derived from its address and a tag. */
static inline void fill(void *p, size_t n, unsigned tag) {
    unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        b[i] = (unsigned char)(tag + i * 131u);
}

/* Whether the block still holds fill()'s pattern. */
static inline int intact(const void *p, size_t n, unsigned tag) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i] != (unsigned char)(tag + i * 131u))
            return 0;
    return 1;
}

/* A small deterministic PRNG (xorshift64*), per caller state. */
static inline uint64_t rnd(uint64_t *s) {
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1DULL;
}

#endif
