//! The lines a child prints on stdout, read by the driver (the C workloads
//! print the same, see `c/common.h`):
//!
//! ```text
//! metric NAME VALUE UNIT lower|higher   one measured figure
//! check TEXT                            must be equal for every allocator
//! rss_free BYTES                        RSS growth right after free-all
//! sample LABEL MS BYTES                 RSS growth MS ms after free-all
//! ```

/// Which way a metric improves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Better {
    /// Times, bytes, overheads.
    Lower,
    /// Throughputs.
    Higher,
}

/// Prints one `metric` line.
pub fn metric(name: &str, value: f64, unit: &str, better: Better) {
    let b = match better {
        Better::Lower => "lower",
        Better::Higher => "higher",
    };
    println!("metric {name} {value:.6} {unit} {b}");
}

/// Prints the `check` line: a figure read back out of the blocks, equal
/// under every correct allocator.
pub fn check(v: impl std::fmt::Display) {
    println!("check {v}");
}

/// Prints the `rss_free` line: RSS growth over `base` now, after free-all.
pub fn rss_free(base: usize) {
    println!("rss_free {}", crate::rss::rss().saturating_sub(base));
}

/// Prints `sample` lines: RSS growth over `base` every 50 ms for `total_ms`.
pub fn sample_rss(label: &str, base: usize, total_ms: u64) {
    let mut t = 0;
    loop {
        let r = crate::rss::rss() as i64 - base as i64;
        println!("sample {label} {t} {r}");
        if t >= total_ms {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        t += 50;
    }
}
