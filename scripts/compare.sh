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
run() { # name preload program
  local name=$1 pre=$2 prog=$3
  if [ -n "$pre" ] && [ ! -e "$pre" ]; then echo "== $name: not installed, skipped"; return; fi
  echo "== $name"
  if [ -n "$pre" ]; then LD_PRELOAD=$pre "target/compare/$prog-system"; else "target/compare/$prog-$4"; fi
}
for prog in scaling pairs; do
  [ "$what" = all ] || [ "$what" = $prog ] || continue
  run hakmem "" $prog hakmem
  run glibc "" $prog system
  run jemalloc $lib/libjemalloc.so.2 $prog system
  run mimalloc $lib/libmimalloc.so.2 $prog system
done
