/* dlopen / dlclose under libhakmem.so: a library built for the test
 * (argv[1]) loaded and unloaded again and again, its blocks freed after it
 * is gone, its thread-local storage used from threads (glibc allocates it
 * with malloc), dlerror's message for a missing library, and libm.so.6.
 * Prints "dlopen ok". */
#include "common.h"

#include <math.h>
#include <pthread.h>

typedef char *(*make_fn)(int);
typedef int (*tls_fn)(int);

static tls_fn tls_entry;

static void *tls_user(void *arg) {
    int k = (int)(uintptr_t)arg;
    for (int i = 0; i < 50; i++)
        CHECK(tls_entry(k + i) == i + 1);
    char *s = malloc(64);
    CHECK(s != NULL);
    return s;
}

int main(int argc, char **argv) {
    require_hakmem();
    CHECK(argc == 2);
    enum { ROUNDS = 200 };
    static char *kept[ROUNDS];
    for (int r = 0; r < ROUNDS; r++) {
        void *h = dlopen(argv[1], RTLD_NOW | (r % 2 ? RTLD_LOCAL : RTLD_GLOBAL));
        if (!h)
            fprintf(stderr, "dlopen: %s\n", dlerror());
        CHECK(h != NULL);
        make_fn make = (make_fn)dlsym(h, "plugin_make");
        tls_entry = (tls_fn)dlsym(h, "plugin_tls");
        CHECK(make && tls_entry);
        kept[r] = make(r * 10);
        CHECK(kept[r] != NULL && strlen(kept[r]) == (size_t)r * 10);
        if (r % 20 == 0) {
            pthread_t t[4];
            for (int i = 0; i < 4; i++)
                CHECK(pthread_create(&t[i], NULL, tls_user, (void *)(uintptr_t)(i * 1000)) == 0);
            for (int i = 0; i < 4; i++) {
                void *s;
                CHECK(pthread_join(t[i], &s) == 0);
                free(s);
            }
        }
        CHECK(dlclose(h) == 0);
    }
    for (int r = 0; r < ROUNDS; r++) {
        for (int i = 0; i < r * 10; i++)
            CHECK(kept[r][i] == 'a' + (r * 10) % 26);
        free(kept[r]);
    }
    /* A failed dlopen: ld.so allocates the message. */
    CHECK(dlopen("/nonexistent/libnothing.so", RTLD_NOW) == NULL);
    const char *e = dlerror();
    CHECK(e != NULL && strstr(e, "libnothing") != NULL);
    /* A system library. */
    for (int r = 0; r < 20; r++) {
        void *m = dlopen("libm.so.6", RTLD_NOW | RTLD_LOCAL);
        CHECK(m != NULL);
        double (*cosine)(double) = (double (*)(double))dlsym(m, "cos");
        CHECK(cosine != NULL && fabs(cosine(0.0) - 1.0) < 1e-12);
        CHECK(dlclose(m) == 0);
    }
    printf("dlopen ok\n");
    return 0;
}
