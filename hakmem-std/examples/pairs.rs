//! Nanoseconds per malloc/free pair, hot (one block allocated and freed in
//! a loop) and in batches (1,000 allocated, then all freed), for 16 B, 64 B
//! and 1 KiB, plus a cross-thread producer/consumer run. Prints the median
//! of 9 runs of each.
//!
//! `cargo run --release -p hakmem-std --example pairs`
//! (with `--features system-alloc`, the same program on the system
//! allocator; add LD_PRELOAD for jemalloc or mimalloc. hakmem-bench runs
//! the same pairs on every peer: `cargo run --release -p hakmem-bench -- --only rs-pairs,pairs`.)

use std::alloc::{alloc, dealloc, Layout};
use std::hint::black_box;
use std::time::Instant;

#[cfg(not(feature = "system-alloc"))]
#[global_allocator]
static GLOBAL: hakmem_std::HakMem = hakmem_std::HakMem::new();

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn hot(size: usize, iters: usize) -> f64 {
    let layout = Layout::from_size_align(size, 8).unwrap();
    let t = Instant::now();
    for _ in 0..iters {
        // SAFETY: non-zero size; the block is freed at once with its layout.
        unsafe {
            let p = alloc(black_box(layout));
            black_box(p).write(1);
            dealloc(p, layout);
        }
    }
    t.elapsed().as_nanos() as f64 / iters as f64
}

fn batch(size: usize, rounds: usize) -> f64 {
    const N: usize = 1000;
    let layout = Layout::from_size_align(size, 8).unwrap();
    let mut ptrs = vec![std::ptr::null_mut(); N];
    let t = Instant::now();
    for _ in 0..rounds {
        for p in ptrs.iter_mut() {
            // SAFETY: non-zero size.
            *p = unsafe { alloc(layout) };
            // SAFETY: the block holds at least one byte.
            unsafe { p.write(1) };
        }
        for &p in ptrs.iter() {
            // SAFETY: each block is live and freed once with its layout.
            unsafe { dealloc(p, layout) };
        }
    }
    t.elapsed().as_nanos() as f64 / (rounds * N) as f64
}

/// One thread allocates 64 B blocks, another frees them.
fn cross_thread(total: usize) -> f64 {
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<usize>>(64);
    let layout = Layout::from_size_align(64, 8).unwrap();
    let t = Instant::now();
    let consumer = std::thread::spawn(move || {
        for chunk in rx {
            for p in chunk {
                // SAFETY: each block was allocated by the producer with this
                // layout and is freed once.
                unsafe { dealloc(p as *mut u8, layout) };
            }
        }
    });
    let mut left = total;
    while left > 0 {
        let n = left.min(1000);
        // SAFETY: non-zero size.
        let chunk: Vec<usize> = (0..n).map(|_| unsafe { alloc(layout) } as usize).collect();
        tx.send(chunk).unwrap();
        left -= n;
    }
    drop(tx);
    consumer.join().unwrap();
    t.elapsed().as_nanos() as f64 / total as f64
}

fn main() {
    let allocator = if cfg!(feature = "system-alloc") {
        "system (or LD_PRELOAD)"
    } else {
        "hakmem"
    };
    println!("ns per malloc/free pair on {allocator}, median of 9 runs");
    for size in [16, 64, 1024] {
        let h = median((0..9).map(|_| hot(size, 2_000_000)).collect());
        let b = median((0..9).map(|_| batch(size, 2_000)).collect());
        println!("{size:>5} B  hot {h:>7.2} ns   batch-1000 {b:>7.2} ns");
    }
    let x = median((0..9).map(|_| cross_thread(1_000_000)).collect());
    println!("   64 B  cross-thread (alloc on one, free on another) {x:>7.2} ns");
}
