/* The C allocation API under libhakmem.so, checked against what glibc
 * documents: malloc(0), free(NULL), calloc overflow and zeroing, realloc
 * in every direction, reallocarray overflow, posix_memalign's EINVAL and
 * alignments 8 .. 2 MiB, aligned_alloc / memalign / valloc / pvalloc,
 * malloc_usable_size, huge requests (NULL + ENOMEM, old block untouched),
 * free_sized / free_aligned_sized, blocks made inside libc (strdup,
 * asprintf, getline, fopen), and allocation in constructors, destructors
 * and atexit handlers. Prints "api ok" and exits 0 when all hold. */
#include "common.h"

#include <malloc.h>

/* Hides a value from the compiler, so it cannot fold or drop a call. */
static size_t hide(size_t x) {
    volatile size_t v = x;
    return v;
}

static void *volatile sink;

static void *early;

/* Runs before main (after libhakmem's own constructor, which LD_PRELOAD
 * orders first): allocation from a constructor. */
__attribute__((constructor(101))) static void early_alloc(void) {
    early = malloc(40);
    if (early)
        fill(early, 40, 7);
    void *t = calloc(3, 100);
    free(t);
}

static void at_exit_alloc(void) {
    char *p = malloc(hide(3000));
    if (!p)
        abort();
    fill(p, 3000, 1);
    free(realloc(p, 100000));
}

__attribute__((destructor)) static void late_alloc(void) {
    void *p = malloc(hide(1000));
    if (!p)
        abort();
    free(p);
}

static int cmp_ptr(const void *a, const void *b) {
    uintptr_t x = *(const uintptr_t *)a, y = *(const uintptr_t *)b;
    return x < y ? -1 : x > y;
}

static void test_malloc_zero_and_free_null(void) {
    enum { N = 2000 };
    static void *z[N];
    for (int i = 0; i < N; i++) {
        z[i] = malloc(hide(0));
        CHECK(z[i] != NULL);
        CHECK((uintptr_t)z[i] % 16 == 0);
    }
    qsort(z, N, sizeof z[0], cmp_ptr);
    for (int i = 1; i < N; i++)
        CHECK(z[i] != z[i - 1]); /* unique */
    for (int i = 0; i < N; i++)
        free(z[i]);
    free(NULL);
    /* calloc with a zero count or size: a unique freeable pointer too. */
    void *a = calloc(hide(0), 8), *b = calloc(8, hide(0));
    CHECK(a && b && a != b);
    free(a);
    free(b);
}

static void test_sizes_and_usable(void) {
    CHECK(malloc_usable_size(NULL) == 0);
    /* Every size up to 70000 in steps, and powers of two with neighbours:
     * aligned to 16, usable >= request, and the whole usable size is ours
     * (two neighbours filled to their usable size stay intact). */
    uint64_t s = 42;
    for (size_t n = 0; n < 70000; n += 1 + n / 8) {
        unsigned char *p = malloc(hide(n)), *q = malloc(hide(n));
        CHECK(p && q);
        CHECK((uintptr_t)p % 16 == 0 && (uintptr_t)q % 16 == 0);
        size_t up = malloc_usable_size(p), uq = malloc_usable_size(q);
        CHECK(up >= n && uq >= n);
        unsigned tp = (unsigned)rnd(&s), tq = (unsigned)rnd(&s);
        fill(p, up, tp);
        fill(q, uq, tq);
        CHECK(intact(p, up, tp) && intact(q, uq, tq));
        free(p);
        free(q);
    }
    for (int k = 0; k <= 24; k++) {
        for (int d = -1; d <= 1; d++) {
            size_t n = ((size_t)1 << k) + (size_t)d;
            char *p = malloc(hide(n));
            CHECK(p != NULL);
            CHECK((uintptr_t)p % 16 == 0);
            CHECK(malloc_usable_size(p) >= n);
            memset(p, 0x5a, malloc_usable_size(p));
            free(p);
        }
    }
    /* Many live blocks of mixed sizes keep their contents. */
    enum { LIVE = 20000 };
    static unsigned char *blk[LIVE];
    static size_t len[LIVE];
    for (int i = 0; i < LIVE; i++) {
        len[i] = rnd(&s) % 1500;
        if (i % 1000 == 0)
            len[i] = 300000; /* a few large ones */
        blk[i] = malloc(hide(len[i]));
        CHECK(blk[i] != NULL);
        fill(blk[i], len[i], (unsigned)i);
    }
    for (int i = 0; i < LIVE; i += 2) {
        CHECK(intact(blk[i], len[i], (unsigned)i));
        free(blk[i]);
    }
    for (int i = 1; i < LIVE; i += 2) {
        CHECK(intact(blk[i], len[i], (unsigned)i));
        free(blk[i]);
    }
}

static void test_calloc(void) {
    errno = 0;
    CHECK(calloc(hide(SIZE_MAX / 2 + 1), 2) == NULL && errno == ENOMEM);
    errno = 0;
    CHECK(calloc(hide((size_t)1 << 33), (size_t)1 << 33) == NULL && errno == ENOMEM);
    errno = 0;
    CHECK(calloc(2, hide(SIZE_MAX / 2 + 1)) == NULL && errno == ENOMEM);
    errno = 0;
    CHECK(calloc(1, hide(SIZE_MAX)) == NULL && errno == ENOMEM);
    /* Zeroed, also when the block reuses a dirty freed one. */
    static const size_t sizes[] = {1,    8,     16,     24,      100,
                                   1000, 4096,  5000,   65536,   200000,
                                   1 << 20, (1 << 21) + 1, 5 << 20};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t n = sizes[i];
        for (int rep = 0; rep < 20; rep++) {
            unsigned char *d = malloc(hide(n));
            CHECK(d != NULL);
            memset(d, 0xa5, malloc_usable_size(d));
            free(d);
            unsigned char *c = calloc(hide(n), 1);
            CHECK(c != NULL);
            for (size_t j = 0; j < n; j++)
                if (c[j] != 0) {
                    fprintf(stderr, "calloc(%zu): byte %zu is %#x\n", n, j, c[j]);
                    CHECK(0);
                }
            memset(c, 0xa5, n);
            free(c);
        }
    }
    /* An array form: n elements of a struct. */
    struct pt { double x, y, z; } *v = calloc(hide(1000), sizeof *v);
    CHECK(v != NULL);
    for (int i = 0; i < 1000; i++)
        CHECK(v[i].x == 0.0 && v[i].y == 0.0 && v[i].z == 0.0);
    free(v);
}

static void test_realloc(void) {
    unsigned char *p = realloc(NULL, hide(100)); /* = malloc */
    CHECK(p != NULL);
    fill(p, 100, 3);
    static const size_t steps[] = {5000, 1 << 20, 10, 3 << 20, 4 << 20, 64, 64, 0x30000, 17};
    size_t have = 100;
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        size_t n = steps[i], keep = have < n ? have : n;
        p = realloc(p, hide(n));
        CHECK(p != NULL);
        CHECK((uintptr_t)p % 16 == 0);
        CHECK(malloc_usable_size(p) >= n);
        CHECK(intact(p, keep, 3));
        fill(p, n, 3);
        have = n;
    }
    /* realloc(p, 0) frees p and returns NULL (glibc). */
    CHECK(realloc(p, hide(0)) == NULL);
    /* Growing one byte at a time, as string builders do. */
    char *s = NULL;
    for (size_t n = 1; n <= 20000; n++) {
        s = realloc(s, hide(n));
        CHECK(s != NULL);
        s[n - 1] = (char)('a' + n % 26);
    }
    for (size_t n = 1; n <= 20000; n++)
        CHECK(s[n - 1] == (char)('a' + n % 26));
    free(s);
    /* A failed realloc leaves the old block alone. */
    p = malloc(hide(64));
    CHECK(p != NULL);
    fill(p, 64, 9);
    errno = 0;
    CHECK(realloc(p, hide(SIZE_MAX - 4096)) == NULL && errno == ENOMEM);
    errno = 0;
    CHECK(realloc(p, hide(SIZE_MAX / 2)) == NULL && errno == ENOMEM);
    CHECK(intact(p, 64, 9));
    free(p);
}

static void test_reallocarray(void) {
    unsigned char *p = reallocarray(NULL, hide(10), 10);
    CHECK(p != NULL);
    fill(p, 100, 4);
    errno = 0;
    CHECK(reallocarray(p, hide(SIZE_MAX / 2), 3) == NULL && errno == ENOMEM);
    errno = 0;
    CHECK(reallocarray(p, hide((size_t)1 << 40), (size_t)1 << 40) == NULL && errno == ENOMEM);
    CHECK(intact(p, 100, 4));
    p = reallocarray(p, hide(1000), 8);
    CHECK(p != NULL);
    CHECK(intact(p, 100, 4));
    CHECK(malloc_usable_size(p) >= 8000);
    free(p);
}

static void test_posix_memalign(void) {
    void *const marker = (void *)0x1234;
    static const size_t bad[] = {0, 1, 2, 3, 4, 12, 24, 40, 100, 4095, 4097, (size_t)-1};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        void *m = marker;
        int r = posix_memalign(&m, hide(bad[i]), 16);
        if (r != EINVAL)
            fprintf(stderr, "posix_memalign(align %zu) returned %d\n", bad[i], r);
        CHECK(r == EINVAL);
        CHECK(m == marker); /* untouched on failure */
    }
    enum { MAXLIVE = 400 };
    static void *live[MAXLIVE];
    int nlive = 0;
    for (size_t align = sizeof(void *); align <= ((size_t)1 << 21); align <<= 1) {
        const size_t sizes[] = {0, 1, 8, align - 1, align, align + 1, 3 * align, 100000};
        for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
            void *m = marker;
            errno = 0;
            int r = posix_memalign(&m, hide(align), sizes[i]);
            CHECK(r == 0);
            CHECK(m != marker && m != NULL);
            CHECK((uintptr_t)m % align == 0);
            CHECK(malloc_usable_size(m) >= sizes[i]);
            fill(m, sizes[i], (unsigned)align);
            CHECK(nlive < MAXLIVE);
            live[nlive++] = m;
        }
    }
    /* Keep them all live at once, then check and free. */
    int k = 0;
    for (size_t align = sizeof(void *); align <= ((size_t)1 << 21); align <<= 1) {
        const size_t sizes[] = {0, 1, 8, align - 1, align, align + 1, 3 * align, 100000};
        for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
            CHECK(intact(live[k], sizes[i], (unsigned)align));
            free(live[k++]);
        }
    }
    void *m = marker;
    int r = posix_memalign(&m, 64, hide(SIZE_MAX / 2));
    CHECK(r == ENOMEM);
    CHECK(m == marker);
    r = posix_memalign(&m, (size_t)1 << 20, hide(SIZE_MAX - ((size_t)1 << 19)));
    CHECK(r == ENOMEM);
    CHECK(m == marker);
}

static void test_aligned_family(void) {
    /* aligned_alloc and memalign: any power of two. */
    for (int k = 0; k <= 22; k++) {
        size_t align = (size_t)1 << k;
        char *a = aligned_alloc(hide(align), 100);
        char *b = memalign(hide(align), 3 * align + 5);
        CHECK(a && b);
        CHECK((uintptr_t)a % align == 0 && (uintptr_t)b % align == 0);
        CHECK((uintptr_t)a % 16 == 0 && (uintptr_t)b % 16 == 0);
        memset(a, 1, 100);
        memset(b, 2, 3 * align + 5);
        free(a);
        free(b);
    }
    errno = 0;
    CHECK(aligned_alloc(hide(3), 16) == NULL && errno == EINVAL);
    errno = 0;
    CHECK(aligned_alloc(hide(0), 16) == NULL && errno == EINVAL);
    errno = 0;
    CHECK(aligned_alloc(4096, hide(SIZE_MAX - 100)) == NULL && errno == ENOMEM);
    /* glibc's manual says EINVAL for a bad memalign boundary; its code
     * rounds the boundary up. Either is accepted here. */
    errno = 0;
    void *m = memalign(hide(24), 10);
    CHECK((m == NULL && errno == EINVAL) || (m != NULL && (uintptr_t)m % 32 == 0));
    free(m);

    /* valloc: page-aligned. */
    static const size_t vs[] = {0, 1, 4096, 5000, 1 << 20};
    for (size_t i = 0; i < sizeof vs / sizeof vs[0]; i++) {
        char *p = valloc(hide(vs[i]));
        CHECK(p != NULL && (uintptr_t)p % 4096 == 0);
        CHECK(malloc_usable_size(p) >= vs[i]);
        memset(p, 3, vs[i]);
        free(p);
    }
    /* pvalloc: page-aligned, size rounded up to whole pages (one for 0). */
    static const size_t ps[] = {0, 1, 4095, 4096, 4097, 300000};
    for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++) {
        size_t whole = ps[i] == 0 ? 4096 : (ps[i] + 4095) / 4096 * 4096;
        char *p = pvalloc(hide(ps[i]));
        CHECK(p != NULL && (uintptr_t)p % 4096 == 0);
        CHECK(malloc_usable_size(p) >= whole);
        memset(p, 4, whole);
        free(p);
    }
    errno = 0;
    CHECK(valloc(hide(SIZE_MAX)) == NULL && errno == ENOMEM);
    errno = 0;
    CHECK(pvalloc(hide(SIZE_MAX - 100)) == NULL && errno == ENOMEM);
}

static void test_huge(void) {
    static const size_t huge[] = {SIZE_MAX, SIZE_MAX - 15, SIZE_MAX - 4095, SIZE_MAX / 2,
                                  (size_t)PTRDIFF_MAX + 1, (size_t)1 << 47};
    for (size_t i = 0; i < sizeof huge / sizeof huge[0]; i++) {
        errno = 0;
        void *p = malloc(hide(huge[i]));
        if (p != NULL || errno != ENOMEM)
            fprintf(stderr, "malloc(%#zx) = %p, errno %d\n", huge[i], p, errno);
        CHECK(p == NULL && errno == ENOMEM);
    }
    /* And the allocator still works afterwards. */
    void *p = malloc(hide(32));
    CHECK(p != NULL);
    free(p);
}

static void test_sized_frees(void) {
    void (*fs)(void *, size_t) = (void (*)(void *, size_t))dlsym(RTLD_DEFAULT, "free_sized");
    void (*fas)(void *, size_t, size_t) =
        (void (*)(void *, size_t, size_t))dlsym(RTLD_DEFAULT, "free_aligned_sized");
    CHECK(fs != NULL && fas != NULL);
    for (size_t n = 1; n < 100000; n = n * 3 + 1) {
        void *p = malloc(hide(n));
        CHECK(p != NULL);
        memset(p, 1, n);
        fs(p, n);
        void *a = aligned_alloc(256, hide(n));
        CHECK(a != NULL && (uintptr_t)a % 256 == 0);
        memset(a, 2, n);
        fas(a, 256, n);
    }
    fs(NULL, 0);
    fas(NULL, 64, 0);
}

static void test_libc_internal(void) {
    /* Blocks libc makes with malloc are freed with our free. */
    char *d = strdup("hakmem");
    CHECK(d && strcmp(d, "hakmem") == 0);
    free(d);
    char *s = NULL;
    CHECK(asprintf(&s, "%s-%d-%0500d", "x", 42, 7) > 0 && s != NULL);
    CHECK(strncmp(s, "x-42-", 5) == 0 && strlen(s) == 505);
    free(s);
    char *buf = NULL;
    size_t cap = 0;
    FILE *f = fmemopen((void *)"line one\nline two is longer\n", 28, "r");
    CHECK(f != NULL);
    CHECK(getline(&buf, &cap, f) == 9);
    CHECK(getline(&buf, &cap, f) == 19);
    CHECK(strcmp(buf, "line two is longer\n") == 0);
    fclose(f);
    free(buf);
    char *ms = NULL;
    size_t mlen = 0;
    FILE *w = open_memstream(&ms, &mlen);
    CHECK(w != NULL);
    for (int i = 0; i < 10000; i++)
        fprintf(w, "%d,", i);
    fclose(w);
    CHECK(ms != NULL && mlen > 40000 && strncmp(ms, "0,1,2,", 6) == 0);
    free(ms);
    FILE *nf = fopen("/proc/self/status", "r");
    CHECK(nf != NULL);
    char line[256];
    CHECK(fgets(line, sizeof line, nf) != NULL);
    fclose(nf);
}

int main(void) {
    require_hakmem();
    CHECK(early != NULL && intact(early, 40, 7));
    free(early);
    CHECK(atexit(at_exit_alloc) == 0);
    test_malloc_zero_and_free_null();
    test_sizes_and_usable();
    test_calloc();
    test_realloc();
    test_reallocarray();
    test_posix_memalign();
    test_aligned_family();
    test_huge();
    test_sized_frees();
    test_libc_internal();
    sink = malloc(hide(10)); /* left live at exit, as programs do */
    printf("api ok\n");
    return 0;
}
