//! The Rust workloads on the system allocator (glibc malloc).
#[global_allocator]
static GLOBAL: std::alloc::System = std::alloc::System;

fn main() {
    hakmem_bench::rust_child_main();
}
