//! The seed's test_scaling, on the real allocator: for N in 100K, 500K, 1M,
//! allocate N × 16 B, print the data size, RSS growth and overhead; free
//! all, print RSS right after and after the purge delay. Then the same with
//! mixed sizes 8–1024 B. RSS is read from /proc/self/statm.
//!
//! `cargo run --release -p hakmem-std --example scaling`
//! (with `--features system-alloc`, the same program on the system
//! allocator; add LD_PRELOAD for jemalloc or mimalloc.)

use std::alloc::{alloc, dealloc, Layout};
use std::time::Duration;

#[cfg(not(feature = "system-alloc"))]
#[global_allocator]
static GLOBAL: hakmem_std::HakMem = hakmem_std::HakMem::new();

#[path = "common/rss.rs"]
mod rss;
use rss::rss;

fn mb(b: isize) -> f64 {
    b as f64 / 1e6
}

/// Sizes of the mixed workload: a fixed pseudo-random sequence in 8..=1024.
fn mixed_size(i: usize) -> usize {
    let mut x = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    x ^= x >> 29;
    8 + (x % 1017) as usize
}

fn run(
    label: &str,
    n: usize,
    size_of: impl Fn(usize) -> usize,
    slots: &mut Vec<(*mut u8, Layout)>,
    wait: Duration,
) {
    slots.clear();
    let base = rss() as isize;
    let mut data = 0usize;
    for i in 0..n {
        let layout = Layout::from_size_align(size_of(i), 8).unwrap();
        // SAFETY: non-zero size.
        let p = unsafe { alloc(layout) };
        assert!(!p.is_null(), "out of memory");
        // SAFETY: `p` holds `layout.size()` bytes; touch it like an app would.
        unsafe { p.write_bytes(0x5a, layout.size()) };
        data += layout.size();
        slots.push((p, layout));
    }
    let live = rss() as isize;
    for &(p, layout) in slots.iter() {
        // SAFETY: each block is live and freed once, with its layout.
        unsafe { dealloc(p, layout) };
    }
    let freed = rss() as isize;
    std::thread::sleep(wait);
    let later = rss() as isize;
    println!(
        "{label:<6} {n:>8} {:>9.2} {:>10.2} {:>9.1}% {:>12.2} {:>12.2}",
        mb(data as isize),
        mb(live - base),
        ((live - base) as f64 / data as f64 - 1.0) * 100.0,
        mb(freed - base),
        mb(later - base),
    );
}

fn main() {
    let allocator = if cfg!(feature = "system-alloc") {
        "system (or LD_PRELOAD)"
    } else {
        "hakmem"
    };
    let wait = Duration::from_millis(1200);
    println!("seed scaling on {allocator}: RSS relative to the level before each run, MB = 10^6 B");
    println!(
        "{:<6} {:>8} {:>9} {:>10} {:>10} {:>12} {:>12}",
        "sizes", "N", "data MB", "RSS+ MB", "overhead", "freed: MB", "+1.2 s: MB"
    );
    // The pointer table is allocated and touched before any baseline.
    let mut slots: Vec<(*mut u8, Layout)> = Vec::with_capacity(1_000_000);
    slots.resize(1_000_000, (std::ptr::null_mut(), Layout::new::<u8>()));
    // `scaling 16 1000000` or `scaling mixed 500000` runs one case (one
    // process per case is fair to allocators that keep freed memory).
    let mut args = std::env::args().skip(1);
    let only: Option<(String, usize)> = match (args.next(), args.next()) {
        (Some(k), Some(n)) => Some((k, n.parse().expect("N"))),
        _ => None,
    };
    for n in [100_000, 500_000, 1_000_000] {
        if only.as_ref().is_none_or(|(k, m)| k == "16" && *m == n) {
            run("16 B", n, |_| 16, &mut slots, wait);
        }
    }
    for n in [100_000, 500_000, 1_000_000] {
        if only.as_ref().is_none_or(|(k, m)| k == "mixed" && *m == n) {
            run("8-1K", n, mixed_size, &mut slots, wait);
        }
    }
    #[cfg(not(feature = "system-alloc"))]
    if std::env::var_os("HAKMEM_SHOW_STATS").is_none() && std::env::args().len() == 1 {
        println!("\nprocess stats after the runs:\n{}", hakmem_std::stats());
    }
}
