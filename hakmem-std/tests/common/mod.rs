// Each test binary uses part of this module.
#![allow(dead_code)]

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

/// Runs this test binary again with only test `name`, single-threaded, with
/// the environment variable `env` set (the test's child mode); returns its
/// exit status and standard error.
pub fn rerun_as_child(name: &str, env: &str) -> (std::process::ExitStatus, String) {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(env, "1")
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("run the child");
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
