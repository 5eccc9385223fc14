//! hakmem-std's fault hook: heap corruption found by the core (a block
//! written after it was freed, then handed out again) writes hakmem's
//! one-line message to stderr and aborts — in a child process, this binary
//! again with `FAULT_CHILD` set.

use std::alloc::{alloc, dealloc, Layout};
use std::os::unix::process::ExitStatusExt;

mod common;

#[global_allocator]
static GLOBAL: hakmem_std::HakMem = hakmem_std::HakMem::new();

const CHILD_ENV: &str = "FAULT_CHILD";

/// A size class nothing else in the child uses.
fn layout() -> Layout {
    Layout::from_size_align(3000, 8).unwrap()
}

fn child() {
    // SAFETY: a non-zero layout; `p` is freed, then overwritten — the use
    // after free under test (its slab holds `keep`, so it stays mapped).
    unsafe {
        let keep = alloc(layout());
        let p = alloc(layout());
        dealloc(p, layout());
        p.write_bytes(0xAB, 16);
        eprintln!("child: corrupted {p:?}");
        let q = alloc(layout());
        eprintln!("child: the overwritten block was handed out again: {q:?} {keep:?}");
    }
}

#[test]
fn heap_corruption_writes_the_message_and_aborts() {
    if std::env::var_os(CHILD_ENV).is_some() {
        child();
        return;
    }
    let (status, err) =
        common::rerun_as_child("heap_corruption_writes_the_message_and_aborts", CHILD_ENV);
    println!("child status: {:?}\n{err}", status);
    assert_eq!(status.signal(), Some(6), "the child did not abort: {err}");
    let p = err
        .split("child: corrupted ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .expect("the child named the block");
    assert!(
        err.contains(&format!(
            "hakmem: heap corruption at {p}: a free block was overwritten (use after free, \
             or a double free after a write)\n"
        )),
        "{err}"
    );
    assert!(!err.contains("handed out again"), "{err}");
}
