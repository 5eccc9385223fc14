/* Bad input under libhakmem.so: each mode makes one invalid call, which
 * must print "hakmem: invalid free of 0x...: <fault>" on stderr and abort.
 * Each mode first prints "target <pointer>" (the pointer hakmem must name).
 * Reaching the end prints "survived" and exits 0, which the driver counts
 * as a failure. Modes: double-small, double-after-flush, double-after-write,
 * double-large,
 * double-cross-thread, double-from-other-thread,
 * static, stack, interior, foreign (a block from glibc's own malloc, as a
 * pointer from before hakmem was loaded would be), foreign-large, mmap,
 * metadata (inside a SuperSlab's header), realloc-static, usable-static. */
#include "common.h"

#include <malloc.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/resource.h>

/* The double frees below are on purpose. */
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
#pragma GCC diagnostic ignored "-Wuse-after-free"
#endif

static char static_buf[256];

/* Announces the pointer the next call is about. */
static void *target(void *p) {
    printf("target %p\n", p);
    fflush(stdout);
    return p;
}

static void *free_it(void *p) {
    free(p);
    return NULL;
}

/* glibc's own malloc, found in libc.so.6 itself. */
static void *glibc_malloc(size_t n) {
    void *libc = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
    CHECK(libc != NULL);
    void *(*m)(size_t) = (void *(*)(size_t))dlsym(libc, "malloc");
    CHECK(m != NULL && (void *)m != dlsym(RTLD_DEFAULT, "malloc"));
    void *p = m(n);
    CHECK(p != NULL);
    return p;
}

int main(int argc, char **argv) {
    require_hakmem();
    CHECK(argc == 2);
    /* No core file for the abort we expect. */
    struct rlimit no_core = {0, 0};
    setrlimit(RLIMIT_CORE, &no_core);
    const char *m = argv[1];
    /* Some live blocks around, as in a real program. */
    for (int i = 0; i < 100; i++)
        CHECK(malloc((size_t)i * 8) != NULL);
    fflush(stdout);
    if (strcmp(m, "double-small") == 0) {
        char *p = malloc(24);
        CHECK(p != NULL);
        free(p);
        free(target(p));
    } else if (strcmp(m, "double-after-flush") == 0) {
        /* The first free's block has left the thread's cache for its slab
         * by the time of the second. */
        enum { N = 1000 };
        static char *q[N];
        for (int i = 0; i < N; i++)
            CHECK((q[i] = malloc(24)) != NULL);
        for (int i = 0; i < N; i++)
            free(q[i]);
        free(target(q[0]));
    } else if (strcmp(m, "double-from-other-thread") == 0) {
        /* Freed by its owner, then again by another thread. */
        char *p = malloc(100);
        CHECK(p != NULL);
        free(p);
        pthread_t t;
        CHECK(pthread_create(&t, NULL, free_it, target(p)) == 0);
        CHECK(pthread_join(t, NULL) == 0);
    } else if (strcmp(m, "double-after-write") == 0) {
        /* A use after free wrote into the block before the second free. */
        char *p = malloc(24);
        CHECK(p != NULL);
        free(p);
        memset(p, 7, 24);
        free(target(p));
        /* Undetected, the block would now be handed out twice. */
        char *a = malloc(24), *b = malloc(24);
        printf("a=%p b=%p\n", (void *)a, (void *)b);
    } else if (strcmp(m, "double-large") == 0) {
        char *p = malloc(4 << 20);
        CHECK(p != NULL);
        memset(p, 1, 4 << 20);
        free(p);
        free(target(p));
    } else if (strcmp(m, "double-cross-thread") == 0) {
        char *p = malloc(100);
        CHECK(p != NULL);
        pthread_t t;
        CHECK(pthread_create(&t, NULL, free_it, p) == 0);
        CHECK(pthread_join(t, NULL) == 0);
        free(target(p));
    } else if (strcmp(m, "static") == 0) {
        free(target(static_buf + 16));
    } else if (strcmp(m, "stack") == 0) {
        char local[64];
        void *volatile p = local;
        free(target(p));
    } else if (strcmp(m, "interior") == 0) {
        char *p = malloc(64);
        CHECK(p != NULL);
        free(target(p + 16));
    } else if (strcmp(m, "foreign") == 0) {
        free(target(glibc_malloc(64)));
    } else if (strcmp(m, "foreign-large") == 0) {
        free(target(glibc_malloc(1 << 20)));
    } else if (strcmp(m, "mmap") == 0) {
        void *p = mmap(NULL, 1 << 16, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        CHECK(p != MAP_FAILED);
        free(target((char *)p + 4096));
    } else if (strcmp(m, "metadata") == 0) {
        /* 64 bytes into the 2 MiB SuperSlab holding a small block (its
         * header): hakmem memory, but no block. */
        char *p = malloc(32);
        CHECK(p != NULL);
        free(target((void *)(((uintptr_t)p & ~(((uintptr_t)1 << 21) - 1)) + 64)));
    } else if (strcmp(m, "realloc-static") == 0) {
        void *volatile r = realloc(target(static_buf + 32), 1000);
        (void)r;
    } else if (strcmp(m, "usable-static") == 0) {
        printf("%zu\n", malloc_usable_size(target(static_buf)));
    } else {
        CHECK(!"unknown mode");
    }
    printf("survived\n");
    return 0;
}
