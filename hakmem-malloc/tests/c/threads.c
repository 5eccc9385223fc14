/* Threads under libhakmem.so.
 *
 *   threads xfree  Producers allocate blocks (filled with a pattern) and
 *                  pass them through a queue; consumers check, sometimes
 *                  realloc or size-query, and free them: every free is a
 *                  cross-thread free.
 *   threads churn  Hundreds of short-lived threads (some detached, some
 *                  ending in pthread_exit, some starting a thread of their
 *                  own) allocate and free; half of each thread's blocks
 *                  outlive it and are freed by later threads or main.
 *                  Thread-specific data destructors and thread exit
 *                  allocate and free too.
 *
 * Prints "threads ok" and exits 0 when every block came back intact. */
#include "common.h"

#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>

/* ---- xfree: producer / consumer ---- */

typedef struct {
    size_t len;
    unsigned tag;
} head_t;

enum { QCAP = 1024, PRODUCERS = 3, CONSUMERS = 3, PER_PRODUCER = 150000 };
static void *queue[QCAP];
static int q_head, q_len, producers_left = PRODUCERS;
static pthread_mutex_t q_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t q_nonempty = PTHREAD_COND_INITIALIZER, q_nonfull = PTHREAD_COND_INITIALIZER;
static atomic_long consumed;

static void push(void *p) {
    pthread_mutex_lock(&q_lock);
    while (q_len == QCAP)
        pthread_cond_wait(&q_nonfull, &q_lock);
    queue[(q_head + q_len++) % QCAP] = p;
    pthread_cond_signal(&q_nonempty);
    pthread_mutex_unlock(&q_lock);
}

/* Pops up to `max` blocks; 0 once the producers are done and it is empty. */
static int pop(void **out, int max) {
    pthread_mutex_lock(&q_lock);
    while (q_len == 0 && producers_left > 0)
        pthread_cond_wait(&q_nonempty, &q_lock);
    int n = 0;
    while (q_len > 0 && n < max) {
        out[n++] = queue[q_head];
        q_head = (q_head + 1) % QCAP;
        q_len--;
    }
    pthread_cond_broadcast(&q_nonfull);
    pthread_mutex_unlock(&q_lock);
    return n;
}

static void *producer(void *arg) {
    uint64_t s = (uintptr_t)arg * 0x1234567ULL + 99;
    for (int i = 0; i < PER_PRODUCER; i++) {
        uint64_t r = rnd(&s);
        size_t len = sizeof(head_t) + (r % 512 == 0 ? (size_t)(r >> 20) % 300000 : (size_t)(r >> 20) % 2000);
        head_t *h = r % 7 == 0 ? calloc(1, len) : malloc(len);
        CHECK(h != NULL);
        h->len = len - sizeof(head_t);
        h->tag = (unsigned)(r >> 32);
        fill(h + 1, h->len, h->tag);
        push(h);
    }
    pthread_mutex_lock(&q_lock);
    producers_left--;
    pthread_cond_broadcast(&q_nonempty);
    pthread_mutex_unlock(&q_lock);
    return NULL;
}

static void *consumer(void *arg) {
    uint64_t s = (uintptr_t)arg + 5;
    void *got[32];
    int n;
    while ((n = pop(got, 32)) > 0) {
        for (int i = 0; i < n; i++) {
            head_t *h = got[i];
            CHECK(malloc_usable_size(h) >= sizeof(head_t) + h->len);
            CHECK(intact(h + 1, h->len, h->tag));
            uint64_t r = rnd(&s);
            if (r % 5 == 0) {
                /* realloc a block another thread's heap owns */
                size_t nl = (size_t)(r >> 16) % 4000;
                size_t keep = nl < h->len ? nl : h->len;
                h = realloc(h, sizeof(head_t) + nl);
                CHECK(h != NULL);
                CHECK(intact(h + 1, keep, h->tag));
            }
            free(h);
        }
        atomic_fetch_add(&consumed, n);
    }
    return NULL;
}

static void run_xfree(void) {
    pthread_t p[PRODUCERS], c[CONSUMERS];
    for (int i = 0; i < CONSUMERS; i++)
        CHECK(pthread_create(&c[i], NULL, consumer, (void *)(uintptr_t)i) == 0);
    for (int i = 0; i < PRODUCERS; i++)
        CHECK(pthread_create(&p[i], NULL, producer, (void *)(uintptr_t)i) == 0);
    for (int i = 0; i < PRODUCERS; i++)
        CHECK(pthread_join(p[i], NULL) == 0);
    for (int i = 0; i < CONSUMERS; i++)
        CHECK(pthread_join(c[i], NULL) == 0);
    CHECK(atomic_load(&consumed) == (long)PRODUCERS * PER_PRODUCER);
}

/* ---- churn: short-lived threads ---- */

enum { THREADS = 600, WAVE = 8, PER_THREAD = 300, GRAVE = 20000 };

/* Blocks whose maker has exited, waiting for someone else to free them. */
static struct {
    void *p;
    size_t len;
    unsigned tag;
} grave[GRAVE];
static int grave_n;
static pthread_mutex_t grave_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_key_t key;
static atomic_int key_destructors, finished;
static __thread void *tls_block;

static void key_destructor(void *v) {
    /* Runs during thread teardown: allocates and frees. */
    CHECK(intact(v, 64, 0x77));
    void *x = malloc(300);
    CHECK(x != NULL);
    memset(x, 1, 300);
    free(x);
    free(v);
    atomic_fetch_add(&key_destructors, 1);
}

static void *grandchild(void *arg) {
    void *p = malloc(1000);
    CHECK(p != NULL);
    memset(p, 2, 1000);
    free(arg);
    return p; /* freed by its parent thread */
}

static void *churner(void *arg) {
    int id = (int)(uintptr_t)arg;
    uint64_t s = (uint64_t)id * 2654435761ULL + 3;
    void *v = malloc(64);
    CHECK(v != NULL);
    fill(v, 64, 0x77);
    CHECK(pthread_setspecific(key, v) == 0);
    tls_block = malloc(128);
    CHECK(tls_block != NULL);

    void *mine[PER_THREAD];
    size_t len[PER_THREAD];
    for (int i = 0; i < PER_THREAD; i++) {
        uint64_t r = rnd(&s);
        len[i] = r % 100 == 0 ? 100000 : (size_t)(r >> 12) % 1500;
        mine[i] = malloc(len[i]);
        CHECK(mine[i] != NULL);
        fill(mine[i], len[i], (unsigned)(id * PER_THREAD + i));
    }
    /* Free half here, leave the other half to others. */
    for (int i = 0; i < PER_THREAD; i += 2) {
        CHECK(intact(mine[i], len[i], (unsigned)(id * PER_THREAD + i)));
        free(mine[i]);
    }
    /* Free up to 200 blocks of threads that are gone. */
    struct {
        void *p;
        size_t len;
        unsigned tag;
    } take[200];
    int n = 0;
    pthread_mutex_lock(&grave_lock);
    while (grave_n > 0 && n < 200) {
        grave_n--;
        take[n].p = grave[grave_n].p;
        take[n].len = grave[grave_n].len;
        take[n].tag = grave[grave_n].tag;
        n++;
    }
    for (int i = 1; i < PER_THREAD; i += 2) {
        CHECK(grave_n < GRAVE);
        grave[grave_n].p = mine[i];
        grave[grave_n].len = len[i];
        grave[grave_n].tag = (unsigned)(id * PER_THREAD + i);
        grave_n++;
    }
    pthread_mutex_unlock(&grave_lock);
    for (int i = 0; i < n; i++) {
        CHECK(intact(take[i].p, take[i].len, take[i].tag));
        free(take[i].p);
    }
    if (id % 10 == 3) {
        pthread_t g;
        void *gift = malloc(500);
        CHECK(gift != NULL);
        CHECK(pthread_create(&g, NULL, grandchild, gift) == 0);
        void *back;
        CHECK(pthread_join(g, &back) == 0);
        free(back);
    }
    free(tls_block);
    atomic_fetch_add(&finished, 1);
    if (id % 5 == 1)
        pthread_exit(NULL);
    return NULL;
}

static void run_churn(void) {
    CHECK(pthread_key_create(&key, key_destructor) == 0);
    pthread_attr_t detached;
    pthread_attr_init(&detached);
    pthread_attr_setdetachstate(&detached, PTHREAD_CREATE_DETACHED);
    for (int base = 0; base < THREADS; base += WAVE) {
        pthread_t t[WAVE];
        int joinable[WAVE];
        for (int i = 0; i < WAVE; i++) {
            int id = base + i;
            joinable[i] = id % 3 != 0;
            CHECK(pthread_create(&t[i], joinable[i] ? NULL : &detached, churner,
                                 (void *)(uintptr_t)id) == 0);
        }
        for (int i = 0; i < WAVE; i++)
            if (joinable[i])
                CHECK(pthread_join(t[i], NULL) == 0);
    }
    /* Wait for the detached ones. */
    for (int spins = 0; atomic_load(&finished) < THREADS; spins++) {
        CHECK(spins < 20000);
        usleep(1000);
    }
    for (int spins = 0; atomic_load(&key_destructors) < THREADS; spins++) {
        CHECK(spins < 20000);
        usleep(1000);
    }
    pthread_mutex_lock(&grave_lock);
    for (int i = 0; i < grave_n; i++) {
        CHECK(intact(grave[i].p, grave[i].len, grave[i].tag));
        free(grave[i].p);
    }
    grave_n = 0;
    pthread_mutex_unlock(&grave_lock);
    pthread_attr_destroy(&detached);
}

int main(int argc, char **argv) {
    require_hakmem();
    CHECK(argc == 2);
    if (strcmp(argv[1], "xfree") == 0)
        run_xfree();
    else if (strcmp(argv[1], "churn") == 0)
        run_churn();
    else
        CHECK(!"mode is xfree or churn");
    printf("threads ok\n");
    return 0;
}
