//! The process's resident set, read from `/proc/self/statm`, for the
//! examples that show memory coming back (one copy, shared with `#[path]`).

/// Resident bytes of this process now.
pub fn rss() -> usize {
    let s = std::fs::read_to_string("/proc/self/statm").expect("statm");
    let pages: usize = s
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("rss field");
    pages * hakmem_std::page_size()
}
