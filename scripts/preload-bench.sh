#!/usr/bin/env bash
# libhakmem.so against glibc, jemalloc and mimalloc as the malloc of
# unmodified programs, in one run (a benchmark, not a test):
#
#  1. redis-server (Debian's) on 127.0.0.1, driven by redis-benchmark
#     (-n 200000 -t set,get,lpush,lpop -r 100000 -d 100, 50 clients, once
#     without pipelining and once with -P 16): requests/s, then the
#     server's RSS (VmRSS) after the runs, and again after FLUSHALL + 1.5 s.
#  2. The seed scaling workload as a C program (scripts/scaling.c):
#     N x 16 B and N x 8..1024 B for N = 100K, 500K, 1M, one process per
#     case: data MB, RSS growth MB, overhead %, RSS growth right after
#     freeing everything and 1.2 s later.
#
# Allocators: hakmem = target/release/libhakmem.so; glibc = the C
# library's malloc (redis-server links libjemalloc.so.2, so for it glibc
# is forced with LD_PRELOAD=libc.so.6); jemalloc = Debian's libjemalloc2;
# mimalloc = Debian's libmimalloc2.0. redis-benchmark itself runs on the
# system allocator in every row. Installs redis and the two allocators with
# apt-get if missing (and says so when it cannot).
#
#   scripts/preload-bench.sh [redis|scaling|all]
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-all}
lib=/usr/lib/x86_64-linux-gnu
need=()
[ -e $lib/libjemalloc.so.2 ] || need+=(libjemalloc2)
[ -e $lib/libmimalloc.so.2 ] || need+=(libmimalloc2.0)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v redis-benchmark >/dev/null 2>&1 || need+=(redis-tools)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]} with apt-get"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}") >/dev/null 2>&1 \
    || echo "note: apt-get could not install ${need[*]}; the rows that need them are skipped"
fi

cargo build --release -q -p hakmem-malloc
hakmem=$PWD/target/release/libhakmem.so
out=$PWD/target/preload-bench
mkdir -p $out
cc -O2 -o $out/scaling scripts/scaling.c

libc=$(ldconfig -p 2>/dev/null | awk '/libc\.so\.6 .*x86-64/ {print $NF; exit}')
libc=${libc:-/lib/x86_64-linux-gnu/libc.so.6}
allocators=("hakmem:$hakmem" "glibc:" "jemalloc:$lib/libjemalloc.so.2" "mimalloc:$lib/libmimalloc.so.2")

rss_mb() { awk '/^VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }

# Starts redis-server with LD_PRELOAD=$1 on a free port; sets $pid and $port.
start_redis() {
  local pre=$1 tries
  for tries in 1 2 3 4 5; do
    port=$((20000 + RANDOM % 40000))
    LD_PRELOAD=$pre redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
      --daemonize no --dir "$out" --logfile "$out/redis-$port.log" &
    pid=$!
    for _ in $(seq 100); do
      if [ "$(redis-cli -p "$port" ping 2>/dev/null)" = PONG ]; then return 0; fi
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.05
    done
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  echo "redis-server would not start" >&2
  return 1
}

# requests/s of each test, in order, from redis-benchmark -q.
rps() { tr '\r' '\n' | awk -F'[:,] *' '/requests per second/ {split($2, a, " "); printf " %9.0f", a[1]}'; }

if [ "$what" = all ] || [ "$what" = redis ]; then
  if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-benchmark >/dev/null 2>&1; then
    echo "== redis: redis-server or redis-benchmark not installed, skipped"
  else
    echo "== redis-server $(redis-server --version | awk '{print $3}' | cut -d= -f2): redis-benchmark -n 200000 -r 100000 -d 100 -c 50 (requests/s), server RSS"
    printf '%-9s %9s %9s %9s %9s | %9s %9s %9s %9s | %8s %10s\n' allocator SET GET LPUSH LPOP \
      'SET P16' 'GET P16' 'LPUSH P16' 'LPOP P16' 'RSS MB' 'flushed MB'
    for a in "${allocators[@]}"; do
      name=${a%%:*}; pre=${a#*:}
      if [ -n "$pre" ] && [ ! -e "$pre" ]; then echo "$name: not installed, skipped"; continue; fi
      [ "$name" = glibc ] && pre=$libc
      start_redis "$pre"
      plain=$(redis-benchmark -p "$port" -q -n 200000 -r 100000 -d 100 -t set,get,lpush,lpop 2>&1 | rps)
      piped=$(redis-benchmark -p "$port" -q -n 200000 -r 100000 -d 100 -P 16 -t set,get,lpush,lpop 2>&1 | rps)
      rss=$(rss_mb "$pid")
      redis-cli -p "$port" flushall >/dev/null
      sleep 1.5
      flushed=$(rss_mb "$pid")
      if [ "$name" = hakmem ] && ! grep -q libhakmem "/proc/$pid/maps"; then echo "hakmem: libhakmem.so not mapped!"; fi
      kill "$pid"
      wait "$pid" || true
      printf '%-9s %s | %s | %8s %10s\n' "$name" "$plain" "$piped" "$rss" "$flushed"
    done
  fi
fi

if [ "$what" = all ] || [ "$what" = scaling ]; then
  echo
  echo "== seed scaling (scripts/scaling.c), one process per case; RSS relative to the level before the run, MB = 10^6 B"
  for a in "${allocators[@]}"; do
    name=${a%%:*}; pre=${a#*:}
    if [ -n "$pre" ] && [ ! -e "$pre" ]; then echo "$name: not installed, skipped"; continue; fi
    echo "-- $name"
    printf '%-6s %8s %9s %10s %10s %12s %12s\n' sizes N 'data MB' 'RSS+ MB' overhead 'freed: MB' '+1.2 s: MB'
    for kind in 16 mixed; do
      for n in 100000 500000 1000000; do
        LD_PRELOAD=$pre $out/scaling $kind $n
      done
    done
  done
fi
