#!/usr/bin/env bash
# Instructions per alloc(16)+free pair on the core's fast path, counted by
# callgrind (exact and repeatable, unlike timings on a shared machine):
# (instructions at N2 pairs - instructions at N1 pairs) / (N2 - N1).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "valgrind is not installed (apt-get install valgrind)"; exit 1; }
cargo build --release -q -p hakmem-core --example fastpath
bin=target/release/examples/fastpath
count() { # iterations [loop]
  local out; out=$(mktemp)
  valgrind --tool=callgrind --callgrind-out-file="$out" "$bin" "$1" 1000 ${2:-} >/dev/null 2>&1
  callgrind_annotate "$out" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1; exit }'
  rm -f "$out"
}
n1=100000; n2=1100000
i1=$(count $n1); i2=$(count $n2)
echo "instructions: $i1 at $n1 pairs, $i2 at $n2 pairs"
l1=$(count $n1 loop); l2=$(count $n2 loop)
awk -v a="$i1" -v b="$i2" -v la="$l1" -v lb="$l2" -v n1=$n1 -v n2=$n2 'BEGIN {
  pair = (b - a) / (n2 - n1); loop = (lb - la) / (n2 - n1)
  printf "%.2f instructions per alloc+free pair with the loop, %.2f for the loop alone\n", pair, loop
  printf "%.2f instructions per alloc+free pair (fast path, loop excluded)\n", pair - loop }'
