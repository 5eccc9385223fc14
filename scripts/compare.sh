#!/usr/bin/env bash
# hakmem side by side with the system allocator (glibc), jemalloc and
# mimalloc, in one run: the seed scaling workload (RSS) and ns per
# malloc/free pair. The peers run the same program built on the system
# allocator, with LD_PRELOAD for jemalloc and mimalloc (Debian's
# libjemalloc2 and libmimalloc2.0; installed here if missing and possible).
set -euo pipefail
cd "$(dirname "$0")/.."
lib=/usr/lib/x86_64-linux-gnu
if [ ! -e $lib/libjemalloc.so.2 ] || [ ! -e $lib/libmimalloc.so.2 ]; then
  (apt-get update -qq && apt-get install -y -qq libjemalloc2 libmimalloc2.0) >/dev/null 2>&1 \
    || echo "note: could not install libjemalloc2/libmimalloc2.0; those rows are skipped"
fi
what=${1:-all}
cargo build --release -q -p hakmem-std --example scaling --example pairs
mkdir -p target/compare
cp target/release/examples/scaling target/compare/scaling-hakmem
cp target/release/examples/pairs target/compare/pairs-hakmem
cargo build --release -q -p hakmem-std --features system-alloc --example scaling --example pairs
cp target/release/examples/scaling target/compare/scaling-system
cp target/release/examples/pairs target/compare/pairs-system
scaling_cases() { # one process per case, so no allocator starts from another case's leftovers
  for kind in 16 mixed; do for n in 100000 500000 1000000; do "$@" $kind $n | tail -n 1; done; done
}
each() { # name preload prog args...
  local name=$1 pre=$2 prog=$3; shift 3
  if [ -n "$pre" ] && [ ! -e "$pre" ]; then echo "== $name: not installed, skipped"; return; fi
  if [ -n "$pre" ]; then LD_PRELOAD=$pre "target/compare/$prog-system" "$@"
  elif [ "$name" = hakmem ]; then "target/compare/$prog-hakmem" "$@"
  else "target/compare/$prog-system" "$@"; fi
}
if [ "$what" = all ] || [ "$what" = scaling ]; then
  for a in "hakmem:" "glibc:" "jemalloc:$lib/libjemalloc.so.2" "mimalloc:$lib/libmimalloc.so.2"; do
    name=${a%%:*}; pre=${a#*:}
    echo "== scaling, $name (RSS growth relative to each process's level before the run)"
    target/compare/scaling-hakmem 16 100000 | sed -n 2p
    scaling_cases each "$name" "$pre" scaling
  done
fi
if [ "$what" = all ] || [ "$what" = pairs ]; then
  for a in "hakmem:" "glibc:" "jemalloc:$lib/libjemalloc.so.2" "mimalloc:$lib/libmimalloc.so.2"; do
    name=${a%%:*}; pre=${a#*:}
    echo "== pairs, $name"
    each "$name" "$pre" pairs | tail -n +2
  done
fi
