#!/usr/bin/env bash
# The replace loop of hakmem-bench's `realloc` workload on its own: 200
# buffers of 5-25 MiB, each allocated, written one byte a page and the
# previous one freed. For each library (default: this tree's libhakmem.so
# and, when built, hakmem-bench's mimalloc 3.3), ROUNDS alternated runs
# (default 5); prints the median time, the page faults (exact, from
# getrusage) and the huge pages the kernel faulted in (thp_fault_alloc in
# /proc/vmstat, also exact on a quiet machine) and the peak RSS.
# Usage: scripts/large-replace.sh [ROUNDS] [LIBRARY...]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}; shift || true
libs=("$@")
if [ ${#libs[@]} -eq 0 ]; then
  cargo build --release -q -p hakmem-malloc
  libs=(target/release/libhakmem.so)
  [ -f target/bench-bin/libmimalloc3.so ] && libs+=(target/bench-bin/libmimalloc3.so)
fi
mkdir -p target/large-replace
prog=target/large-replace/replace
cat > "$prog.c" <<'C'
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>
static uint64_t next(uint64_t *s) {
    *s ^= *s >> 12; *s ^= *s << 25; *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1DULL;
}
int main(void) {
    uint64_t s = 3, check = 0;
    free(malloc(16));
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    unsigned char *cur = NULL;
    for (int r = 0; r < 200; r++) {
        size_t n = (5u << 20) + next(&s) % ((20u << 20) + 1);
        unsigned char *q = malloc(n);
        if (!q) return 1;
        for (size_t i = 0; i < n; i += 4096) q[i] = (unsigned char)i;
        q[n - 1] = 1;
        if (cur) check += cur[0];
        free(cur);
        cur = q;
    }
    free(cur);
    clock_gettime(CLOCK_MONOTONIC, &b);
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    printf("%.3f %ld %ld %llu\n", (b.tv_sec - a.tv_sec) * 1e3 + (b.tv_nsec - a.tv_nsec) / 1e6,
           u.ru_minflt, u.ru_maxrss, (unsigned long long)check);
    return 0;
}
C
cc -O2 "$prog.c" -o "$prog"
thp() { awk '/^thp_fault_alloc /{print $2}' /proc/vmstat 2>/dev/null || echo 0; }
declare -A out
for ((r = 0; r < rounds; r++)); do
  for l in "${libs[@]}"; do
    t0=$(thp)
    line=$(LD_PRELOAD="$(realpath "$l")" "$prog")
    out[$l]+="$line $(( $(thp) - t0 ))"$'\n'
  done
done
printf '%-48s %10s %8s %6s %10s\n' library "median ms" faults huge "peak MB"
for l in "${libs[@]}"; do
  printf '%s' "${out[$l]}" | sort -n -k1,1 | awk -v lib="$l" '
    { t[NR] = $1; f = $2; m = $3; h = $5 }
    END { printf "%-48s %10.1f %8d %6d %10.1f\n", lib, t[int((NR + 1) / 2)], f, h, m / 1024 }'
done
