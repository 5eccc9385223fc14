//! A small benchmark binary for counting the instructions of the fast path:
//! `iters` alloc(16)+free pairs after a warm-up, on one heap. Run it under
//! `valgrind --tool=callgrind` with two iteration counts; the difference in
//! instructions over the difference in pairs is the cost of one pair
//! (`scripts/fastpath-instructions.sh` does this).
//!
//! With a third argument `loop`, the same loop runs with the heap calls
//! replaced by identity functions, so the script can subtract the loop's own
//! cost (`black_box` stores and loads, the counter).
//!
//! A fourth argument sets the block size (default 16; the third is then
//! `pairs` for the measured loop).
//!
//! `cargo run --release -p hakmem-core --example fastpath [iters] [live] [loop|pairs] [size]`

use std::hint::black_box;

use hakmem_core::{sim::SimPages, Config, Heap};

fn main() {
    let mut args = std::env::args().skip(1);
    let iters: usize = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let live: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1_000);
    let mode = args.next();
    let size: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(16);
    let pages = SimPages::new();
    let mut heap = Heap::new(&pages, Config::DEFAULT).expect("valid config");
    // Keep some blocks live so the heap is not empty, and warm the magazine.
    let keep: Vec<*mut u8> = (0..live).map(|_| heap.alloc(size, 8)).collect();
    for _ in 0..64 {
        let p = heap.alloc(size, 8);
        // SAFETY: a live block, freed once.
        unsafe { heap.dealloc(p) }.unwrap();
    }
    if mode.as_deref() == Some("loop") {
        let mut q = keep[0];
        for _ in 0..iters {
            q = black_box(identity(black_box(size), q));
            black_box(q);
        }
        println!("{iters} empty iterations");
        return;
    }
    for _ in 0..iters {
        let p = black_box(heap.alloc(black_box(size), 8));
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

/// Stands in for the heap in the `loop` mode: what the loop passes around
/// without any allocator work.
#[inline(never)]
fn identity(size: usize, p: *mut u8) -> *mut u8 {
    p.wrapping_add(size >> 63)
}
