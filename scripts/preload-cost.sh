#!/usr/bin/env bash
# Instructions per malloc + free pair through libhakmem.so under LD_PRELOAD,
# the default library against the hardened one (or any libraries given in
# HAKMEM_COST_LIBS, space-separated), counted by callgrind (exact and
# repeatable): a C loop of malloc(size) + free with 1000 blocks live,
# (instructions at N2 pairs - at N1 pairs) / (N2 - N1), the loop's own
# few instructions included. Usage: scripts/preload-cost.sh [sizes...]
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "valgrind is not installed (apt-get install valgrind)"; exit 1; }
sizes=("$@"); [ ${#sizes[@]} -gt 0 ] || sizes=(16 64 1024)
if [ -z "${HAKMEM_COST_LIBS:-}" ]; then
  cargo build --release -q -p hakmem-malloc
  cargo build --release -q -p hakmem-malloc --features hardened --target-dir target/preload-hardened
  HAKMEM_COST_LIBS="target/release/libhakmem.so target/preload-hardened/release/libhakmem.so"
fi
mkdir -p target/preload-cost
prog=target/preload-cost/pairs
cat > "$prog.c" <<'C'
#include <stdlib.h>
int main(int argc, char **argv) {
    long n = atol(argv[1]);
    size_t s = (size_t)atol(argv[2]);
    void *keep[1000];
    for (int i = 0; i < 1000; i++) keep[i] = malloc(s);
    void *volatile sink;
    for (long i = 0; i < n; i++) { void *p = malloc(s); sink = p; free(p); }
    for (int i = 0; i < 1000; i++) free(keep[i]);
    return argc < 3;
}
C
cc -O2 -o "$prog" "$prog.c"
count() { # library pairs size
  local d; d=$(mktemp -d)
  valgrind --tool=callgrind --trace-children=yes --callgrind-out-file="$d/out.%p" \
    env LD_PRELOAD="$1" "$prog" "$2" "$3" >/dev/null 2>&1
  # The largest profile is the program's (the first is env's).
  callgrind_annotate "$(ls -S "$d"/out.* | head -1)" 2>/dev/null |
    awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1; exit }'
  rm -rf "$d"
}
n1=20000; n2=220000
printf '| library | %s |\n' "$(printf '%s B | ' "${sizes[@]}" | sed 's/ | $//')"
printf '|---|%s\n' "$(printf -- '---|%.0s' "${sizes[@]}")"
for lib in $HAKMEM_COST_LIBS; do
  row="| $lib |"
  for s in "${sizes[@]}"; do
    a=$(count "$(realpath "$lib")" $n1 "$s"); z=$(count "$(realpath "$lib")" $n2 "$s")
    row+=" $(awk -v a="$a" -v z="$z" -v n1=$n1 -v n2=$n2 'BEGIN { printf "%.1f", (z - a) / (n2 - n1) }') |"
  done
  echo "$row"
done
