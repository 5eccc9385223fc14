/* fork() under libhakmem.so.
 *
 *   fork mt [forks]  Worker threads allocate and free (also each other's
 *                    blocks) without pause while the main thread forks
 *                    repeatedly. Each child allocates and frees at once,
 *                    frees blocks an idle parent thread made, starts a
 *                    thread of its own, sometimes forks again, and exits 0.
 *   fork st [forks]  A single-threaded parent (after a thread that left
 *                    blocks behind has exited) forks repeatedly; each child
 *                    frees the parent's blocks, checking their contents.
 *   fork rss         The seed run (1M x 16 B, each written, then free all)
 *                    in the parent, then in a forked child: in each, RSS
 *                    must come back to within 1 MiB of its level before
 *                    the run (polled every 100 ms for up to 10 s), which
 *                    in the child needs the background thread back. Prints
 *                    ns per block and the time RSS took, per process.
 *
 * The parent checks every child's exit status; a child that deadlocks is
 * killed by its alarm and reported. Prints "fork ok". */
#include "common.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>

static atomic_int stop;

/* Blocks handed between workers: freed by whoever takes them. */
static pthread_mutex_t stash_lock = PTHREAD_MUTEX_INITIALIZER;
enum { STASH = 512 };
static void *stash[STASH];
static int stash_n;

static void *worker(void *arg) {
    uint64_t s = (uintptr_t)arg * 0x9e3779b97f4a7c15ULL + 1;
    enum { RING = 256 };
    void *ring[RING] = {0};
    size_t len[RING] = {0};
    long ops = 0;
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        int i = (int)(rnd(&s) % RING);
        if (ring[i]) {
            CHECK(intact(ring[i], len[i], (unsigned)i));
            if (rnd(&s) % 4 == 0) {
                pthread_mutex_lock(&stash_lock);
                if (stash_n < STASH) {
                    stash[stash_n++] = ring[i];
                    ring[i] = NULL;
                }
                pthread_mutex_unlock(&stash_lock);
            }
            free(ring[i]);
        }
        uint64_t r = rnd(&s);
        len[i] = r % 64 == 0 ? (size_t)(r >> 8) % (1 << 20) : (size_t)(r >> 8) % 2048;
        ring[i] = malloc(len[i]);
        CHECK(ring[i] != NULL);
        fill(ring[i], len[i], (unsigned)i);
        if (++ops % 64 == 0) {
            /* Free some blocks other workers stashed. */
            void *take[16];
            int n = 0;
            pthread_mutex_lock(&stash_lock);
            while (stash_n > 0 && n < 16)
                take[n++] = stash[--stash_n];
            pthread_mutex_unlock(&stash_lock);
            for (int j = 0; j < n; j++)
                free(take[j]);
        }
    }
    for (int i = 0; i < RING; i++)
        free(ring[i]);
    return NULL;
}

/* Blocks made by a thread that then only waits: a child frees them. */
enum { PARKED = 2000 };
static void *parked[PARKED];
static pthread_mutex_t park_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t park_cv = PTHREAD_COND_INITIALIZER;
static int park_ready, park_release;

static size_t parked_len(int i) { return (size_t)(i * 37 % 3000) + (i % 500 == 0 ? 200000 : 0); }

static void *parker(void *arg) {
    (void)arg;
    for (int i = 0; i < PARKED; i++) {
        parked[i] = malloc(parked_len(i));
        CHECK(parked[i] != NULL);
        fill(parked[i], parked_len(i), (unsigned)i);
    }
    pthread_mutex_lock(&park_lock);
    park_ready = 1;
    pthread_cond_broadcast(&park_cv);
    while (!park_release)
        pthread_cond_wait(&park_cv, &park_lock);
    pthread_mutex_unlock(&park_lock);
    return NULL;
}

static void *child_thread(void *arg) {
    uint64_t s = (uintptr_t)arg;
    for (int i = 0; i < 2000; i++) {
        size_t n = rnd(&s) % 4096;
        void *p = malloc(n);
        CHECK(p != NULL);
        memset(p, 1, n);
        free(p);
    }
    return malloc(100); /* freed by the child's main thread */
}

/* What every child does first: allocate and free at once. */
static void child_work(uint64_t seed, int free_parked) {
    alarm(20); /* a deadlocked child dies of SIGALRM: the parent reports it */
    uint64_t s = seed | 1;
    enum { N = 3000 };
    static void *b[N];
    for (int i = 0; i < N; i++) {
        size_t n = i % 300 == 0 ? 300000 : rnd(&s) % 1024;
        b[i] = i % 3 == 0 ? calloc(1, n) : malloc(n);
        CHECK(b[i] != NULL);
        memset(b[i], 7, n);
    }
    for (int i = 0; i < N; i += 2)
        free(b[i]);
    for (int i = 1; i < N; i += 2) {
        b[i] = realloc(b[i], 2000);
        CHECK(b[i] != NULL);
        free(b[i]);
    }
    if (free_parked) {
        for (int i = 0; i < PARKED; i++) {
            CHECK(intact(parked[i], parked_len(i), (unsigned)i));
            free(parked[i]);
        }
    }
}

static void wait_ok(pid_t pid, const char *what) {
    int st;
    CHECK(waitpid(pid, &st, 0) == pid);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        if (WIFSIGNALED(st))
            fprintf(stderr, "%s %d died of signal %d%s\n", what, (int)pid, WTERMSIG(st),
                    WTERMSIG(st) == SIGALRM ? " (deadlocked: killed by its alarm)" : "");
        else
            fprintf(stderr, "%s %d exited with status %d\n", what, (int)pid, WEXITSTATUS(st));
        exit(1);
    }
}

static void child_main(int i, int free_parked) {
    child_work((uint64_t)i * 7919 + 17, free_parked);
    if (i % 4 == 1) {
        /* A thread in the child. */
        pthread_t t;
        CHECK(pthread_create(&t, NULL, child_thread, (void *)(uintptr_t)(i + 1)) == 0);
        void *r;
        CHECK(pthread_join(t, &r) == 0);
        CHECK(r != NULL);
        free(r);
    }
    if (i % 8 == 3) {
        /* Fork again from the child. */
        pid_t g = fork();
        CHECK(g >= 0);
        if (g == 0) {
            child_work((uint64_t)i * 31 + 5, 0);
            _exit(0);
        }
        wait_ok(g, "grandchild");
    }
    if (i % 2)
        exit(0); /* atexit handlers and destructors run */
    _exit(0);
}

static void run_mt(int forks) {
    pthread_t park;
    CHECK(pthread_create(&park, NULL, parker, NULL) == 0);
    pthread_mutex_lock(&park_lock);
    while (!park_ready)
        pthread_cond_wait(&park_cv, &park_lock);
    pthread_mutex_unlock(&park_lock);

    enum { W = 3 };
    pthread_t w[W];
    for (int i = 0; i < W; i++)
        CHECK(pthread_create(&w[i], NULL, worker, (void *)(uintptr_t)(i + 1)) == 0);
    for (int i = 0; i < forks; i++) {
        /* The main thread allocates too, right up to the fork. */
        void *mine = malloc((size_t)(i % 50) * 40);
        CHECK(mine != NULL);
        fflush(stdout);
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
            free(mine);
            child_main(i, 1);
        }
        free(mine);
        wait_ok(pid, "child");
    }
    atomic_store(&stop, 1);
    for (int i = 0; i < W; i++)
        CHECK(pthread_join(w[i], NULL) == 0);
    pthread_mutex_lock(&park_lock);
    park_release = 1;
    pthread_cond_broadcast(&park_cv);
    pthread_mutex_unlock(&park_lock);
    CHECK(pthread_join(park, NULL) == 0);
    for (int i = 0; i < PARKED; i++) {
        CHECK(intact(parked[i], parked_len(i), (unsigned)i));
        free(parked[i]);
    }
    for (int i = 0; i < stash_n; i++)
        free(stash[i]);
}

static void *leaver(void *arg) {
    (void)arg;
    /* Leaves its blocks behind: its heap is abandoned at exit. */
    for (int i = 0; i < PARKED; i++) {
        parked[i] = malloc(parked_len(i));
        CHECK(parked[i] != NULL);
        fill(parked[i], parked_len(i), (unsigned)i);
    }
    return NULL;
}

static void run_st(int forks) {
    pthread_t t;
    CHECK(pthread_create(&t, NULL, leaver, NULL) == 0);
    CHECK(pthread_join(t, NULL) == 0);
    enum { MINE = 5000 };
    static void *mine[MINE];
    for (int i = 0; i < MINE; i++) {
        mine[i] = malloc((size_t)(i % 700));
        CHECK(mine[i] != NULL);
        fill(mine[i], (size_t)(i % 700), (unsigned)i + 1);
    }
    for (int i = 0; i < forks; i++) {
        fflush(stdout);
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
            for (int j = 0; j < MINE; j++) {
                CHECK(intact(mine[j], (size_t)(j % 700), (unsigned)j + 1));
                free(mine[j]);
            }
            child_main(i, 1);
        }
        wait_ok(pid, "child");
    }
    for (int i = 0; i < MINE; i++) {
        CHECK(intact(mine[i], (size_t)(i % 700), (unsigned)i + 1));
        free(mine[i]);
    }
    for (int i = 0; i < PARKED; i++) {
        CHECK(intact(parked[i], parked_len(i), (unsigned)i));
        free(parked[i]);
    }
}

static long rss_now(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    long size = 0, resident = 0;
    CHECK(f && fscanf(f, "%ld %ld", &size, &resident) == 2);
    fclose(f);
    return resident * sysconf(_SC_PAGESIZE);
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* The seed run, then the wait for RSS; exits 1 if RSS stays up. */
static void seed_run(const char *who) {
    enum { N = 1000000 };
    void **slot = mmap(NULL, N * sizeof *slot, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(slot != MAP_FAILED);
    memset(slot, 0, N * sizeof *slot);
    free(malloc(16));
    long base = rss_now();
    double t0 = now_s();
    for (int i = 0; i < N; i++) {
        slot[i] = malloc(16);
        CHECK(slot[i] != NULL);
        memset(slot[i], 0x5a, 16);
    }
    double t1 = now_s();
    for (int i = 0; i < N; i++)
        free(slot[i]);
    long freed = rss_now();
    double t2 = now_s();
    long r = freed;
    while (r > base + (1L << 20) && now_s() - t2 < 10.0) {
        struct timespec wait = {0, 100000000};
        nanosleep(&wait, NULL);
        r = rss_now();
    }
    printf("%s: %.1f ns per malloc, %.1f ns per free; RSS +%.2f MiB after the frees, "
           "+%.2f MiB %.2f s later\n",
           who, (t1 - t0) * 1e9 / N, (t2 - t1) * 1e9 / N, (freed - base) / 1048576.0,
           (r - base) / 1048576.0, now_s() - t2);
    fflush(stdout);
    if (r > base + (1L << 20)) {
        fprintf(stderr, "%s: RSS +%.2f MiB 10 s after freeing everything\n", who,
                (r - base) / 1048576.0);
        exit(1);
    }
    munmap(slot, N * sizeof *slot);
}

static void run_rss(void) {
    seed_run("parent");
    fflush(stdout);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        alarm(60);
        seed_run("child");
        _exit(0);
    }
    wait_ok(pid, "child");
    printf("fork rss ok\n");
}

int main(int argc, char **argv) {
    require_hakmem();
    CHECK(argc >= 2);
    int forks = argc >= 3 ? atoi(argv[2]) : 100;
    if (strcmp(argv[1], "mt") == 0)
        run_mt(forks);
    else if (strcmp(argv[1], "st") == 0)
        run_st(forks);
    else if (strcmp(argv[1], "rss") == 0) {
        run_rss();
        return 0;
    }
    else
        CHECK(!"mode is mt, st or rss");
    printf("fork ok\n");
    return 0;
}
