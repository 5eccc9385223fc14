/* A tiny shared library for dlopen.c: its constructor and destructor
 * allocate and free, it hands out blocks that outlive it, and it has
 * thread-local storage (glibc allocates a dlopen'ed library's TLS blocks
 * with malloc, and frees them at thread exit). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *table;
static __thread char tls_buf[256];
static __thread int tls_uses;

__attribute__((constructor)) static void plugin_init(void) {
    table = malloc(4096);
    if (!table)
        abort();
    memset(table, 'T', 4096);
}

__attribute__((destructor)) static void plugin_fini(void) {
    for (int i = 0; i < 4096; i++)
        if (table[i] != 'T')
            abort();
    free(table);
    void *p = malloc(100);
    free(p);
}

/* A malloc'ed string; the caller frees it, possibly after dlclose. */
char *plugin_make(int n) {
    char *s = malloc((size_t)n + 1);
    if (!s)
        return NULL;
    memset(s, 'a' + n % 26, (size_t)n);
    s[n] = 0;
    return s;
}

/* Uses this thread's TLS block of the library. */
int plugin_tls(int v) {
    snprintf(tls_buf, sizeof tls_buf, "%d", v);
    return ++tls_uses + atoi(tls_buf) - v;
}
