//! The Rust workloads on mimalloc (the `mimalloc` crate).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    hakmem_bench::rust_child_main();
}
