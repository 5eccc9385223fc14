//! The Rust workloads on hakmem (`hakmem_std::HakMem`).
#[global_allocator]
static GLOBAL: hakmem_std::HakMem = hakmem_std::HakMem::new();

fn main() {
    hakmem_bench::rust_child_main();
}
