#!/usr/bin/env bash
# Timed cost of the hardened libhakmem.so against the default one: the
# hakmem-bench C workloads (pairs, churn, larson at one thread) run
# alternately under each library, N rounds (default 7), medians and
# ratios per metric. Interleaving keeps a shared machine's load from
# favouring one side. Needs target/bench-bin/workloads (built by
# `cargo run --release -p hakmem-bench -- --quick --only pairs`).
# With HAKMEM_BEFORE_LIB set to another hardened libhakmem.so (an older
# commit's, say), it runs in the same rounds as a third column, `before`.
# Usage: [HAKMEM_BEFORE_LIB=path] scripts/hardened-timing.sh [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-7}
cargo build --release -q -p hakmem-malloc
cargo build --release -q -p hakmem-malloc --features hardened --target-dir target/preload-hardened
w=target/bench-bin/workloads
[ -x "$w" ] || { echo "$w missing: run cargo run --release -p hakmem-bench -- --quick --only pairs first"; exit 1; }
declare -A lib=([default]=$PWD/target/release/libhakmem.so [hardened]=$PWD/target/preload-hardened/release/libhakmem.so)
modes=(default hardened)
if [ -n "${HAKMEM_BEFORE_LIB:-}" ]; then
  lib[before]=$(realpath "$HAKMEM_BEFORE_LIB"); modes=(default before hardened)
fi
out=$(mktemp)
for _ in $(seq "$rounds"); do
  for m in "${modes[@]}"; do
    for wl in pairs churn larson; do
      LD_PRELOAD=${lib[$m]} "$w" "$wl" 1 1 2>/dev/null | awk -v m="$m" -v wl="$wl" '/^metric/ { print wl, $2, m, $3 }' >> "$out"
    done
  done
done
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
if [ ${#modes[@]} -eq 3 ]; then
  printf '| workload | metric | default | before | hardened | before / default | hardened / default |\n|---|---|---|---|---|---|---|\n'
else
  printf '| workload | metric | default | hardened | hardened / default |\n|---|---|---|---|---|\n'
fi
for key in $(awk '{ print $1 ":" $2 }' "$out" | sort -u); do
  wl=${key%%:*}; me=${key#*:}
  d=$(awk -v a="$wl" -v b="$me" '$1 == a && $2 == b && $3 == "default" { print $4 }' "$out" | median)
  h=$(awk -v a="$wl" -v b="$me" '$1 == a && $2 == b && $3 == "hardened" { print $4 }' "$out" | median)
  if [ ${#modes[@]} -eq 3 ]; then
    o=$(awk -v a="$wl" -v b="$me" '$1 == a && $2 == b && $3 == "before" { print $4 }' "$out" | median)
    awk -v wl="$wl" -v me="$me" -v d="$d" -v o="$o" -v h="$h" 'BEGIN { printf "| %s | %s | %.2f | %.2f | %.2f | %.2f | %.2f |\n", wl, me, d, o, h, o / d, h / d }'
  else
    awk -v wl="$wl" -v me="$me" -v d="$d" -v h="$h" 'BEGIN { printf "| %s | %s | %.2f | %.2f | %.2f |\n", wl, me, d, h, h / d }'
  fi
done
rm -f "$out"
