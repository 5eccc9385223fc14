//! The `HAKMEM_*` environment variables, read from `/proc/self/environ` at
//! the first allocation (`Config::with_env`): a child process (this test
//! binary run again) with the variables set reports `hakmem_std::config()`
//! and whether the background thread runs; `HAKMEM_SHOW_STATS=1` prints the
//! stats table to stderr at exit (the `.fini_array` hook); malformed values
//! leave the defaults; `stats()` counts every heap once.

use std::process::{Command, Output};

#[global_allocator]
static GLOBAL: hakmem_std::HakMem = hakmem_std::HakMem::new();

const CHILD_ENV: &str = "HAKMEM_TEST_ENV_CHILD";
const CHILD_TEST: &str = "child_reports_its_config";

/// Whether a thread named `hakmem-purge` (the background thread) exists.
fn background_thread_running() -> bool {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.unwrap().path().join("comm")).ok())
        .any(|c| c.trim() == "hakmem-purge")
}

/// Not a test of its own: the body of the child processes, which prints
/// the configuration in force. A no-op when run normally.
#[test]
fn child_reports_its_config() {
    match std::env::var(CHILD_ENV).as_deref() {
        Ok("stats") => return child_stats(),
        Ok(_) => {}
        Err(_) => return,
    }
    // Allocations happened long before (the harness): the configuration
    // is set. Some more, so the stats table has something to show.
    let v: Vec<Box<[u8; 100]>> = (0..1000).map(|_| Box::new([1; 100])).collect();
    std::hint::black_box(&v);
    let c = hakmem_std::config().expect("config after allocations");
    // Give the background thread time to start if it is going to.
    std::thread::sleep(std::time::Duration::from_millis(100));
    println!(
        "CONFIG purge_delay_ms={} retain={} background={} show_stats={} verbose={} superslab_shift={} thread={}",
        c.purge_delay_ms,
        c.core.retain,
        c.background,
        c.show_stats,
        c.verbose,
        c.core.superslab_shift,
        background_thread_running(),
    );
}

/// Child body for `stats_count_each_heap_once`: a thread exits while the
/// main thread holds one of its blocks (its heap is abandoned), then the
/// main thread reads the process stats twice.
fn child_stats() {
    let kept = std::thread::spawn(|| vec![7u8; 1000]).join().unwrap();
    for _ in 0..2 {
        let g = hakmem_std::stats();
        println!(
            "STATS os_mapped={} heaps_mapped={} abandoned={} held_blocks={}",
            g.os_mapped_bytes, g.process.mapped_bytes, g.abandoned_heaps, g.process.held_blocks
        );
    }
    assert!(kept.iter().all(|&b| b == 7));
}

/// Runs the child with exactly these `HAKMEM_*` variables (any inherited
/// ones removed).
fn run_child(vars: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", CHILD_TEST, "--nocapture", "--test-threads=1"]);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("HAKMEM_") {
            cmd.env_remove(k);
        }
    }
    cmd.env(CHILD_ENV, "1");
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run the child");
    assert!(
        out.status.success(),
        "child failed: {:?}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The child's CONFIG line, as `key=value` pairs.
fn config_line(out: &Output) -> Vec<(String, String)> {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.find("CONFIG ").map(|i| &l[i + 7..]))
        .unwrap_or_else(|| panic!("no CONFIG line in the child's output:\n{stdout}"));
    line.split_whitespace()
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (k.to_string(), v.to_string())
        })
        .collect()
}

fn get<'a>(cfg: &'a [(String, String)], key: &str) -> &'a str {
    &cfg.iter().find(|(k, _)| k == key).unwrap().1
}

#[test]
fn variables_set_the_config() {
    let out = run_child(&[
        ("HAKMEM_PURGE_DELAY_MS", "123"),
        ("HAKMEM_RETAIN", "3"),
        ("HAKMEM_BACKGROUND", "0"),
    ]);
    let cfg = config_line(&out);
    assert_eq!(get(&cfg, "purge_delay_ms"), "123");
    assert_eq!(get(&cfg, "retain"), "3");
    assert_eq!(get(&cfg, "background"), "false");
    assert_eq!(get(&cfg, "show_stats"), "false");
    assert_eq!(get(&cfg, "verbose"), "false");
    assert_eq!(get(&cfg, "superslab_shift"), "21");
    // HAKMEM_BACKGROUND=0: no background thread.
    assert_eq!(get(&cfg, "thread"), "false");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("hakmem stats"),
        "stats printed unasked:\n{stderr}"
    );
}

#[test]
fn defaults_without_variables() {
    let out = run_child(&[]);
    let cfg = config_line(&out);
    assert_eq!(get(&cfg, "purge_delay_ms"), "500");
    assert_eq!(get(&cfg, "retain"), "4");
    assert_eq!(get(&cfg, "background"), "true");
    assert_eq!(get(&cfg, "thread"), "true");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("hakmem stats"),
        "stats printed unasked:\n{stderr}"
    );
}

#[test]
fn malformed_values_keep_the_defaults() {
    let out = run_child(&[
        ("HAKMEM_PURGE_DELAY_MS", "-5"),
        ("HAKMEM_RETAIN", "three"),
        ("HAKMEM_BACKGROUND", "off"),
        ("HAKMEM_SHOW_STATS", "1x"),
    ]);
    let cfg = config_line(&out);
    assert_eq!(get(&cfg, "purge_delay_ms"), "500");
    assert_eq!(get(&cfg, "retain"), "4");
    assert_eq!(get(&cfg, "background"), "true");
    assert_eq!(get(&cfg, "show_stats"), "false");
}

#[test]
fn show_stats_prints_the_table_at_exit() {
    let out = run_child(&[("HAKMEM_SHOW_STATS", "1"), ("HAKMEM_VERBOSE", "1")]);
    let cfg = config_line(&out);
    assert_eq!(get(&cfg, "show_stats"), "true");
    assert_eq!(get(&cfg, "verbose"), "true");
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("child stderr:\n{stderr}");
    // The table, after everything else the child wrote.
    let at = stderr
        .find("hakmem stats")
        .unwrap_or_else(|| panic!("no stats table in the child's stderr:\n{stderr}"));
    let table = &stderr[at..];
    for field in [
        "mapped",
        "held",
        "free blocks",
        "pending remote",
        "superslabs",
    ] {
        assert!(table.contains(field), "no {field:?} in the table:\n{table}");
    }
    // The summary line of `GlobalStats` precedes the table.
    assert!(
        stderr.contains("thread heaps"),
        "no heap summary line:\n{stderr}"
    );
    // HAKMEM_VERBOSE=1 announces the background thread.
    assert!(
        stderr.contains("hakmem: background thread started"),
        "no verbose line:\n{stderr}"
    );
}

/// This process itself runs with the defaults (unless the environment of
/// the test run says otherwise).
#[test]
fn this_process_has_a_config() {
    let c = hakmem_std::config().expect("allocations happened");
    if std::env::vars_os().all(|(k, _)| !k.to_string_lossy().starts_with("HAKMEM_")) {
        assert_eq!(c, hakmem_std::Config::DEFAULT);
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(background_thread_running());
    }
}

/// Each heap counted once: with nothing else running, the heaps' mapped
/// bytes add up to what the page source has mapped. Without the background
/// thread no pass has made the shared heap yet, so the first `stats()`
/// makes it, and `heaps::acquire` hands it the abandoned heap that the
/// registry loop of that same `stats()` call has already counted.
#[test]
fn stats_count_each_heap_once() {
    let out = run_child(&[(CHILD_ENV, "stats"), ("HAKMEM_BACKGROUND", "0")]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<_> = stdout
        .lines()
        .filter_map(|l| l.split_once("STATS "))
        .map(|(_, r)| r)
        .collect();
    assert_eq!(lines.len(), 2, "child output:\n{stdout}");
    for l in &lines {
        let kv: Vec<(&str, usize)> = l
            .split_whitespace()
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap();
                (k, v.parse().unwrap())
            })
            .collect();
        let val = |k: &str| kv.iter().find(|(n, _)| *n == k).unwrap().1;
        assert!(val("abandoned") <= 1, "{l}");
        assert_eq!(
            val("os_mapped"),
            val("heaps_mapped"),
            "stats counted a heap twice: {l}"
        );
    }
}
