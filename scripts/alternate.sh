#!/usr/bin/env bash
# Runs one C workload of hakmem-bench under several LD_PRELOAD libraries,
# alternating them round by round (so a slow spell of this shared machine
# hits each alike), and prints each metric's median per library, with the
# user CPU seconds of the whole run. Build the workloads first (any
# hakmem-bench run does: target/bench-bin/workloads).
# Usage: scripts/alternate.sh ROUNDS PIN WORKLOAD SCALE THREADS LIB...
#   PIN 1: every run on CPU 0 (taskset -c 0), which takes the placement of
#   the two threads on this VM's vCPUs out of the figures.
# Example: scripts/alternate.sh 9 0 ring 0.5 2 target/release/libhakmem.so
#          target/bench-bin/libmimalloc3.so
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 6 ] || { sed -n 2,12p "$0"; exit 2; }
rounds=$1 pin=$2 w=$3 scale=$4 threads=$5; shift 5
bin=target/bench-bin/workloads
[ -x "$bin" ] || { echo "no $bin: run hakmem-bench once (e.g. --quick --only pairs)"; exit 1; }
pre=(); [ "$pin" = 1 ] && pre=(taskset -c 0)
out=$(mktemp)
for _ in $(seq "$rounds"); do
  for lib in "$@"; do
    r=$( { /usr/bin/time -f "cpu_user %U" env LD_PRELOAD="$(realpath "$lib")" "${pre[@]}" \
           "$bin" "$w" "$scale" "$threads"; } 2>&1 )
    # the metric lines (stdout) and the time line (stderr)
    echo "$r" | awk -v l="$lib" '$1 == "metric" { print l, $2, $3 } $1 == "cpu_user" { print l, "cpu_user", $2 }' >>"$out"
  done
done
sort -k1,1 -k2,2 -k3,3g "$out" | awk '
  { k = $1 " " $2; v[k, ++n[k]] = $3; if (!(k in seen)) { seen[k] = 1; keys[++m] = k } }
  END { for (i = 1; i <= m; i++) { k = keys[i]; c = n[k];
          med = (c % 2) ? v[k, (c + 1) / 2] : (v[k, c / 2] + v[k, c / 2 + 1]) / 2;
          printf "%-50s median %10.3f  min %10.3f  max %10.3f  (%d runs)\n", k, med, v[k, 1], v[k, c], c } }'
rm -f "$out"
