//! The Rust workloads on jemalloc (the `tikv-jemallocator` crate).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() {
    hakmem_bench::rust_child_main();
}
