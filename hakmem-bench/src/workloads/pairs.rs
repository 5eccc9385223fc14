//! alloc/dealloc pairs on the global allocator (as
//! `hakmem-std/examples/pairs.rs`): hot (one block allocated and freed in a
//! loop) and in batches of 1000, for 16 B, 64 B and 1 KiB.

use std::alloc::{alloc, dealloc, Layout};
use std::hint::black_box;
use std::time::Instant;

use crate::out::{self, Better};

/// ns per pair, hot and batched, per size.
pub fn run(scale: f64) {
    let mut check = 0u64;
    for size in [16usize, 64, 1024] {
        let layout = Layout::from_size_align(size, 8).expect("layout");
        let n = super::scaled(1e7, scale);
        let t = Instant::now();
        for i in 0..n {
            // SAFETY: non-zero size; the block is written, read and freed
            // at once with its layout.
            unsafe {
                let p = alloc(black_box(layout));
                assert!(!p.is_null(), "out of memory");
                p.write(i as u8);
                check += u64::from(black_box(p).read());
                dealloc(p, layout);
            }
        }
        let hot = t.elapsed().as_secs_f64() * 1e9 / n as f64;
        out::metric(&format!("hot.{size}B"), hot, "ns", Better::Lower);
        let rounds = super::scaled(1e4, scale);
        let mut ptrs = vec![std::ptr::null_mut::<u8>(); 1000];
        let t = Instant::now();
        for _ in 0..rounds {
            for (i, p) in ptrs.iter_mut().enumerate() {
                // SAFETY: non-zero size; the block holds at least one byte.
                unsafe {
                    *p = alloc(layout);
                    assert!(!p.is_null(), "out of memory");
                    p.write(i as u8);
                }
            }
            for &p in ptrs.iter() {
                // SAFETY: each block is live, read, and freed once with its
                // layout.
                unsafe {
                    check += u64::from(p.read());
                    dealloc(p, layout);
                }
            }
        }
        let batch = t.elapsed().as_secs_f64() * 1e9 / (rounds * 1000) as f64;
        out::metric(&format!("batch1000.{size}B"), batch, "ns", Better::Lower);
    }
    out::check(check);
}
