#!/usr/bin/env bash
# CI for what users of the published crates meet (issue 12), called by
# .ci/run:
# - hakmem-std (and hakmem-tests, which runs it) checked for every target it
#   supports besides x86_64 Linux: aarch64 Linux, macOS (x86_64, and
#   aarch64 when that target installs) and FreeBSD; there is no linker or
#   runner for the last two here, so they are checked and linted (clippy),
#   not run. 32-bit Linux and Windows must stop with hakmem-std's one
#   compile_error, and hakmem-malloc with its Linux-only one on macOS;
# - the code hakmem-std builds for macOS and FreeBSD, built and tested on
#   Linux (HAKMEM_STD_PORTABLE=1: see hakmem-std/build.rs);
# - the docs of each published crate, built as docs.rs builds them (the
#   features and targets of its [package.metadata.docs.rs]), with
#   RUSTDOCFLAGS="-D warnings" (missing_docs is denied in every crate);
# - `cargo publish --dry-run --workspace` (packages and builds each crate
#   from its package, against the registry index);
# - the MSRV: the workspace's rust-version toolchain builds every crate,
#   target and feature (with the committed Cargo.lock).
# Installs what it needs; says plainly when an install is refused.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
step() { printf '\n== %s ==\n' "$*"; }

# Installs target $1 for toolchain $2 (default: the active one); fails the
# run unless $3 is "optional", then it only says so.
have_target() {
  local t=$1 tc=${2:-} how=${3:-required}
  local tcarg=() ; [ -n "$tc" ] && tcarg=(--toolchain "$tc")
  if rustup target add "${tcarg[@]}" "$t" >/dev/null 2>&1 \
     || rustup target list "${tcarg[@]}" --installed | grep -qx "$t"; then
    return 0
  fi
  if [ "$how" = optional ]; then
    echo "NOTE: rustup could not install the $t target${tc:+ for $tc}; it is not checked"
    return 1
  fi
  echo "FAILED: could not install the $t target${tc:+ for $tc}"; exit 1
}

# Checks that `cargo check -p $1 --target $2` stops with exactly one error,
# the message starting with $3.
expect_one_error() {
  local pkg=$1 t=$2 msg=$3 out
  out=$(cargo check -p "$pkg" --target "$t" 2>&1 || true)
  if ! printf '%s\n' "$out" | grep -q "^error: $msg" \
     || [ "$(printf '%s\n' "$out" | grep -c '^error\(\[\|:\)' )" -ne 2 ]; then
    # Two lines: the message, and cargo's "could not compile" after it.
    printf '%s\n' "$out" | tail -20
    echo "FAILED: $pkg on $t should stop with its one message: $msg"; exit 1
  fi
  echo "$t: $pkg stops with its one message, as intended"
}

step "other targets: hakmem-std checked for aarch64 Linux, macOS and FreeBSD; refused on 32-bit and Windows"
have_target aarch64-unknown-linux-gnu
cargo check -p hakmem-std -p hakmem-core --target aarch64-unknown-linux-gnu
checked=()
for t in x86_64-apple-darwin x86_64-unknown-freebsd aarch64-apple-darwin; do
  how=required; [ "$t" = aarch64-apple-darwin ] && how=optional
  have_target "$t" "" "$how" || continue
  # The library, its tests and examples, and the shared suite over it, with
  # the target's own cfg (no mremap, no membarrier, getenv, atexit): every
  # lint the Linux build gets.
  cargo clippy -p hakmem-std -p hakmem-tests --all-targets --target "$t" -- -D warnings
  checked+=("$t")
done
echo "checked (not run: no linker or runner here): ${checked[*]}"
expect_one_error hakmem-malloc x86_64-apple-darwin 'hakmem-malloc (libhakmem.so, the LD_PRELOAD malloc) supports Linux only'
for t in i686-unknown-linux-gnu x86_64-pc-windows-gnu; do
  have_target "$t"
  expect_one_error hakmem-std "$t" 'hakmem-std supports 64-bit Linux, macOS and FreeBSD only'
  cargo check -p hakmem-core --target "$t"
done

step "hakmem-std's macOS/FreeBSD code run on Linux: HAKMEM_STD_PORTABLE=1, its tests and hakmem-tests"
# build.rs then leaves out the Linux-only calls (madvise, mremap,
# membarrier, /proc/self/environ): the MAP_FIXED decommit, the copy on
# large growth, the fenced owner/visitor protocol and the getenv reader
# are what these tests exercise, RSS checks included. Not covered: the
# macOS/FreeBSD kernels themselves, atexit, 16 KiB pages.
HAKMEM_STD_PORTABLE=1 CARGO_TARGET_DIR=target/portable \
  cargo clippy -p hakmem-std -p hakmem-tests --all-targets -- -D warnings
HAKMEM_STD_PORTABLE=1 CARGO_TARGET_DIR=target/portable cargo test -p hakmem-std -p hakmem-tests

step "docs of each published crate as docs.rs builds them, RUSTDOCFLAGS=-D warnings"
# One line per (crate, target, features) from [package.metadata.docs.rs];
# crates with publish = false are skipped.
docs_plan=$(cargo metadata --format-version 1 --no-deps | python3 -c '
import json, sys
for p in json.load(sys.stdin)["packages"]:
    if p.get("publish") == []:
        continue
    d = ((p.get("metadata") or {}).get("docs") or {}).get("rs")
    if d is None:
        sys.exit("FAILED: %s has no [package.metadata.docs.rs]" % p["name"])
    feats = ",".join(d.get("features", []))
    targets = list(d.get("targets", []))
    if d.get("default-target") and d["default-target"] not in targets:
        targets.insert(0, d["default-target"])
    for t in targets or ["x86_64-unknown-linux-gnu"]:
        print(p["name"], t, feats or "-")
')
while read -r pkg t feats; do
  have_target "$t" "" optional || continue
  fa=(); [ "$feats" != - ] && fa=(--features "$feats")
  echo "cargo doc -p $pkg --target $t ${fa[*]}"
  RUSTDOCFLAGS="-D warnings" cargo doc -q --no-deps -p "$pkg" --target "$t" "${fa[@]}"
done <<<"$docs_plan"
RUSTDOCFLAGS="-D warnings" cargo doc -q --no-deps -p hakmem-core -p hakmem-std -p hakmem-bare -p hakmem-malloc

step "cargo publish --dry-run --workspace"
# --allow-dirty: CI may run on a working tree with changes not committed.
# Cargo unpacks each packaged crate of the workspace from a temporary
# local registry into its registry/src cache, under a name from that
# registry's path, and keeps a copy it unpacked before: a checkout at a
# path used earlier would verify against that stale copy (a trait member
# added since then went missing). Our crates' unpacked copies go first,
# and the dry run builds in a target folder of its own, emptied first
# (what was built from such a copy is taken as current: registry crates
# are never rebuilt for a changed source).
rm -rf target/package target/publish
cargo_home=${CARGO_HOME:-$HOME/.cargo}
for d in "$cargo_home"/registry/src/-*; do
  [ -d "$d" ] && rm -rf "$d"/hakmem-core-* "$d"/hakmem-std-* "$d"/hakmem-bare-* "$d"/hakmem-malloc-*
done
pub_rc=0
pub_out=$(CARGO_TARGET_DIR=target/publish cargo publish --dry-run --workspace --allow-dirty 2>&1) || pub_rc=$?
printf '%s\n' "$pub_out" | grep -v '^ *\(Compiling\|Checking\|Updating\|Unpacking\)' | tail -20 || true
[ "$pub_rc" -eq 0 ] || { echo "FAILED: cargo publish --dry-run --workspace"; exit 1; }

step "MSRV: the workspace with its rust-version toolchain"
msrv=$(sed -n 's/^rust-version = "\(.*\)"/\1/p' Cargo.toml)
[ -n "$msrv" ] || { echo "FAILED: no rust-version in Cargo.toml's [workspace.package]"; exit 1; }
if rustup toolchain install "$msrv" --profile minimal >/dev/null 2>&1; then
  cargo +"$msrv" --version
  # Its own target folder: the current toolchain's artefacts stay valid.
  cargo +"$msrv" check --workspace --all-targets --target-dir target/msrv
  cargo +"$msrv" check -p hakmem-core -p hakmem-bare --all-targets --all-features --target-dir target/msrv
  have_target thumbv7em-none-eabihf "$msrv"
  cargo +"$msrv" check -p hakmem-bare --target thumbv7em-none-eabihf --features allocator-api2,hardened --target-dir target/msrv
  for t in x86_64-apple-darwin x86_64-unknown-freebsd; do
    have_target "$t" "$msrv"
    cargo +"$msrv" check -p hakmem-std --target "$t" --target-dir target/msrv
  done
  echo "Rust $msrv builds the workspace (rust-version holds)"
else
  # Fallback: clippy's incompatible_msrv lint (on by default, reads
  # rust-version) flags std APIs newer than it. It misses language
  # features and dependencies' own MSRVs, so say so.
  echo "NOTE: rustup refused the $msrv toolchain; checking with clippy's incompatible_msrv lint only"
  echo "      (it catches std APIs newer than $msrv, not language features or dependencies)"
  cargo clippy --workspace --all-targets -- -D warnings -D clippy::incompatible_msrv
fi
