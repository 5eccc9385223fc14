//! Sets the cfgs that choose hakmem-std's platform code, so the list of
//! platforms lives here only:
//!
//! - `hakmem_std_supported` on the targets hakmem-std serves: 64-bit
//!   Linux, macOS and FreeBSD. Elsewhere `src/lib.rs` stops with one
//!   `compile_error!` (and compiles nothing else, so that message is the
//!   only one).
//! - `hakmem_std_linux` where the Linux-only calls are used: `madvise
//!   (MADV_DONTNEED)`, `mremap`, `membarrier`, `/proc/self/environ`. On
//!   Linux with `HAKMEM_STD_PORTABLE=1` in the build's environment it is
//!   left unset, so the code macOS and FreeBSD get (`MAP_FIXED` decommit,
//!   no remap, fences instead of membarrier, `getenv`) is built, and its
//!   tests run, on Linux (`.ci/eco.sh` does).

fn main() {
    println!("cargo::rustc-check-cfg=cfg(hakmem_std_supported)");
    println!("cargo::rustc-check-cfg=cfg(hakmem_std_linux)");
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=HAKMEM_STD_PORTABLE");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let width = std::env::var("CARGO_CFG_TARGET_POINTER_WIDTH").unwrap_or_default();
    if width == "64" && matches!(os.as_str(), "linux" | "macos" | "freebsd") {
        println!("cargo::rustc-cfg=hakmem_std_supported");
    }
    let portable = std::env::var("HAKMEM_STD_PORTABLE").is_ok_and(|v| v == "1");
    if os == "linux" && !portable {
        println!("cargo::rustc-cfg=hakmem_std_linux");
    }
}
