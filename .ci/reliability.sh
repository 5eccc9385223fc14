#!/usr/bin/env bash
# Reliability checks of issue 11 (called by .ci/run). pipefail: a failing
# cargo fails its `| grep` pipeline. The fuzz corpus
# replayed on stable, then each cargo-fuzz target for FUZZ_SECONDS (60)
# when nightly is there (cargo-fuzz installed if missing). Each fuzz run
# prints libFuzzer's "Done N runs" and the target's own count of
# operations executed and checked; any finding fails the script, and
# libFuzzer leaves the input under fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
step() { printf '\n== %s ==\n' "$*"; }
FUZZ_SECONDS=${FUZZ_SECONDS:-60}
TARGETS=(core_ops bare_ops c_abi)

step "fuzz: formatting and the committed corpus replayed on stable (cargo test in fuzz/)"
(cd fuzz && cargo fmt -- --check && cargo test --release -- --nocapture 2>&1 | grep -E "inputs,|test result|panicked|FAILED" )

step "fuzz: cargo +nightly fuzz run, ${FUZZ_SECONDS} s per target"
if cargo +nightly --version >/dev/null 2>&1; then
  if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz (cargo install --locked cargo-fuzz)"
    cargo install --locked cargo-fuzz >/tmp/hakmem-cargo-fuzz-install.log 2>&1 \
      || { tail -5 /tmp/hakmem-cargo-fuzz-install.log; echo "FAILED: cargo install cargo-fuzz"; exit 1; }
  fi
  cargo +nightly fuzz build >/dev/null
  for t in "${TARGETS[@]}"; do
    # A scratch corpus, so the committed one stays small; libFuzzer reads
    # the committed inputs first.
    work=$(mktemp -d)
    log=$(mktemp)
    if ! cargo +nightly fuzz run "$t" "$work" "fuzz/corpus/$t" -- \
        -max_total_time="$FUZZ_SECONDS" -print_final_stats=1 >"$log" 2>&1; then
      grep -E "panicked|ERROR|SUMMARY|artifact" -A3 "$log" | head -40
      echo "FAILED: fuzz target $t found a bug (input under fuzz/artifacts/$t)"; exit 1
    fi
    grep -E "^Done [0-9]+ runs|^hakmem-fuzz" "$log"
    rm -rf "$work" "$log"
  done
else
  echo "NOTE: no nightly toolchain here (rustup refused), so the fuzz targets"
  echo "      do not run; the corpus replay above did."
fi

step "stress: hakmem-std/tests/stress.rs in release, 25 s (threads re-created each round, objects migrating, survivors, RSS bounded)"
STRESS_SECONDS=${STRESS_SECONDS:-25} cargo test --release -p hakmem-std --test stress -- --nocapture 2>&1 \
  | grep -E "^stress:|test result|panicked|FAILED"

step "ThreadSanitizer: hakmem-std's threaded tests and the stress test (-Zsanitizer=thread -Zbuild-std)"
# --cfg hakmem_tsan: LinuxPages maps through the C library's mmap/munmap,
# which TSan intercepts (docs/reliability.md, "ThreadSanitizer"); the RSS
# bounds are not checked there (TSan's shadow memory is in the RSS).
if cargo +nightly --version >/dev/null 2>&1 && rustup component add rust-src --toolchain nightly >/dev/null 2>&1; then
  log=$(mktemp)
  if ! STRESS_SECONDS=5 RUSTFLAGS="-Zsanitizer=thread --cfg hakmem_tsan" TSAN_OPTIONS="halt_on_error=1" \
      cargo +nightly test -Zbuild-std --target x86_64-unknown-linux-gnu --target-dir target/tsan \
      -p hakmem-std --lib --test threads --test stress --test collections --test fault --test oom \
      --test tls_teardown --test trim \
      -- --nocapture >"$log" 2>&1; then
    grep -E "WARNING: ThreadSanitizer|SUMMARY|panicked" -A12 "$log" | head -60
    echo "FAILED: the ThreadSanitizer run"; exit 1
  fi
  grep -E "^test result|^stress:" "$log"
  n=$(grep -c "WARNING: ThreadSanitizer" "$log" || true)
  echo "ThreadSanitizer reports: $n"
  [ "$n" = 0 ] || { echo "FAILED: ThreadSanitizer reported races"; exit 1; }
  rm -f "$log"
else
  echo "NOTE: no nightly toolchain with rust-src here, so the ThreadSanitizer run is skipped."
fi
