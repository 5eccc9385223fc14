#!/usr/bin/env bash
# Instructions per alloc+free pair on the core's fast path, default build
# against the hardened build, for 16 B, 64 B, 1 KiB and 4 KiB blocks,
# counted by callgrind (exact and repeatable; see fastpath-instructions.sh):
# (instructions at N2 pairs - at N1 pairs) / (N2 - N1).
# Usage: scripts/hardened-cost.sh [sizes...]
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "valgrind is not installed (apt-get install valgrind)"; exit 1; }
sizes=("$@"); [ ${#sizes[@]} -gt 0 ] || sizes=(16 64 1024 4096)
cargo build --release -q -p hakmem-core --example fastpath --target-dir target/cost-default
cargo build --release -q -p hakmem-core --example fastpath --features hardened --target-dir target/cost-hardened
count() { # binary iterations size
  local out; out=$(mktemp)
  valgrind --tool=callgrind --callgrind-out-file="$out" "$1" "$2" 1000 pairs "$3" >/dev/null 2>&1
  callgrind_annotate "$out" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1; exit }'
  rm -f "$out"
}
n1=20000; n2=220000
printf '| size | default | hardened | ratio |\n|---|---|---|---|\n'
for s in "${sizes[@]}"; do
  r=()
  for b in target/cost-default/release/examples/fastpath target/cost-hardened/release/examples/fastpath; do
    a=$(count "$b" $n1 "$s"); z=$(count "$b" $n2 "$s")
    r+=("$(awk -v a="$a" -v z="$z" -v n1=$n1 -v n2=$n2 'BEGIN { printf "%.1f", (z - a) / (n2 - n1) }')")
  done
  awk -v s="$s" -v d="${r[0]}" -v h="${r[1]}" 'BEGIN { printf "| %s B | %s | %s | %.2f |\n", s, d, h, h / d }'
done
