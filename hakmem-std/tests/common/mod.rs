//! Helpers shared by the test binaries that measure memory.

/// Resident set size in bytes, from /proc/self/statm.
pub fn rss() -> usize {
    let s = std::fs::read_to_string("/proc/self/statm").expect("statm");
    let pages: usize = s
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("rss field");
    pages * hakmem_std::page_size()
}

/// Bytes as MiB, for messages.
pub fn mib(b: usize) -> f64 {
    b as f64 / (1 << 20) as f64
}
