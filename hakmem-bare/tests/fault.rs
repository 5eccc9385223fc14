//! The fault hook: heap corruption found inside a locked `BareHeap` call
//! poisons the heaps and calls the user's handler, which may allocate (it
//! gets null at once: nothing waits on the lock the faulting call holds),
//! may unwind (then every later call returns at once), and is also told
//! of invalid frees through `GlobalAlloc`, without poisoning.
//!
//! Each case runs in a child process (the poison is for the whole
//! program): this binary again, with `FAULT_CHILD` naming the case. A
//! child that deadlocked would be killed after 20 s and fail the test.

use std::alloc::{GlobalAlloc, Layout};
use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hakmem_bare::{BareError, BareHeap, Fault, FaultKind, FreeErrorKind};

const CHILD_ENV: &str = "FAULT_CHILD";
const KIB: usize = 1024;

#[repr(C, align(16384))]
struct Arena([u8; 256 * KIB]);

/// A heap over a fresh arena (leaked: the child exits).
fn heap() -> &'static BareHeap {
    let heap: &'static BareHeap = Box::leak(Box::new(BareHeap::empty()));
    let arena: &'static mut Arena = Box::leak(Box::new(Arena([0; 256 * KIB])));
    // SAFETY: the arena is leaked and used by nothing but this heap.
    unsafe { heap.init(arena.0.as_mut_ptr(), arena.0.len()) }.unwrap();
    heap
}

fn layout() -> Layout {
    Layout::from_size_align(48, 8).unwrap()
}

/// Frees a block and overwrites it (a use after free), so that the next
/// allocation of its class pops it and finds its free tag gone. Returns
/// the block.
fn corrupt_a_free_block(h: &BareHeap) -> *mut u8 {
    // SAFETY: a non-zero layout; the blocks are ours.
    unsafe {
        let _keep = h.alloc(layout());
        let p = h.alloc(layout());
        assert!(!p.is_null());
        h.dealloc(p, layout());
        // The use after free under test: the block's memory stays in the
        // heap's region (its slab holds `_keep`).
        p.write_bytes(0xAB, 16);
        p
    }
}

static HEAP: Mutex<Option<&'static BareHeap>> = Mutex::new(None);

/// The handler of the first case: allocates through the poisoned heap (it
/// must get null, not deadlock), prints, exits 42.
fn handler_allocates_then_exits(f: &Fault) -> ! {
    let h = HEAP.lock().unwrap().expect("heap set");
    // SAFETY: a non-zero layout.
    let p = unsafe { h.alloc(layout()) };
    eprintln!(
        "handler: {f}; poisoned {}; alloc in handler: {p:?}",
        hakmem_bare::is_poisoned()
    );
    std::process::exit(42)
}

/// The handler of the second case: records the fault and unwinds.
static SEEN: Mutex<Option<Fault>> = Mutex::new(None);
fn handler_records_and_unwinds(f: &Fault) -> ! {
    *SEEN.lock().unwrap() = Some(*f);
    panic!("handler unwinds: {f}")
}

/// The handler of the third case: prints the invalid free, exits 43.
fn handler_exits_43(f: &Fault) -> ! {
    eprintln!("handler: {f}; poisoned {}", hakmem_bare::is_poisoned());
    std::process::exit(43)
}

fn child(case: &str) {
    match case {
        "allocating-handler" => {
            let h = heap();
            *HEAP.lock().unwrap() = Some(h);
            hakmem_bare::set_fault_handler(handler_allocates_then_exits);
            let p = corrupt_a_free_block(h);
            eprintln!("child: corrupted {p:?}");
            // SAFETY: a non-zero layout; the heap stops inside.
            let q = unsafe { h.alloc(layout()) };
            panic!("the overwritten block was handed out again: {q:?}");
        }
        "unwinding-handler" => {
            let h = heap();
            hakmem_bare::set_fault_handler(handler_records_and_unwinds);
            let live = {
                // SAFETY: a non-zero layout.
                let live = unsafe { h.alloc(layout()) };
                assert!(!live.is_null());
                live
            };
            let p = corrupt_a_free_block(h);
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                h.with(|l| l.alloc(layout()))
            }));
            assert!(r.is_err(), "the overwritten block was handed out again");
            let seen = SEEN.lock().unwrap().expect("the handler was called");
            assert_eq!(seen.kind, FaultKind::FreeBlockOverwritten);
            assert_eq!(seen.addr, p as usize);
            assert!(hakmem_bare::is_poisoned());
            // Poisoned: every call returns at once, none reaches the heap.
            // SAFETY: non-zero layouts; `live` is ours (the free is dropped).
            unsafe {
                assert!(h.alloc(layout()).is_null());
                assert!(h.alloc_zeroed(layout()).is_null());
                assert!(h.realloc(live, layout(), 64).is_null());
                h.dealloc(live, layout());
            }
            assert!(h.with(|_| ()).is_none());
            assert!(h.stats().is_none());
            assert!(!h.is_initialized());
            let mut other = [0u8; 64];
            // SAFETY: refused before anything is written.
            let e = unsafe { BareHeap::empty().init(other.as_mut_ptr(), other.len()) };
            assert_eq!(e, Err(BareError::Poisoned));
            eprintln!("child: unwinding handler checks passed");
            std::process::exit(0);
        }
        "invalid-free" => {
            let h = heap();
            hakmem_bare::set_fault_handler(handler_exits_43);
            // SAFETY: a non-zero layout; the second free is the fault under
            // test, reported before anything changes.
            unsafe {
                let _keep = h.alloc(layout());
                let p = h.alloc(layout());
                h.dealloc(p, layout());
                eprintln!("child: double free of {p:?}");
                h.dealloc(p, layout());
            }
            panic!("the double free was not reported");
        }
        _ => panic!("unknown case {case}"),
    }
}

/// Runs `case` in a child; returns its exit code and stderr. Kills it (and
/// fails) after 20 s: a deadlock on the heap's lock.
fn run_child(case: &str) -> (Option<i32>, String) {
    let mut c = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, case)
        .env("RUST_BACKTRACE", "0")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the child");
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = c.try_wait().unwrap() {
            break s;
        }
        if t0.elapsed() > Duration::from_secs(20) {
            let _ = c.kill();
            panic!("child {case} still running after 20 s: a deadlock");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    c.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    println!("child {case}: {status:?}\n{err}");
    (status.code(), err)
}

#[test]
fn child_entry() {
    if let Ok(case) = std::env::var(CHILD_ENV) {
        child(&case);
    }
}

#[test]
fn corruption_poisons_then_calls_the_handler_which_may_allocate() {
    let (code, err) = run_child("allocating-handler");
    assert_eq!(code, Some(42), "the handler did not run to its exit");
    assert!(
        err.contains("handler: hakmem: heap corruption at 0x"),
        "{err}"
    );
    assert!(
        err.contains("poisoned true; alloc in handler: 0x0"),
        "{err}"
    );
    let corrupted = err
        .split("child: corrupted ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next());
    let corrupted = corrupted.expect("the child named the block");
    assert!(
        err.contains(&format!("heap corruption at {corrupted}:")),
        "{err}"
    );
}

#[test]
fn a_handler_may_unwind_then_every_call_returns_at_once() {
    let (code, err) = run_child("unwinding-handler");
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains("child: unwinding handler checks passed"),
        "{err}"
    );
}

#[test]
fn invalid_frees_through_global_alloc_reach_the_handler_unpoisoned() {
    let (code, err) = run_child("invalid-free");
    assert_eq!(code, Some(43), "{err}");
    let p = err
        .split("child: double free of ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next());
    let p = p.expect("the child named the block");
    assert!(
        err.contains(&format!(
            "handler: hakmem: invalid free of {p}: {}; poisoned false",
            FreeErrorKind::DoubleFree.describe()
        )),
        "{err}"
    );
}
