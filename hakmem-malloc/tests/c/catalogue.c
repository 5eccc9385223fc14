/* The heap-corruption catalogue: 134 small programs, one per case, each a
 * classic heap bug. `catalogue CASE` runs one; `catalogue --list` prints
 * every case name, one a line. A case that reaches its end prints
 * "survived" and exits 0: the allocator under it did *not* stop the bug.
 * Any other end (an abort with a message, SIGSEGV on a guard page, a
 * non-zero exit) counts as *stopped*. tests/catalogue.rs runs each case in
 * a child under LD_PRELOAD and classifies it; docs/reliability.md has the
 * table for glibc, mimalloc, jemalloc and hakmem.
 *
 * The enumeration (134 = 3 sizes x 42 + 8):
 *
 * For each block size S in {8 B, 4 KiB, 256 KiB} (suffix -8, -4k, -256k):
 *   double-plain      free(p); free(p)
 *   double-delayed    free(p); 100 allocations of other sizes; free(p)
 *   double-interleaved free(p); free(q); free(p)
 *   free-invalid      free() of a global array of S bytes
 *   free-unaligned    free(p + 1)
 *   free-stack        free() of a local (stack) array of S bytes
 *   free-far          free(p + 1 GiB)
 *   overflow-D-OBS    write D bytes just past the S requested bytes of p,
 *   underflow-D-OBS   or just before p; D in {1, 32, 1m (1 MiB)}; then OBS:
 *                       free       free(p)
 *                       realloc    p = realloc(p, 2 S); free(p)
 *                       neighbour  free(q) (the block after p); free(p)
 *                       churn      64 more blocks of S allocated and freed; free(p)
 *                       held       p is never freed: the program ends holding
 *                                  it (only a fault at the write, or a check
 *                                  of a neighbour, can stop it)
 *   uaf-ptr           after free(p): p's first word := a global's address
 *                     (free-list poisoning); then two malloc(S)
 *   uaf-mid           after free(p): p[S/2] written; then two malloc(S)
 *   uaf-last          after free(p): p[S-1] written; then two malloc(S)
 *   uaf-all           after free(p): all S bytes written; then two malloc(S)
 *   uaf-late          after free(p): all S bytes written; 64 blocks of S
 *                     allocated and freed, then two malloc(S)
 * Zero-size blocks, p = malloc(0):
 *   zero-read-N, zero-write-N   read or write N bytes from p, N in
 *                               {1, 8, 4k, 256k}; then free(p)
 *
 * Every case first allocates a block `a` of S bytes before p and a block
 * `q` after it, so p has neighbours as in a real program, and frees every
 * block it still holds at the end. Built with -O0 -fno-builtin so that the
 * compiler keeps every bad access as written. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
#pragma GCC diagnostic ignored "-Wuse-after-free"
#endif
#pragma GCC diagnostic ignored "-Wfree-nonheap-object"

#define MIB (1024 * 1024)

static const char *const SIZE_NAMES[] = {"8", "4k", "256k"};
static const size_t SIZES[] = {8, 4096, 256 * 1024};
static const char *const AMOUNT_NAMES[] = {"1", "32", "1m"};
static const size_t AMOUNTS[] = {1, 32, MIB};
static const char *const OBSERVERS[] = {"free", "realloc", "neighbour", "churn", "held"};
static const char *const UAFS[] = {"ptr", "mid", "last", "all", "late"};
static const char *const ZERO_NAMES[] = {"1", "8", "4k", "256k"};
static const size_t ZERO_LENS[] = {1, 8, 4096, 256 * 1024};

/* Keeps the compiler from reasoning about pointers and values. */
static void *volatile opaque;
static volatile unsigned char sink;
static char global_array[256 * 1024] __attribute__((aligned(64)));

static void *hide(void *p) {
    opaque = p;
    return opaque;
}

static void *xmalloc(size_t n) {
    void *p = malloc(n);
    if (p == NULL) {
        fprintf(stderr, "catalogue: malloc(%zu) returned NULL\n", n);
        exit(2);
    }
    return hide(p);
}

static void churn(size_t s) {
    void *v[64];
    for (int i = 0; i < 64; i++)
        v[i] = xmalloc(s);
    for (int i = 0; i < 64; i++)
        free(v[i]);
}

static int double_free(const char *kind, size_t s) {
    char *a = xmalloc(s), *p = xmalloc(s), *q = xmalloc(s);
    if (strcmp(kind, "plain") == 0) {
        free(p);
        free(hide(p));
    } else if (strcmp(kind, "delayed") == 0) {
        void *v[100];
        free(p);
        for (int i = 0; i < 100; i++)
            v[i] = xmalloc(200 + (size_t)i * 8);
        free(hide(p));
        for (int i = 0; i < 100; i++)
            free(v[i]);
    } else if (strcmp(kind, "interleaved") == 0) {
        free(p);
        free(q);
        free(hide(p));
        q = NULL;
    } else {
        return -1;
    }
    free(q);
    free(a);
    return 0;
}

static int bad_free(const char *kind, size_t s) {
    char *a = xmalloc(s), *p = xmalloc(s), *q = xmalloc(s);
    if (strcmp(kind, "invalid") == 0) {
        free(hide(global_array));
    } else if (strcmp(kind, "unaligned") == 0) {
        free(hide(p + 1));
    } else if (strcmp(kind, "stack") == 0) {
        /* A stack array of S bytes (the largest is 256 KiB, well inside
         * the 8 MiB main-thread stack). */
        char *buf = __builtin_alloca(s);
        memset(buf, 0, s);
        free(hide(buf));
    } else if (strcmp(kind, "far") == 0) {
        free(hide(p + ((size_t)1 << 30)));
    } else {
        return -1;
    }
    free(p);
    free(q);
    free(a);
    return 0;
}

static int bounds(int under, const char *amount, const char *obs, size_t s) {
    size_t d = 0;
    for (int i = 0; i < 3; i++)
        if (strcmp(amount, AMOUNT_NAMES[i]) == 0)
            d = AMOUNTS[i];
    if (d == 0)
        return -1;
    char *a = xmalloc(s), *p = xmalloc(s), *q = xmalloc(s);
    memset(p, 0x11, s);
    if (under)
        memset(hide(p - d), 0x41, d);
    else
        memset(hide(p + s), 0x41, d);
    if (strcmp(obs, "free") == 0) {
        free(p);
    } else if (strcmp(obs, "realloc") == 0) {
        p = realloc(p, 2 * s);
        free(p);
    } else if (strcmp(obs, "neighbour") == 0) {
        free(q);
        q = NULL;
        free(p);
    } else if (strcmp(obs, "churn") == 0) {
        churn(s);
        free(p);
    } else if (strcmp(obs, "held") == 0) {
        hide(p);
    } else {
        return -1;
    }
    free(q);
    free(a);
    return 0;
}

static int use_after_free(const char *kind, size_t s) {
    char *a = xmalloc(s), *p = xmalloc(s), *q = xmalloc(s);
    free(p);
    if (strcmp(kind, "ptr") == 0) {
        /* Point the freed block's first word at a global, as a
         * free-list poisoning attack would. */
        *(void **)hide(p) = global_array + 4096;
    } else if (strcmp(kind, "mid") == 0) {
        ((char *)hide(p))[s / 2] = 0x41;
    } else if (strcmp(kind, "last") == 0) {
        ((char *)hide(p))[s - 1] = 0x41;
    } else if (strcmp(kind, "all") == 0 || strcmp(kind, "late") == 0) {
        memset(hide(p), 0x41, s);
        if (strcmp(kind, "late") == 0)
            churn(s);
    } else {
        return -1;
    }
    char *x = xmalloc(s), *y = xmalloc(s);
    memset(x, 0x22, s);
    memset(y, 0x33, s);
    free(x);
    free(y);
    free(q);
    free(a);
    return 0;
}

static int zero_size(const char *kind, const char *len) {
    size_t n = 0;
    for (int i = 0; i < 4; i++)
        if (strcmp(len, ZERO_NAMES[i]) == 0)
            n = ZERO_LENS[i];
    if (n == 0)
        return -1;
    char *a = xmalloc(16);
    unsigned char *p = xmalloc(0);
    char *q = xmalloc(16);
    if (strcmp(kind, "read") == 0) {
        unsigned char acc = 0;
        for (size_t i = 0; i < n; i++)
            acc ^= ((volatile unsigned char *)p)[i];
        sink = acc;
    } else if (strcmp(kind, "write") == 0) {
        memset(hide(p), 0x41, n);
    } else {
        return -1;
    }
    free(p);
    free(q);
    free(a);
    return 0;
}

static void list(void) {
    static const char *const doubles[] = {"plain", "delayed", "interleaved"};
    static const char *const frees[] = {"invalid", "unaligned", "stack", "far"};
    for (int z = 0; z < 3; z++) {
        const char *sz = SIZE_NAMES[z];
        for (int i = 0; i < 3; i++)
            printf("double-%s-%s\n", doubles[i], sz);
        for (int i = 0; i < 4; i++)
            printf("free-%s-%s\n", frees[i], sz);
        for (int u = 0; u < 2; u++)
            for (int d = 0; d < 3; d++)
                for (int o = 0; o < 5; o++)
                    printf("%s-%s-%s-%s\n", u ? "underflow" : "overflow",
                           AMOUNT_NAMES[d], OBSERVERS[o], sz);
        for (int i = 0; i < 5; i++)
            printf("uaf-%s-%s\n", UAFS[i], sz);
    }
    for (int rw = 0; rw < 2; rw++)
        for (int i = 0; i < 4; i++)
            printf("zero-%s-%s\n", rw ? "write" : "read", ZERO_NAMES[i]);
}

/* Splits "family-a-b-size" at its dashes (at most 4 fields). */
static int split(char *name, char **f, int max) {
    int n = 0;
    f[n++] = name;
    for (char *c = name; *c && n < max; c++)
        if (*c == '-') {
            *c = 0;
            f[n++] = c + 1;
        }
    return n;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: catalogue CASE | --list\n");
        return 2;
    }
    if (strcmp(argv[1], "--list") == 0) {
        list();
        return 0;
    }
    /* No core files for the aborts we expect. */
    struct rlimit no_core = {0, 0};
    setrlimit(RLIMIT_CORE, &no_core);
    /* Some live blocks of many sizes around, as in a real program. */
    for (int i = 0; i < 100; i++)
        hide(xmalloc((size_t)i * 24 + 1));
    char name[128];
    snprintf(name, sizeof name, "%s", argv[1]);
    char *f[5];
    int n = split(name, f, 5);
    int rc = -1;
    if (strcmp(f[0], "zero") == 0 && n == 3) {
        rc = zero_size(f[1], f[2]);
    } else {
        size_t s = 0;
        const char *sz = f[n - 1];
        for (int i = 0; i < 3; i++)
            if (strcmp(sz, SIZE_NAMES[i]) == 0)
                s = SIZES[i];
        if (s == 0) {
            rc = -1;
        } else if (strcmp(f[0], "double") == 0 && n == 3) {
            rc = double_free(f[1], s);
        } else if (strcmp(f[0], "free") == 0 && n == 3) {
            rc = bad_free(f[1], s);
        } else if (strcmp(f[0], "overflow") == 0 && n == 4) {
            rc = bounds(0, f[1], f[2], s);
        } else if (strcmp(f[0], "underflow") == 0 && n == 4) {
            rc = bounds(1, f[1], f[2], s);
        } else if (strcmp(f[0], "uaf") == 0 && n == 3) {
            rc = use_after_free(f[1], s);
        }
    }
    if (rc != 0) {
        fprintf(stderr, "catalogue: unknown case %s\n", argv[1]);
        return 2;
    }
    printf("survived\n");
    return 0;
}
