//! Sets `hakmem_std_supported` on the targets hakmem-std serves: 64-bit
//! Linux, macOS and FreeBSD. Elsewhere `src/lib.rs` stops with one
//! `compile_error!` (and compiles nothing else, so that message is the only
//! one). The list lives here only; the source tests the one cfg.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(hakmem_std_supported)");
    println!("cargo::rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let width = std::env::var("CARGO_CFG_TARGET_POINTER_WIDTH").unwrap_or_default();
    if width == "64" && matches!(os.as_str(), "linux" | "macos" | "freebsd") {
        println!("cargo::rustc-cfg=hakmem_std_supported");
    }
}
