//! Vec and String growth: many small vectors and strings grown one element
//! at a time, and one `Vec<u64>` grown to 16M elements.

use std::time::Instant;

use crate::out::{self, Better};
use crate::rss::rss;

/// Grows, reads and drops them; times each.
pub fn run(scale: f64) {
    let base = rss();
    let mut check = 0u64;
    let t = Instant::now();
    for _ in 0..super::scaled(10.0, scale) {
        let mut vs: Vec<Vec<u32>> = (0..10_000).map(|_| Vec::new()).collect();
        let mut ss: Vec<String> = (0..10_000).map(|_| String::new()).collect();
        for round in 0..100u32 {
            for (i, (v, s)) in vs.iter_mut().zip(ss.iter_mut()).enumerate() {
                v.push(round + i as u32);
                s.push(char::from(b'a' + (round % 26) as u8));
            }
        }
        for (v, s) in vs.iter().zip(ss.iter()) {
            check = check.wrapping_add(u64::from(v[99]) + s.len() as u64);
        }
    }
    out::metric(
        "small",
        t.elapsed().as_secs_f64() * 1e3,
        "ms",
        Better::Lower,
    );
    let t = Instant::now();
    for _ in 0..super::scaled(5.0, scale) {
        let mut v: Vec<u64> = Vec::new();
        for i in 0..16u64 << 20 {
            v.push(i);
        }
        check = check.wrapping_add(v[v.len() / 3]);
    }
    out::metric(
        "vec_16M",
        t.elapsed().as_secs_f64() * 1e3,
        "ms",
        Better::Lower,
    );
    out::rss_free(base);
    out::check(check);
}
