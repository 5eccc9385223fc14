//! A small benchmark binary for counting the instructions of the fast path:
//! `iters` alloc(16)+free pairs after a warm-up, on one heap. Run it under
//! `valgrind --tool=callgrind` with two iteration counts; the difference in
//! instructions over the difference in pairs is the cost of one pair
//! (`scripts/fastpath-instructions.sh` does this).
//!
//! `cargo run --release -p hakmem-core --example fastpath [iters] [live]`

use std::hint::black_box;

use hakmem_core::{sim::SimPages, Config, Heap};

fn main() {
    let mut args = std::env::args().skip(1);
    let iters: usize = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let live: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1_000);
    let pages = SimPages::new();
    let mut heap = Heap::new(&pages, Config::DEFAULT).expect("valid config");
    // Keep some blocks live so the heap is not empty, and warm the magazine.
    let keep: Vec<*mut u8> = (0..live).map(|_| heap.alloc(16, 8)).collect();
    for _ in 0..64 {
        let p = heap.alloc(16, 8);
        // SAFETY: a live block, freed once.
        unsafe { heap.dealloc(p) }.unwrap();
    }
    for _ in 0..iters {
        let p = black_box(heap.alloc(black_box(16), 8));
        // SAFETY: a live block, freed once.
        unsafe { heap.dealloc(black_box(p)) }.unwrap();
    }
    for p in keep {
        // SAFETY: live blocks, each freed once.
        unsafe { heap.dealloc(p) }.unwrap();
    }
    println!(
        "{iters} alloc+free pairs; held after: {}",
        heap.stats().held_blocks
    );
}
