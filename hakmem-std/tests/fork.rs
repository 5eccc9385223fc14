//! A forked child keeps the memory promise: the seed run (1M × 16 B, each
//! block written, then free all) in a child of `fork()` gives its memory
//! back without being asked, as in the parent. Forces: the fork handlers
//! of the Rust allocator (registered at its first heap), the child's first
//! call taking the slow path (the forking thread's slot comes back from
//! `FORKED`) and restarting the background thread, which did not survive
//! the fork and without which the retained SuperSlabs (about 10 MiB) stay
//! committed for good.
//!
//! One test in this binary, so the fork happens with no other test thread
//! running; the child reports through its exit status and a line on fd 2.

use std::alloc::{alloc, dealloc, Layout};
use std::time::{Duration, Instant};

#[global_allocator]
static GLOBAL: hakmem_std::HakMem = hakmem_std::HakMem::new();

mod common;
use common::{mib, rss};

extern "C" {
    fn fork() -> i32;
    fn waitpid(pid: i32, status: *mut i32, options: i32) -> i32;
    fn _exit(code: i32) -> !;
}

const N: usize = 1_000_000;

/// The seed run; returns (RSS growth with every block live, growth at the
/// end of the wait, how long RSS took to come back).
///
/// The residency check uses the growth before the frees: the background
/// thread may already decommit SuperSlabs emptied early in the free loop
/// (a pass that follows one which saw free memory decommits all of it), so
/// the growth right after the frees can be small on a slow or loaded run.
fn seed_run() -> (usize, usize, Duration) {
    let layout = Layout::from_size_align(16, 8).unwrap();
    let mut table: Vec<usize> = vec![1; N];
    table.clear();
    let base = rss();
    for i in 0..N {
        // SAFETY: non-zero size.
        let p = unsafe { alloc(layout) };
        assert!(!p.is_null(), "out of memory");
        // SAFETY: `p` holds 16 bytes.
        unsafe { p.cast::<u64>().write(i as u64) };
        table.push(p as usize);
    }
    let live = rss().saturating_sub(base);
    for (i, &p) in table.iter().enumerate() {
        // SAFETY: a live block, checked then freed once with its layout.
        unsafe {
            assert_eq!((p as *const u64).read(), i as u64);
            dealloc(p as *mut u8, layout);
        }
    }
    let mut now = rss().saturating_sub(base);
    // Poll up to 10 s (the purge delay is 500 ms): without the background
    // thread RSS never comes back, so the wait only bounds a failure.
    let t0 = Instant::now();
    while now > 1 << 20 && t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(100));
        now = rss().saturating_sub(base);
    }
    (live, now, t0.elapsed())
}

fn report(who: &str, (live, end, took): (usize, usize, Duration)) -> String {
    format!(
        "{who}: RSS +{:.2} MiB with every block live, +{:.2} MiB {:.2} s after the frees\n",
        mib(live),
        mib(end),
        took.as_secs_f64()
    )
}

#[test]
#[cfg_attr(
    hakmem_tsan,
    ignore = "RSS under ThreadSanitizer is its shadow memory too, and TSan does not follow fork"
)]
fn forked_child_returns_memory_after_free_all() {
    // The parent first: its retained SuperSlabs are what the child inherits.
    let parent = seed_run();
    print!("{}", report("parent", parent));
    assert!(parent.1 <= 1 << 20, "the parent kept its memory");

    // SAFETY: the child runs only this test's code (allocation, /proc
    // reads, a write to fd 2) and leaves with _exit.
    let pid = unsafe { fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let child = seed_run();
        let line = report("child", child);
        // SAFETY: fd 2 stays open for the life of the test.
        let _ = rustix::io::write(unsafe { rustix::stdio::stderr() }, line.as_bytes());
        let ok = child.0 > 8 << 20 && child.1 <= 1 << 20;
        // SAFETY: leaves the child at once, as a forked child should.
        unsafe { _exit(if ok { 0 } else { 1 }) };
    }
    let mut status = 0;
    // SAFETY: `pid` is our child.
    assert_eq!(unsafe { waitpid(pid, &mut status, 0) }, pid);
    assert_eq!(
        status, 0,
        "the child kept more than 1 MiB after freeing everything (or its \
         workload was not resident): see its line above"
    );
}
