//! The three ways a program frees everything, and RSS coming back to its
//! baseline each time without the program asking (no `trim()`):
//! (a) the allocating thread frees all (local frees; empty SuperSlabs
//!     released beyond the retain count, the retained one decommitted by the
//!     background thread after the purge delay);
//! (b) another thread frees all while the allocating thread stays alive but
//!     idle (remote frees, collected by the background thread visiting the
//!     idle heap under the membarrier protocol);
//! (c) the allocating thread exits first, then the main thread frees all
//!     (the heap is abandoned at exit; the frees go to it remotely and the
//!     background thread reclaims it).
//!
//! Workload: 1M × 16 B (the seed's case) plus 50 MiB of mixed 8–1024 B
//! blocks, every block written. The tests share the process RSS, so they
//! run one at a time (a static mutex).

use std::alloc::{alloc, dealloc, Layout};
use std::sync::mpsc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[global_allocator]
static GLOBAL: hakmem_std::HakMem = hakmem_std::HakMem::new();

mod common;
use common::{mib, rss};

/// Serialises the tests of this binary (they share the process RSS).
static SERIAL: Mutex<()> = Mutex::new(());

const SMALL_COUNT: usize = 1_000_000;
const MIXED_BYTES: usize = 50 << 20;
/// Room for the pointers of both parts (the mixed part averages ~516 B).
const TABLE: usize = SMALL_COUNT + 120_000;

/// Sizes of the mixed part: a fixed pseudo-random sequence in 8..=1024.
fn mixed_size(i: usize) -> usize {
    let mut x = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    x ^= x >> 29;
    8 + (x % 1017) as usize
}

/// The pointer table: (address, size) of every block, allocated and
/// touched before any baseline so that it does not count.
type Table = Vec<(usize, usize)>;

fn new_table() -> Table {
    let mut t = Vec::with_capacity(TABLE);
    t.resize(TABLE, (0, 0));
    t.clear();
    t
}

/// Allocates the workload into `t` (emptied first), writing every block.
fn allocate(t: &mut Table) {
    t.clear();
    for i in 0..SMALL_COUNT {
        let layout = Layout::from_size_align(16, 8).unwrap();
        // SAFETY: non-zero size.
        let p = unsafe { alloc(layout) };
        assert!(!p.is_null(), "out of memory");
        // SAFETY: `p` holds 16 bytes.
        unsafe { (p as *mut u64).write(i as u64) };
        // SAFETY: as above.
        unsafe { (p as *mut u64).add(1).write(!(i as u64)) };
        t.push((p as usize, 16));
    }
    let mut bytes = 0;
    let mut i = 0;
    while bytes < MIXED_BYTES {
        let size = mixed_size(i);
        let layout = Layout::from_size_align(size, 8).unwrap();
        // SAFETY: non-zero size.
        let p = unsafe { alloc(layout) };
        assert!(!p.is_null(), "out of memory");
        // SAFETY: `p` holds `size` bytes.
        unsafe { p.write_bytes(size as u8, size) };
        t.push((p as usize, size));
        bytes += size;
        i += 1;
    }
    assert!(t.len() <= TABLE, "table too small: {}", t.len());
}

/// Checks a sample of the blocks, then frees every block of `t`.
fn free_all(t: &mut Table) {
    for (k, &(p, size)) in t.iter().enumerate() {
        if k % 97 != 0 {
            continue;
        }
        let p = p as *const u8;
        // SAFETY: every entry is a live block of `size` bytes.
        unsafe {
            if size == 16 && k < SMALL_COUNT {
                assert_eq!((p as *const u64).read(), k as u64);
                assert_eq!((p as *const u64).add(1).read(), !(k as u64));
            } else {
                assert_eq!(p.read(), size as u8);
                assert_eq!(p.add(size - 1).read(), size as u8);
            }
        }
    }
    for &(p, size) in t.iter() {
        // SAFETY: every entry is a live block, freed once, with its layout.
        unsafe { dealloc(p as *mut u8, Layout::from_size_align(size, 8).unwrap()) };
    }
    t.clear();
}

/// Polls RSS every 100 ms, up to 10 s, until it is at most `target`.
/// Returns the time it took and the last RSS.
fn wait_for_rss(target: usize) -> (Duration, usize) {
    let t0 = Instant::now();
    loop {
        let r = rss();
        if r <= target || t0.elapsed() >= Duration::from_secs(10) {
            return (t0.elapsed(), r);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// What a case hands back: the (emptied) table, the RSS while the workload
/// was live, and what to do once RSS has been checked (release an idle
/// thread).
type Outcome = (Table, usize, Box<dyn FnOnce()>);

/// Runs `case` (which allocates the workload, reads RSS while it is live,
/// and frees it in its own way) after a warm-up, and asserts RSS came back
/// to the baseline.
fn scenario(name: &str, case: impl Fn(Table) -> Outcome) {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // Warm-up: one full round of the same case (threads created and
    // joined, so their stacks and libc state exist), freed and purged, so
    // that one-time costs are not counted.
    let (table, _, finish) = case(new_table());
    finish();
    std::thread::sleep(Duration::from_millis(1500));
    let baseline = rss();

    let t0 = Instant::now();
    let (table, live, finish) = case(table);
    let freed_at = rss();
    let (took, end) = wait_for_rss(baseline + (1 << 20));
    println!(
        "{name}: baseline {:.2} MiB, live {:.2} MiB, right after the frees {:.2} MiB, \
         {:.2} MiB {:.2} s later (round {:.2} s)",
        mib(baseline),
        mib(live),
        mib(freed_at),
        mib(end),
        took.as_secs_f64(),
        t0.elapsed().as_secs_f64()
    );
    // The workload is ~66 MB of data: the test is meaningful only if it
    // was really resident.
    assert!(
        live >= baseline + 50_000_000,
        "{name}: RSS only grew from {:.2} to {:.2} MiB while live",
        mib(baseline),
        mib(live)
    );
    assert!(
        end <= baseline + (1 << 20),
        "{name}: RSS {:.2} MiB 10 s after the frees, baseline {:.2} MiB\n{}",
        mib(end),
        mib(baseline),
        hakmem_std::stats()
    );
    finish();
    drop(table);
}

#[test]
fn a_the_allocating_thread_frees_all() {
    scenario("(a) local frees", |mut t| {
        allocate(&mut t);
        let live = rss();
        free_all(&mut t);
        (t, live, Box::new(|| {}))
    });
}

#[test]
fn b_another_thread_frees_all_while_the_owner_idles() {
    scenario("(b) remote frees, owner idle", |t| {
        let (to_main, from_a) = mpsc::channel::<Table>();
        let (to_b, b_rx) = mpsc::channel::<Table>();
        let (back_tx, back) = mpsc::channel::<Table>();
        let (release_a, a_wait) = mpsc::channel::<()>();
        // Thread A allocates everything, hands the table over, then idles
        // (blocked in recv, never calling hakmem) until released.
        let a = std::thread::spawn(move || {
            let mut t = t;
            allocate(&mut t);
            to_main.send(t).unwrap();
            let _ = a_wait.recv();
        });
        // Thread B frees all of A's blocks.
        let b = std::thread::spawn(move || {
            let mut t = b_rx.recv().unwrap();
            free_all(&mut t);
            back_tx.send(t).unwrap();
        });
        let t = from_a.recv().unwrap();
        let live = rss();
        to_b.send(t).unwrap();
        let t = back.recv().unwrap();
        b.join().unwrap();
        // A stays alive and idle until RSS has been checked.
        let finish = Box::new(move || {
            release_a.send(()).unwrap();
            a.join().unwrap();
        });
        (t, live, finish)
    });
}

#[test]
fn c_the_owner_exits_then_main_frees_all() {
    scenario("(c) owner exited first", |t| {
        let a = std::thread::spawn(move || {
            let mut t = t;
            allocate(&mut t);
            t
        });
        let mut t = a.join().unwrap();
        let live = rss();
        free_all(&mut t);
        (t, live, Box::new(|| {}))
    });
}
