#!/usr/bin/env bash
# The hardened mode (docs/reliability.md, "Hardened mode" and "The
# heap-corruption catalogue"): builds the hardened libhakmem.so, runs the
# catalogue (hakmem-malloc/tests/c/catalogue.c, 134 cases) under the default
# and the hardened library — each fails when a case its column of
# tests/c/catalogue.claims says it stops is not stopped — then the core's
# Rust-API catalogue and the hardened test suites. A few minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
step() { printf '\n== %s ==\n' "$*"; }

step "clippy with the hardened hakmem-std (its zero-size region)"
cargo clippy -q -p hakmem-std -p hakmem-malloc --all-targets --features hakmem-std/hardened -- -D warnings

step "hardened libhakmem.so (cargo build --release -p hakmem-malloc --features hardened)"
cargo build --release -q -p hakmem-malloc --features hardened --target-dir target/preload-hardened
ls -l target/preload-hardened/release/libhakmem.so

step "the catalogue under LD_PRELOAD: default and hardened builds against their claims"
claims=hakmem-malloc/tests/c/catalogue.claims
want_d=$(awk '!/^#/ && $2 == "stop"' "$claims" | wc -l)
want_h=$(awk '!/^#/ && $3 == "stop"' "$claims" | wc -l)
echo "claimed: default $want_d of 134, hardened $want_h of 134"
[ "$want_h" -ge 100 ] || { echo "FAILED: the hardened build claims fewer than 100 of 134"; exit 1; }
HAKMEM_HARDENED_LIB=target/preload-hardened/release/libhakmem.so \
  cargo test --release -q -p hakmem-malloc --test catalogue -- --nocapture

step "the catalogue through the Rust API, both builds"
cargo test -q -p hakmem-core --test catalogue
cargo test -q -p hakmem-core --features hardened --test catalogue

step "hardened test suites: hakmem-core, hakmem-std"
cargo test -q -p hakmem-core --features hardened
cargo test -q -p hakmem-std --features hardened

step "the hardened library under the C tests of tests/preload.rs (not the Debian programs)"
HAKMEM_PRELOAD_LIB=target/preload-hardened/release/libhakmem.so \
  cargo test -q -p hakmem-malloc --test preload -- api_ bad_ threads_ fork_ cxx_ dlopen
