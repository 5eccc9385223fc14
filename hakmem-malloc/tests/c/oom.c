/* Out of memory under LD_PRELOAD: malloc trims hakmem's caches and retries
 * before it returns NULL. Under RLIMIT_AS (current size + 256 MiB), 16 MiB
 * of 64-byte blocks are allocated and freed, so the heap keeps its retained
 * empty SuperSlabs mapped; then malloc asks for 2 MiB more than the address
 * space left, which fits only once those are unmapped. Then a request
 * beyond the limit must still fail with ENOMEM. Prints "oom ok". */
#include "common.h"

#include <sys/resource.h>

static long vm_size(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    long size = 0;
    CHECK(f && fscanf(f, "%ld", &size) == 1);
    fclose(f);
    return size * sysconf(_SC_PAGESIZE);
}

int main(void) {
    require_hakmem();
    enum { N = 1 << 18 };
    static void *small[N];
    struct rlimit rl;
    CHECK(getrlimit(RLIMIT_AS, &rl) == 0);
    long limit = vm_size() + (256L << 20);
    rl.rlim_cur = (rlim_t)limit;
    CHECK(setrlimit(RLIMIT_AS, &rl) == 0);
    for (int i = 0; i < N; i++) {
        small[i] = malloc(64);
        CHECK(small[i] != NULL);
        memset(small[i], 0x11, 64);
    }
    for (int i = 0; i < N; i++)
        free(small[i]);
    long left = limit - vm_size();
    size_t want = (size_t)left + (2u << 20);
    char *p = malloc(want);
    printf("%ld MiB of address space left, malloc(%zu MiB) = %s\n", left >> 20, want >> 20,
           p ? "a block" : "NULL");
    CHECK(p != NULL);
    p[0] = 1;
    p[want - 1] = 2;
    free(p);
    errno = 0;
    CHECK(malloc((size_t)limit) == NULL && errno == ENOMEM);
    printf("oom ok\n");
    return 0;
}
