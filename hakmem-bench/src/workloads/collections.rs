//! BTreeMap and HashMap build and drop: N entries with `String` keys and
//! `Vec` values, looked up, then dropped.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use crate::out::{self, Better};
use crate::rss::rss;

/// Builds, reads and drops both maps; times each.
pub fn run(scale: f64) {
    let n = super::scaled(1_000_000.0, scale);
    let base = rss();
    let mut check = 0u64;
    let t = Instant::now();
    let mut b: BTreeMap<u64, String> = BTreeMap::new();
    for i in 0..n as u64 {
        b.insert(i.wrapping_mul(0x9e37_79b9_7f4a_7c15), format!("value-{i}"));
    }
    for (k, v) in b.range(..u64::MAX / 2) {
        check = check.wrapping_add(k & 0xff).wrapping_add(v.len() as u64);
    }
    drop(b);
    out::metric(
        "btreemap",
        t.elapsed().as_secs_f64() * 1e3,
        "ms",
        Better::Lower,
    );
    let t = Instant::now();
    let mut h: HashMap<String, Vec<u32>> = HashMap::new();
    for i in 0..n as u32 {
        h.entry(format!("key-{}", i % (n as u32 / 2).max(1)))
            .or_default()
            .push(i);
    }
    for i in 0..n as u32 / 2 {
        if let Some(v) = h.get(&format!("key-{i}")) {
            check = check.wrapping_add(v.iter().map(|&x| u64::from(x)).sum::<u64>());
        }
    }
    drop(h);
    out::metric(
        "hashmap",
        t.elapsed().as_secs_f64() * 1e3,
        "ms",
        Better::Lower,
    );
    out::rss_free(base);
    out::check(check);
}
