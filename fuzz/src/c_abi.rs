//! `c_abi`: the C allocation semantics of libhakmem.so, fuzzed through
//! `hakmem_std::c_abi` — the functions the library's `extern "C"` symbols
//! forward to (they add only `errno`). libhakmem.so itself is a `cdylib`
//! whose `malloc` would replace the fuzzer's own; `c_abi` runs on
//! hakmem-std's process-wide heaps (mmap page source) while libFuzzer and
//! this model keep the system allocator.
//!
//! Operations and the rules checked:
//! - `malloc(n)`: a unique block, 16-byte aligned, `usable_size >= n`
//!   (`malloc(0)` too); sizes beyond `isize::MAX` give `NoMemory`;
//! - `calloc(n, size)`: zeroed; `n * size` overflowing gives `NoMemory`;
//! - `realloc(p, n)`: the prefix kept; `realloc(null, n)` allocates;
//!   `realloc(p, 0)` frees `p` and returns null; a huge `n` gives
//!   `NoMemory` and leaves `p` intact; `reallocarray` checks its product;
//! - `aligned` (aligned_alloc / memalign): any power of two, else
//!   `Invalid`; `posix_memalign`: also a multiple of `sizeof(void *)`;
//!   `valloc` / `pvalloc`: page-aligned, `pvalloc` rounded to pages;
//! - `usable_size(null) == 0`; `free(null)` does nothing;
//! - after every operation the thread's heap holds exactly the model's
//!   blocks (`thread_stats().held_blocks`), and each touched block its
//!   pattern; at the end everything is freed and the thread's heap holds
//!   nothing.

use std::collections::BTreeMap;
use std::ptr;

use hakmem_std::c_abi::{self, CError, MALLOC_ALIGN};

use crate::input::{self, Input};
use crate::live;
use crate::pattern;

const KIB: usize = 1 << 10;
const MAX_SIZE: usize = 1 << 20;

#[derive(Clone, Copy, Debug)]
struct Block {
    ptr: *mut u8,
    size: usize,
    id: u64,
}

struct World {
    blocks: Vec<Block>,
    by_addr: live::Ranges,
    next_id: u64,
    step: usize,
    held_before: usize,
}

impl World {
    fn ctx(&self) -> String {
        format!("[c_abi step {}]", self.step)
    }

    fn check_block(&self, b: &Block, align: usize, what: &str) {
        assert_eq!(
            b.ptr as usize % align.max(MALLOC_ALIGN),
            0,
            "{} {what}: {b:?} misaligned",
            self.ctx()
        );
        // SAFETY: a live block of ours.
        let u = unsafe { c_abi::usable_size(b.ptr) };
        assert!(u >= b.size, "{} {what}: usable {u} < {b:?}", self.ctx());
        // SAFETY: live, its `size` bytes hold its pattern.
        if let Some((at, got, want)) = unsafe { pattern::mismatch(b.ptr, b.id, 0, b.size) } {
            panic!(
                "{} {what}: {b:?} byte {at} is {got:#04x}, expected {want:#04x}",
                self.ctx()
            );
        }
    }

    fn insert(&mut self, p: *mut u8, size: usize, align: usize, zeroed: bool, what: &str) {
        if zeroed {
            // SAFETY: a fresh zeroed block of `size` bytes.
            if let Some(at) = unsafe { pattern::first_nonzero(p, size) } {
                panic!("{} {what}: byte {at} of {size} not zero", self.ctx());
            }
        }
        let (start, end) = (p as usize, p as usize + size.max(1));
        if let Some((s, e)) = live::overlap(&self.by_addr, start, end) {
            panic!("{} {what} {p:?}+{size} overlaps {s:#x}..{e:#x}", self.ctx());
        }
        self.by_addr.insert(start, end);
        let b = Block {
            ptr: p,
            size,
            id: self.next_id,
        };
        self.next_id += 1;
        // SAFETY: a live block of at least `size` bytes.
        unsafe { pattern::fill(p, b.id, 0, size) };
        self.check_block(&b, align, what);
        self.blocks.push(b);
    }

    fn remove(&mut self, i: usize) -> Block {
        let b = self.blocks.swap_remove(i);
        self.by_addr.remove(&(b.ptr as usize));
        self.check_block(&b, 1, "free");
        b
    }

    fn ok_or_nomem(&self, r: Result<*mut u8, CError>, size: usize, what: &str) -> Option<*mut u8> {
        match r {
            Ok(p) => {
                assert!(!p.is_null(), "{} {what}({size}) Ok(null)", self.ctx());
                assert!(
                    size <= MAX_SIZE * 4,
                    "{} {what}({size}) succeeded",
                    self.ctx()
                );
                Some(p)
            }
            Err(e) => {
                assert_eq!(e, CError::NoMemory, "{} {what}({size})", self.ctx());
                assert!(
                    size > isize::MAX as usize / 2,
                    "{} {what}({size}) failed",
                    self.ctx()
                );
                None
            }
        }
    }

    fn check_heap(&self) {
        let held = hakmem_std::thread_stats().map_or(0, |s| s.held_blocks);
        assert_eq!(
            held,
            self.held_before + self.blocks.len(),
            "{} thread heap holds {held} blocks, model {} (+{} before)",
            self.ctx(),
            self.blocks.len(),
            self.held_before
        );
    }
}

/// A size that must fail: beyond `isize::MAX`.
fn huge(v: u8) -> usize {
    usize::MAX - (v as usize) * 4096
}

/// Runs one input; returns the operations executed.
pub fn run(data: &[u8]) -> u64 {
    let mut inp = Input::new(data);
    let page = hakmem_std::page_size();
    let mut w = World {
        blocks: Vec::new(),
        by_addr: BTreeMap::new(),
        next_id: 1,
        step: 0,
        held_before: hakmem_std::thread_stats().map_or(0, |s| s.held_blocks),
    };
    let mut ops = 0u64;
    while let Some(op) = inp.u8() {
        let code = op % 16;
        match code {
            0..=3 => {
                let Some(size) = input::size(&mut inp, 128 * KIB, 32 * KIB, MAX_SIZE) else {
                    break;
                };
                let size = if op & 0x80 != 0 && op & 0x40 != 0 {
                    huge(op)
                } else {
                    size
                };
                if let Some(p) = w.ok_or_nomem(c_abi::malloc(size), size, "malloc") {
                    w.insert(p, size, MALLOC_ALIGN, false, "malloc");
                }
            }
            4 => {
                let (Some(n), Some(s)) = (inp.u16(), inp.u16()) else {
                    break;
                };
                let (n, s) = if op & 0x80 != 0 {
                    // Products that overflow (or only just do not).
                    (
                        usize::MAX / (s as usize + 2) + (op as usize >> 5 & 1),
                        s as usize + 2,
                    )
                } else {
                    (n as usize % 64, s as usize % (16 * KIB))
                };
                match n.checked_mul(s) {
                    None => assert_eq!(
                        c_abi::calloc(n, s),
                        Err(CError::NoMemory),
                        "{} calloc({n}, {s})",
                        w.ctx()
                    ),
                    Some(t) => {
                        if let Some(p) = w.ok_or_nomem(c_abi::calloc(n, s), t, "calloc") {
                            w.insert(p, t, MALLOC_ALIGN, true, "calloc");
                        }
                    }
                }
            }
            5 | 6 => {
                if w.blocks.is_empty() {
                    // SAFETY: free(NULL) does nothing.
                    unsafe { c_abi::free(ptr::null_mut()) };
                    // SAFETY: null is allowed.
                    assert_eq!(unsafe { c_abi::usable_size(ptr::null_mut()) }, 0);
                } else {
                    let Some(i) = inp.index(w.blocks.len()) else {
                        break;
                    };
                    let b = w.remove(i);
                    // SAFETY: live, forgotten by the model.
                    unsafe { c_abi::free(b.ptr) };
                }
            }
            7 | 8 => {
                let Some(sel) = inp.u8() else { break };
                let Some(v) = inp.u16() else { break };
                if w.blocks.is_empty() || sel % 8 == 0 {
                    // realloc(NULL, n) is malloc(n).
                    let n = v as usize % (8 * KIB);
                    // SAFETY: null asks for a new block.
                    let r = unsafe { c_abi::realloc(ptr::null_mut(), n) };
                    if let Some(p) = w.ok_or_nomem(r, n, "realloc(null)") {
                        w.insert(p, n, MALLOC_ALIGN, false, "realloc(null)");
                    }
                } else {
                    let i = v as usize % w.blocks.len();
                    let old = w.blocks[i];
                    w.check_block(&old, 1, "realloc");
                    let new = match sel % 8 {
                        1 => 0,
                        2 => huge(sel),
                        3 => old.size / 2,
                        4 | 5 => (old.size + 1 + v as usize).min(MAX_SIZE),
                        _ => (v as usize * 16) % MAX_SIZE,
                    };
                    let array = sel & 0x80 != 0 && new > 0;
                    // SAFETY: live; forgotten by the model below if it moves.
                    let r = unsafe {
                        if array {
                            c_abi::reallocarray(old.ptr, new, 1)
                        } else {
                            c_abi::realloc(old.ptr, new)
                        }
                    };
                    if new == 0 {
                        assert_eq!(r, Ok(ptr::null_mut()), "{} realloc(p, 0)", w.ctx());
                        w.blocks.swap_remove(i);
                        w.by_addr.remove(&(old.ptr as usize));
                    } else if let Some(p) = w.ok_or_nomem(r, new, "realloc") {
                        w.blocks.swap_remove(i);
                        w.by_addr.remove(&(old.ptr as usize));
                        let keep = old.size.min(new);
                        // SAFETY: the prefix was kept.
                        if let Some((at, g, e)) = unsafe { pattern::mismatch(p, old.id, 0, keep) } {
                            panic!("{} realloc({old:?}, {new}) byte {at} is {g:#04x}, expected {e:#04x}", w.ctx());
                        }
                        let (start, end) = (p as usize, p as usize + new.max(1));
                        w.by_addr.insert(start, end);
                        let b = Block {
                            ptr: p,
                            size: new,
                            id: old.id,
                        };
                        // SAFETY: `new` bytes.
                        unsafe { pattern::fill(p, b.id, keep, new) };
                        w.check_block(&b, MALLOC_ALIGN, "realloc result");
                        w.blocks.push(b);
                    } else {
                        w.check_block(&old, 1, "after failed realloc");
                    }
                }
            }
            9 | 10 => {
                let Some(a) = inp.u8() else { break };
                let Some(v) = inp.u16() else { break };
                let size = v as usize % (64 * KIB);
                let align = match a % 8 {
                    0 => 0,
                    1 => 1 << (a >> 3 & 3),          // 1..8
                    2 => 24 + (a as usize >> 3) * 8, // not powers of two, mostly
                    3 => 1 << (12 + (a >> 3) % 10),  // 4 KiB .. 2 MiB
                    _ => 1 << ((a >> 3) % 12),
                };
                let posix = code == 10;
                let r = if posix {
                    c_abi::posix_memalign(align, size)
                } else {
                    c_abi::aligned(align, size)
                };
                let valid = align.is_power_of_two()
                    && (!posix || align % core::mem::size_of::<usize>() == 0);
                if valid {
                    let p = w
                        .ok_or_nomem(r, size, "aligned")
                        .expect("valid aligned request");
                    w.insert(
                        p,
                        size,
                        align,
                        false,
                        if posix {
                            "posix_memalign"
                        } else {
                            "aligned_alloc"
                        },
                    );
                } else {
                    assert_eq!(
                        r,
                        Err(CError::Invalid),
                        "{} align {align} posix {posix}",
                        w.ctx()
                    );
                }
            }
            11 => {
                let Some(v) = inp.u16() else { break };
                let size = v as usize * 4;
                if op & 0x80 != 0 {
                    let p = c_abi::pvalloc(size).expect("pvalloc");
                    let rounded = size.max(1).next_multiple_of(page);
                    // SAFETY: live.
                    let usable = unsafe { c_abi::usable_size(p) };
                    assert!(usable >= rounded, "{} pvalloc rounding", w.ctx());
                    w.insert(p, rounded, page, false, "pvalloc");
                } else {
                    let p = c_abi::valloc(size).expect("valloc");
                    w.insert(p, size, page, false, "valloc");
                }
            }
            12 => {
                assert_eq!(c_abi::pvalloc(huge(op)), Err(CError::NoMemory));
                assert_eq!(c_abi::aligned(16, huge(op)), Err(CError::NoMemory));
                assert_eq!(c_abi::calloc(huge(op), 1), Err(CError::NoMemory));
            }
            13 => {
                for b in &w.blocks {
                    // SAFETY: live, its `size` bytes hold its pattern.
                    let bad = unsafe { pattern::mismatch_edges(b.ptr, b.id, b.size, 64) };
                    if let Some((at, g, e)) = bad {
                        panic!(
                            "{} check all: {b:?} byte {at} is {g:#04x}, expected {e:#04x}",
                            w.ctx()
                        );
                    }
                }
            }
            _ => continue,
        }
        ops += 1;
        w.step += 1;
        w.check_heap();
    }
    while let Some(b) = w.blocks.pop() {
        w.by_addr.remove(&(b.ptr as usize));
        w.check_block(&b, 1, "final free");
        // SAFETY: live, forgotten.
        unsafe { c_abi::free(b.ptr) };
    }
    w.check_heap();
    ops
}
