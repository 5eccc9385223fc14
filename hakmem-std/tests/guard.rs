//! The `hardened` build's guard page after each large block (on
//! `LinuxPages`, which can `mprotect`): a linear write past the block's
//! tail fill faults at the write, a block grown by `realloc` keeps every
//! byte usable (the guard moves to the new end), and guard pages go back
//! with their blocks' regions (a freed region waits in the large cache,
//! guard in place, until reused, evicted or purged: the mapped bytes are
//! the same after every round). The fault runs in a child process, this
//! binary again with `GUARD_CHILD` set.
#![cfg(feature = "hardened")]

use std::alloc::{alloc, dealloc, realloc, Layout};
use std::os::unix::process::ExitStatusExt;

mod common;

#[global_allocator]
static GLOBAL: hakmem_std::HakMem = hakmem_std::HakMem::new();

const CHILD_ENV: &str = "GUARD_CHILD";

/// The two tests in turn: the mapped-bytes count is process-wide, and the
/// other test's thread maps and releases memory of its own.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
const LARGE: usize = 256 << 10;

fn layout(size: usize) -> Layout {
    Layout::from_size_align(size, 16).unwrap()
}

fn child() {
    // SAFETY: a live block of LARGE bytes; the write past its end is the
    // overflow under test (16 bytes of tail fill, at most 15 of alignment,
    // then the guard page: 32 bytes reach it).
    unsafe {
        let p = alloc(layout(LARGE));
        p.write_bytes(0x11, LARGE);
        eprintln!("child: writing past {p:?}");
        for i in 0..32 {
            std::ptr::write_volatile(p.add(LARGE + i), 0x41);
        }
        eprintln!("child: the write past the block did not fault");
        dealloc(p, layout(LARGE));
    }
}

#[test]
fn a_write_past_a_large_block_faults_at_the_write() {
    if std::env::var_os(CHILD_ENV).is_some() {
        child();
        return;
    }
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (status, err) =
        common::rerun_as_child("a_write_past_a_large_block_faults_at_the_write", CHILD_ENV);
    println!("child status: {:?}\n{err}", status);
    assert!(err.contains("child: writing past"), "{err}");
    assert!(!err.contains("did not fault"), "{err}");
    assert_eq!(status.signal(), Some(11), "no SIGSEGV at the write: {err}");
}

#[test]
fn grown_blocks_stay_usable_and_guards_go_back_with_their_blocks() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // Warm up, so the heap's own SuperSlabs are mapped before the baseline.
    // SAFETY: live blocks, each freed once with its layout.
    unsafe { dealloc(alloc(layout(64)), layout(64)) };
    // The count is process-wide: the test harness's threads (and the other
    // test's dead thread, whose heap the background thread reclaims) can
    // move it during an attempt. A leak of regions or guards grows it in
    // every attempt; a neighbour's move shows in one at most.
    let mut seen = Vec::new();
    for _attempt in 0..3 {
        let (before, after) = grow_and_free_rounds();
        if after == before {
            return;
        }
        seen.push((before, after));
    }
    panic!("large regions (and their guard pages) stayed mapped: (before, after) bytes {seen:?}");
}

/// Twenty rounds of eight large blocks, one grown by `realloc`, all freed;
/// the mapped bytes before and after.
fn grow_and_free_rounds() -> (usize, usize) {
    let before = hakmem_std::stats().os_mapped_bytes;
    for round in 0..20 {
        // SAFETY: as above; `realloc` keeps the first LARGE bytes, and every
        // byte of the grown block is the application's.
        unsafe {
            let mut v: Vec<*mut u8> = (0..8).map(|_| alloc(layout(LARGE))).collect();
            for (i, &p) in v.iter().enumerate() {
                assert!(!p.is_null());
                p.write_bytes(i as u8, LARGE);
            }
            let big = 4 * LARGE + 100 * round;
            v[0] = realloc(v[0], layout(LARGE), big);
            assert!(!v[0].is_null());
            assert!((0..LARGE).all(|i| *v[0].add(i) == 0));
            v[0].write_bytes(0x5a, big);
            dealloc(v[0], layout(big));
            for &p in &v[1..] {
                dealloc(p, layout(LARGE));
            }
        }
    }
    (before, hakmem_std::stats().os_mapped_bytes)
}
