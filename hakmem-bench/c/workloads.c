/* The hakmem-bench C workloads, for any malloc (run under LD_PRELOAD):
 *
 *   workloads NAME SCALE THREADS
 *
 * NAME: churn, pairs, larson, ring, threads, realloc (see each function);
 * SCALE multiplies the work (1 = full run); THREADS is a comma list of
 * thread counts for the threaded ones. Output lines as in common.h; every
 * check figure is computed from values read back out of the blocks, so it
 * is the same under every correct allocator. */
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "common.h"

static double scale = 1.0;
static int nthreads[16];
static int nthread_counts;

static size_t scaled(double n) {
    size_t v = (size_t)(n * scale);
    return v ? v : 1;
}

/* Single-thread churn: 100k live blocks of 8..4096 B, each step frees a
 * random one and allocates a new one in its place. */
static void churn(void) {
    enum { LIVE = 100000 };
    size_t ops = scaled(8e6);
    static unsigned char *slot[LIVE];
    static size_t size[LIVE];
    uint64_t s = 1, check = 0;
    free(malloc(16));
    long base = rss_bytes();
    for (size_t i = 0; i < LIVE; i++) {
        size[i] = rng_range(&s, 8, 4096);
        slot[i] = xmalloc(size[i]);
        slot[i][0] = (unsigned char)i;
        slot[i][size[i] - 1] = (unsigned char)(i >> 8);
    }
    double t0 = now_s();
    for (size_t k = 0; k < ops; k++) {
        size_t i = rng_next(&s) % LIVE;
        check += slot[i][0] + slot[i][size[i] - 1];
        free(slot[i]);
        size[i] = rng_range(&s, 8, 4096);
        slot[i] = xmalloc(size[i]);
        slot[i][0] = (unsigned char)k;
        slot[i][size[i] - 1] = (unsigned char)(k >> 8);
    }
    double t1 = now_s();
    for (size_t i = 0; i < LIVE; i++)
        free(slot[i]);
    printf("rss_free %ld\n", rss_bytes() - base);
    metric("ns_per_op", (t1 - t0) * 1e9 / (double)ops, "ns", "lower");
    printf("check %llu\n", (unsigned long long)check);
}

/* malloc/free pairs: one block allocated and freed in a loop (hot), and
 * 1000 allocated then all freed (batch), for 16 B, 64 B and 1 KiB. */
static void pairs(void) {
    static const size_t sizes[] = {16, 64, 1024};
    uint64_t check = 0;
    for (int z = 0; z < 3; z++) {
        size_t sz = sizes[z], n = scaled(1e7);
        double t0 = now_s();
        for (size_t i = 0; i < n; i++) {
            volatile unsigned char *p = xmalloc(sz);
            p[0] = (unsigned char)i;
            check += p[0];
            free((void *)p);
        }
        double t1 = now_s();
        char name[64];
        snprintf(name, sizeof name, "hot.%zuB", sz);
        metric(name, (t1 - t0) * 1e9 / (double)n, "ns", "lower");
        enum { B = 1000 };
        static unsigned char *p[B];
        size_t rounds = scaled(1e4);
        t0 = now_s();
        for (size_t r = 0; r < rounds; r++) {
            for (int i = 0; i < B; i++) {
                p[i] = xmalloc(sz);
                p[i][0] = (unsigned char)i;
            }
            for (int i = 0; i < B; i++) {
                check += p[i][0];
                free(p[i]);
            }
        }
        t1 = now_s();
        snprintf(name, sizeof name, "batch1000.%zuB", sz);
        metric(name, (t1 - t0) * 1e9 / (double)(rounds * B), "ns", "lower");
    }
    printf("check %llu\n", (unsigned long long)check);
}

/* Larson-style server: each of T slot arrays (1000 blocks of 16..512 B) is
 * worked on by one thread per round (free a random block, allocate a new
 * one); at the end of the round the thread exits and a new thread takes the
 * array over, so blocks are freed by threads that did not allocate them. */
enum { LARSON_SLOTS = 1000 };
struct larson_arg {
    unsigned char *slot[LARSON_SLOTS];
    uint64_t seed, check;
    size_t ops;
};

static void *larson_worker(void *v) {
    struct larson_arg *a = v;
    for (size_t k = 0; k < a->ops; k++) {
        size_t i = rng_next(&a->seed) % LARSON_SLOTS;
        if (a->slot[i]) {
            a->check += a->slot[i][0];
            free(a->slot[i]);
        }
        a->slot[i] = xmalloc(rng_range(&a->seed, 16, 512));
        a->slot[i][0] = (unsigned char)k;
    }
    return NULL;
}

static void run_threads(int t, void *(*f)(void *), void *args, size_t argsize) {
    pthread_t th[64];
    for (int i = 0; i < t; i++)
        if (pthread_create(&th[i], NULL, f, (char *)args + (size_t)i * argsize)) {
            perror("pthread_create");
            exit(1);
        }
    for (int i = 0; i < t; i++)
        pthread_join(th[i], NULL);
}

static void larson(void) {
    uint64_t check = 0;
    for (int c = 0; c < nthread_counts; c++) {
        int t = nthreads[c];
        struct larson_arg *a = calloc((size_t)t, sizeof *a);
        size_t rounds = 20, ops = scaled(2e7) / (size_t)rounds;
        for (int i = 0; i < t; i++)
            a[i].seed = (uint64_t)i + 1;
        double t0 = now_s();
        for (size_t r = 0; r < rounds; r++) {
            for (int i = 0; i < t; i++)
                a[i].ops = ops;
            run_threads(t, larson_worker, a, sizeof *a);
        }
        double t1 = now_s();
        for (int i = 0; i < t; i++) {
            for (int j = 0; j < LARSON_SLOTS; j++)
                free(a[i].slot[j]);
            check += a[i].check;
        }
        free(a);
        char name[32];
        snprintf(name, sizeof name, "t%d", t);
        metric(name, (double)(ops * rounds * (size_t)t) / (t1 - t0) / 1e6, "Mops/s", "higher");
    }
    printf("check %llu\n", (unsigned long long)check);
}

/* Producer/consumer ring: one thread allocates 16..512 B blocks and puts
 * them on a single-producer single-consumer ring, another frees them.
 * "both ways": two such pairs at once, in opposite directions between the
 * same two threads. */
enum { RING = 1024 };
struct ring {
    _Atomic size_t head, tail;
    unsigned char *buf[RING];
};
struct ring_arg {
    struct ring *out, *in; /* produce into out, consume from in (either may be NULL) */
    size_t n;
    uint64_t check;
};

static void *ring_worker(void *v) {
    struct ring_arg *a = v;
    uint64_t s = (uint64_t)(uintptr_t)a | 1;
    size_t made = 0, got = 0;
    size_t want_out = a->out ? a->n : 0, want_in = a->in ? a->n : 0;
    while (made < want_out || got < want_in) {
        int progress = 0;
        if (made < want_out) {
            size_t h = atomic_load_explicit(&a->out->head, memory_order_relaxed);
            size_t t = atomic_load_explicit(&a->out->tail, memory_order_acquire);
            if (h - t < RING) {
                unsigned char *p = xmalloc(rng_range(&s, 16, 512));
                p[0] = (unsigned char)made;
                a->out->buf[h % RING] = p;
                atomic_store_explicit(&a->out->head, h + 1, memory_order_release);
                made++;
                progress = 1;
            }
        }
        if (got < want_in) {
            size_t t = atomic_load_explicit(&a->in->tail, memory_order_relaxed);
            size_t h = atomic_load_explicit(&a->in->head, memory_order_acquire);
            if (t != h) {
                unsigned char *p = a->in->buf[t % RING];
                a->check += p[0];
                free(p);
                atomic_store_explicit(&a->in->tail, t + 1, memory_order_release);
                got++;
                progress = 1;
            }
        }
        if (!progress)
            sched_yield();
    }
    return NULL;
}

static void ring(void) {
    uint64_t check = 0;
    size_t n = scaled(4e6);
    for (int both = 0; both < 2; both++) {
        struct ring *r1 = calloc(1, sizeof *r1), *r2 = calloc(1, sizeof *r2);
        struct ring_arg a[2] = {{r1, both ? r2 : NULL, n, 0}, {both ? r2 : NULL, r1, n, 0}};
        double t0 = now_s();
        run_threads(2, ring_worker, a, sizeof a[0]);
        double t1 = now_s();
        check += a[0].check + a[1].check;
        free(r1);
        free(r2);
        metric(both ? "both_ways" : "one_way", (double)(n * (size_t)(both + 1)) / (t1 - t0) / 1e6,
               "Mblocks/s", "higher");
    }
    printf("check %llu\n", (unsigned long long)check);
}

/* Thread churn: waves of T short-lived threads; each allocates 2000 blocks
 * of 16..1024 B, frees what its predecessor (same index, previous wave)
 * leaked, frees half of its own and leaks the other half to the next wave. */
enum { TC_BLOCKS = 2000 };
struct tc_arg {
    unsigned char *leak[TC_BLOCKS / 2];
    uint64_t seed, check;
};

static void *tc_worker(void *v) {
    struct tc_arg *a = v;
    unsigned char *mine[TC_BLOCKS];
    for (int i = 0; i < TC_BLOCKS; i++) {
        mine[i] = xmalloc(rng_range(&a->seed, 16, 1024));
        mine[i][0] = (unsigned char)i;
    }
    for (int i = 0; i < TC_BLOCKS / 2; i++)
        if (a->leak[i]) {
            a->check += a->leak[i][0];
            free(a->leak[i]);
        }
    for (int i = 0; i < TC_BLOCKS; i++) {
        if (i % 2) {
            a->leak[i / 2] = mine[i];
        } else {
            a->check += mine[i][0];
            free(mine[i]);
        }
    }
    return NULL;
}

static void thread_churn(void) {
    uint64_t check = 0;
    for (int c = 0; c < nthread_counts; c++) {
        int t = nthreads[c];
        struct tc_arg *a = calloc((size_t)t, sizeof *a);
        for (int i = 0; i < t; i++)
            a[i].seed = (uint64_t)i + 7;
        size_t waves = scaled(6000.0 / t);
        double t0 = now_s();
        for (size_t w = 0; w < waves; w++)
            run_threads(t, tc_worker, a, sizeof *a);
        double t1 = now_s();
        for (int i = 0; i < t; i++) {
            for (int j = 0; j < TC_BLOCKS / 2; j++)
                free(a[i].leak[j]);
            check += a[i].check;
        }
        free(a);
        char name[32];
        snprintf(name, sizeof name, "t%d", t);
        metric(name, (double)(waves * (size_t)t) / (t1 - t0) / 1e3, "kthreads/s", "higher");
    }
    printf("check %llu\n", (unsigned long long)check);
}

static void touch(unsigned char *p, size_t from, size_t to) {
    for (size_t i = from; i < to; i += 4096)
        p[i] = (unsigned char)i;
    if (to > from)
        p[to - 1] = 1;
}

/* realloc growth: 10 000 small vectors grown 8 B at a time to 1 KiB; one
 * buffer grown by an eighth at a time from 16 B to 64 MiB; a loop replacing
 * a 5..25 MiB buffer with a new one of another size. */
static void realloc_growth(void) {
    uint64_t check = 0, s = 3;
    free(malloc(16));
    long base = rss_bytes();
    enum { V = 10000 };
    static unsigned char *v[V];
    size_t rounds = scaled(4);
    double t0 = now_s();
    for (size_t r = 0; r < rounds; r++) {
        for (size_t len = 8; len <= 1024; len += 8)
            for (int i = 0; i < V; i++) {
                unsigned char *q = realloc(v[i], len);
                if (!q)
                    exit(1);
                q[len - 1] = (unsigned char)(len + (size_t)i);
                v[i] = q;
            }
        for (int i = 0; i < V; i++) {
            check += v[i][1023] + v[i][7];
            free(v[i]);
            v[i] = NULL;
        }
    }
    double t1 = now_s();
    metric("small_vectors", (t1 - t0) * 1e3, "ms", "lower");
    size_t big_rounds = scaled(4);
    t0 = now_s();
    for (size_t r = 0; r < big_rounds; r++) {
        size_t len = 16;
        unsigned char *p = xmalloc(len);
        memset(p, 7, len);
        while (len < (64u << 20)) {
            size_t n = len + len / 8 + 16;
            if (n > (64u << 20))
                n = 64u << 20;
            unsigned char *q = realloc(p, n);
            if (!q)
                exit(1);
            touch(q, len, n);
            check += q[len - 1]; /* written by the previous touch, kept by realloc */
            p = q;
            len = n;
        }
        free(p);
    }
    t1 = now_s();
    metric("one_buffer_to_64MiB", (t1 - t0) * 1e3, "ms", "lower");
    size_t replace = scaled(200);
    t0 = now_s();
    unsigned char *cur = NULL;
    for (size_t r = 0; r < replace; r++) {
        size_t n = rng_range(&s, 5u << 20, 25u << 20);
        unsigned char *q = xmalloc(n);
        touch(q, 0, n);
        if (cur)
            check += cur[0];
        free(cur);
        cur = q;
    }
    free(cur);
    t1 = now_s();
    metric("replace_5_25MiB", (t1 - t0) * 1e3, "ms", "lower");
    printf("rss_free %ld\n", rss_bytes() - base);
    printf("check %llu\n", (unsigned long long)check);
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s churn|pairs|larson|ring|threads|realloc SCALE T1,T2,...\n", argv[0]);
        return 2;
    }
    scale = strtod(argv[2], NULL);
    for (char *p = argv[3]; *p && nthread_counts < 16;) {
        int t = (int)strtol(p, &p, 10);
        nthreads[nthread_counts++] = t < 1 ? 1 : t > 64 ? 64 : t;
        if (*p == ',')
            p++;
        else
            break;
    }
    const char *w = argv[1];
    if (!strcmp(w, "churn"))
        churn();
    else if (!strcmp(w, "pairs"))
        pairs();
    else if (!strcmp(w, "larson"))
        larson();
    else if (!strcmp(w, "ring"))
        ring();
    else if (!strcmp(w, "threads"))
        thread_churn();
    else if (!strcmp(w, "realloc"))
        realloc_growth();
    else {
        fprintf(stderr, "unknown workload %s\n", w);
        return 2;
    }
    fflush(stdout);
    return 0;
}
