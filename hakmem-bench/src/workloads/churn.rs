//! Random churn: 100k live `Box<[u8]>` of 8..4096 B, each step replacing a
//! random one.

use std::time::Instant;

use crate::out::{self, Better};
use crate::rng::Rng;
use crate::rss::rss;

/// Churns and frees all; ns per replacement.
pub fn run(scale: f64) {
    const LIVE: usize = 100_000;
    let ops = super::scaled(6e6, scale);
    let mut r = Rng(1);
    let base = rss();
    let mut slots: Vec<Box<[u8]>> = (0..LIVE)
        .map(|i| vec![i as u8; r.range(8, 4096)].into_boxed_slice())
        .collect();
    let mut check = 0u64;
    let t = Instant::now();
    for k in 0..ops {
        let i = r.next_u64() as usize % LIVE;
        let b = &slots[i];
        check += u64::from(b[0]) + u64::from(b[b.len() - 1]);
        slots[i] = vec![k as u8; r.range(8, 4096)].into_boxed_slice();
    }
    let ns = t.elapsed().as_secs_f64() * 1e9 / ops as f64;
    drop(slots);
    out::rss_free(base);
    out::metric("ns_per_op", ns, "ns", Better::Lower);
    out::check(check);
}
