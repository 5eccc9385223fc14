//! The seed's scaling test on the global allocator (as
//! `hakmem-std/examples/scaling.rs`): N × 16 B and N × 8..1024 B, the RSS
//! growth over the data while live, right after free-all and sampled every
//! 50 ms up to 1.2 s later (past hakmem's purge delay).

use std::alloc::{alloc, dealloc, Layout};
use std::time::Instant;

use crate::out::{self, Better};
use crate::rss::rss;

/// Sizes of the mixed case: a fixed pseudo-random sequence in 8..=1024.
fn mixed_size(i: usize) -> usize {
    let mut x = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    x ^= x >> 29;
    8 + (x % 1017) as usize
}

/// Runs one case: N × 16 B (or 8..1024 B when `mixed`), in a process of
/// its own (so that it starts from no other case's leftovers).
pub fn run_case(mixed: bool, n: usize) {
    // The pointer table is allocated and touched before any baseline.
    let mut slots: Vec<(*mut u8, Layout)> = Vec::with_capacity(n);
    slots.resize(n, (std::ptr::null_mut(), Layout::new::<u8>()));
    let mut check = 0u64;
    let label = format!("{}-{}K", if mixed { "mixed" } else { "16B" }, n / 1000);
    let base = rss();
    let mut data = 0usize;
    let t = Instant::now();
    for (i, slot) in slots.iter_mut().enumerate() {
        let size = if mixed { mixed_size(i) } else { 16 };
        let layout = Layout::from_size_align(size, 8).expect("layout");
        // SAFETY: non-zero size.
        let p = unsafe { alloc(layout) };
        assert!(!p.is_null(), "out of memory");
        // SAFETY: `p` holds `size` bytes; touch them as an app would.
        unsafe { p.write_bytes(i as u8, size) };
        data += size;
        *slot = (p, layout);
    }
    let live = rss();
    for &(p, layout) in slots.iter() {
        // SAFETY: each block is live, readable, and freed once with
        // its layout.
        unsafe {
            check += u64::from(p.read());
            dealloc(p, layout);
        }
    }
    let elapsed = t.elapsed();
    let freed = rss();
    let grow = |r: usize| (r as f64 - base as f64) / 1e6;
    out::metric(
        &format!("overhead.{label}"),
        ((live as f64 - base as f64) / data as f64 - 1.0) * 100.0,
        "%",
        Better::Lower,
    );
    out::metric(
        &format!("rss_live.{label}"),
        grow(live),
        "MB",
        Better::Lower,
    );
    out::metric(
        &format!("rss_freed.{label}"),
        grow(freed),
        "MB",
        Better::Lower,
    );
    out::sample_rss(&label, base, 1200);
    out::metric(
        &format!("rss_after_delay.{label}"),
        grow(rss()),
        "MB",
        Better::Lower,
    );
    out::metric(
        &format!("time.{label}"),
        elapsed.as_secs_f64() * 1e3,
        "ms",
        Better::Lower,
    );
    println!("rss_free {}", freed.saturating_sub(base));
    check += data as u64;
    out::check(check);
}
