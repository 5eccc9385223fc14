//! The heap-corruption catalogue through the Rust API (the C catalogue,
//! `hakmem-malloc/tests/c/catalogue.c`, runs the same faults under
//! `LD_PRELOAD`): one test per fault family, at 8 B, 4 KiB and 256 KiB, on a
//! core `Heap` over `SimPages`. Each fault hakmem claims to stop must come
//! back as the error it names (`dealloc` / `realloc` / `usable_size`), or
//! reach the corruption handler (a panic with the hakmem message here; the
//! platforms install one that writes the message and aborts).
//!
//! Both builds stop double and invalid frees and a freed block whose tag
//! was overwritten. Only `hardened` stops overflows, underflows and writes
//! after free that leave the tag alone, and writes into a zero-size block
//! (its tests are `#[cfg(feature = "hardened")]`). The 1 MiB overflows and
//! underflows run only in C: here they would write outside the simulated
//! regions, into the test's own heap.
//!
//! Not under Miri: the broken heaps are leaked on purpose, and 256 KiB
//! blocks in loops are too slow there.
#![cfg(not(miri))]

use std::panic::{catch_unwind, AssertUnwindSafe};

use hakmem_core::sim::SimPages;
use hakmem_core::{Config, FreeErrorKind, Heap};

/// The catalogue's block sizes.
const SIZES: [usize; 3] = [8, 4096, 256 << 10];

/// A heap over its own leaked page source (the corruption tests leave
/// the heap broken, so it is never dropped).
fn heap() -> Heap<&'static SimPages> {
    let pages: &'static SimPages = Box::leak(Box::new(SimPages::new()));
    Heap::new(pages, Config::DEFAULT).unwrap()
}

/// Three blocks of `size`, as the C cases make: one below, one under test,
/// one above.
fn three(h: &mut Heap<&'static SimPages>, size: usize) -> [*mut u8; 3] {
    let v = [h.alloc(size, 16), h.alloc(size, 16), h.alloc(size, 16)];
    assert!(v.iter().all(|p| !p.is_null()));
    v
}

/// Runs `f`, which must stop in the corruption handler (here: the
/// default panic, naming the fault).
fn stops_in_handler(f: impl FnOnce()) {
    let r = catch_unwind(AssertUnwindSafe(f));
    let msg = match r {
        Ok(()) => panic!("the heap did not stop"),
        Err(e) => e
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default(),
    };
    assert!(msg.contains("hakmem: heap corruption at 0x"), "{msg:?}");
}

#[test]
fn double_frees_plain_delayed_interleaved() {
    for size in SIZES {
        for kind in ["plain", "delayed", "interleaved"] {
            let mut h = heap();
            let [a, p, q] = three(&mut h, size);
            // SAFETY: `p` is live for its first free; the second is the
            // fault, which the heap refuses without touching anything.
            unsafe {
                h.dealloc(p).unwrap();
                let mut others = Vec::new();
                match kind {
                    "delayed" => others = (0..100).map(|i| h.alloc(200 + i * 8, 16)).collect(),
                    "interleaved" => h.dealloc(q).unwrap(),
                    _ => {}
                }
                let e = h.dealloc(p).expect_err("double free accepted");
                if size <= 4096 {
                    assert_eq!(e.kind, FreeErrorKind::DoubleFree, "{kind} {size}");
                }
                for o in others {
                    h.dealloc(o).unwrap();
                }
                if kind != "interleaved" {
                    h.dealloc(q).unwrap();
                }
                h.dealloc(a).unwrap();
            }
            h.check().unwrap();
        }
    }
}

#[test]
fn invalid_unaligned_stack_and_far_frees() {
    static GLOBAL: [u8; 256 << 10] = [0; 256 << 10];
    for size in SIZES {
        let mut h = heap();
        let [a, p, q] = three(&mut h, size);
        let stack = [0u8; 4096];
        let bad = [
            GLOBAL.as_ptr().cast_mut(),
            p.wrapping_add(1),
            stack.as_ptr().cast_mut(),
            p.wrapping_add(1 << 30),
        ];
        for b in bad {
            // SAFETY: none is a live block; the heap only inspects them.
            assert!(unsafe { h.dealloc(b) }.is_err(), "{b:p} accepted ({size})");
        }
        // SAFETY: live blocks.
        unsafe {
            for x in [a, p, q] {
                h.dealloc(x).unwrap();
            }
        }
        h.check().unwrap();
    }
}

#[test]
fn a_freed_block_written_over_stops_its_reuse() {
    // The default build sees a write over the free tag (the second word:
    // inside a 4 KiB request, past an 8-byte one, whose first word is the
    // link that the default build follows unchecked); hardened checks the
    // link too.
    let sizes: &[usize] = if cfg!(feature = "hardened") {
        &[8, 4096]
    } else {
        &[4096]
    };
    for &size in sizes {
        let mut h = heap();
        let [_a, p, _q] = three(&mut h, size);
        // SAFETY: the write after free is the fault under test.
        unsafe {
            h.dealloc(p).unwrap();
            p.write_bytes(0x41, size);
        }
        stops_in_handler(|| {
            h.alloc(size, 16);
        });
        std::mem::forget(h);
    }
}

/// A second free of a block another thread already freed (and its owner
/// has not collected) is refused as a double free, in both builds.
#[test]
fn a_second_remote_free_is_a_double_free() {
    for size in [8, 200, 4096] {
        let mut h = heap();
        let [_a, p, _q] = three(&mut h, size);
        let geo = *h.geometry();
        // SAFETY: `p` is live for the first free; the second is the fault
        // under test, which must change nothing.
        unsafe {
            hakmem_core::free_remote(h.source(), &geo, p).unwrap();
            let e = hakmem_core::free_remote(h.source(), &geo, p).unwrap_err();
            assert_eq!(
                (e.ptr, e.kind),
                (p as usize, FreeErrorKind::DoubleFree),
                "{size}"
            );
        }
        h.collect();
        h.check().unwrap();
    }
}

#[cfg(feature = "hardened")]
mod hardened {
    use super::*;

    /// Writes `d` bytes past (or before) the middle block, then checks that
    /// `dealloc`, `realloc` and `usable_size` each refuse it as `want`.
    fn bounds(under: bool, d: usize, want: FreeErrorKind) {
        for size in SIZES {
            let mut h = heap();
            let [_a, p, _q] = three(&mut h, size);
            // SAFETY: the write is the fault under test; it stays inside the
            // regions (a 32-byte write lands in the next block, or in the
            // large block's slack or header padding).
            unsafe {
                let at = if under { p.sub(d) } else { p.add(size) };
                at.write_bytes(0x41, d);
                let e = h.dealloc(p).expect_err("dealloc accepted a broken block");
                assert_eq!(e.kind, want, "{size} {d}");
                assert!(e.to_string().contains(want.describe()));
                let e = h.realloc(p, 2 * size, 16).expect_err("realloc accepted it");
                assert_eq!(e.kind, want, "{size} {d}");
                if !under {
                    assert_eq!(h.usable_size(p).unwrap_err().kind, want);
                }
            }
            std::mem::forget(h);
        }
    }

    /// A free by a thread that does not own the block checks a block of
    /// up to 64 bytes itself (one line, the one it writes) and leaves a
    /// larger one's canaries to the owner, which checks them when it
    /// collects the block and stops in the fault handler naming it.
    #[test]
    fn remote_frees_of_overflowed_or_underflowed_blocks_are_stopped() {
        for under in [false, true] {
            let (want, kind) = if under {
                ("before the block", FreeErrorKind::Underflow)
            } else {
                ("past the block", FreeErrorKind::Overflow)
            };
            for size in [8, 200] {
                let mut h = heap();
                let [_a, p, _q] = three(&mut h, size);
                let geo = *h.geometry();
                // SAFETY: the 1-byte write is the fault under test, inside
                // the slab; the remote free is of a live block.
                let r = unsafe {
                    if under {
                        p.sub(1).write(0x41);
                    } else {
                        p.add(size).write(0x41);
                    }
                    hakmem_core::free_remote(h.source(), &geo, p)
                };
                if size == 8 && !under {
                    assert_eq!(r.unwrap_err().kind, kind);
                    std::mem::forget(h);
                    continue;
                }
                r.unwrap();
                let r = catch_unwind(AssertUnwindSafe(|| {
                    h.collect();
                }));
                let msg = r.expect_err("the owner collected a broken block");
                let msg = msg.downcast_ref::<String>().cloned().unwrap_or_default();
                assert!(
                    msg.contains(&format!("invalid free of {:#x}", p as usize)),
                    "{msg}"
                );
                assert!(msg.contains(want), "{size} {msg}");
                std::mem::forget(h);
            }
        }
    }

    #[test]
    fn overflows_of_1_and_32_bytes_are_refused() {
        bounds(false, 1, FreeErrorKind::Overflow);
        bounds(false, 32, FreeErrorKind::Overflow);
    }

    #[test]
    fn underflows_of_1_and_32_bytes_are_refused() {
        bounds(true, 1, FreeErrorKind::Underflow);
        bounds(true, 32, FreeErrorKind::Underflow);
    }

    #[test]
    fn any_write_after_free_stops_the_reuse() {
        // The first word (a poisoned link), then bytes of the watched words
        // (link, tag, the poisoned third word: see hardened.rs).
        for (size, ats) in [(8, [0, 4, 7]), (4096, [0, 8, 20])] {
            for at in ats {
                let mut h = heap();
                let [_a, p, _q] = three(&mut h, size);
                // SAFETY: the write after free is the fault under test.
                unsafe {
                    h.dealloc(p).unwrap();
                    if at == 0 {
                        p.cast::<usize>().write(0x1000);
                    } else {
                        p.add(at).write(0x41);
                    }
                }
                stops_in_handler(|| {
                    h.alloc(size, 16);
                });
                std::mem::forget(h);
            }
        }
    }

    #[test]
    fn writes_into_a_zero_size_block_are_refused() {
        for n in [1, 8] {
            let mut h = heap();
            let p = h.alloc(0, 16);
            // SAFETY: the write is the fault under test (inside the block's
            // slack).
            unsafe {
                p.write_bytes(0x41, n);
                assert_eq!(h.dealloc(p).unwrap_err().kind, FreeErrorKind::Overflow);
            }
            std::mem::forget(h);
        }
    }

    #[test]
    fn intact_blocks_pass_every_check() {
        // Every size up to 2 KiB and some large ones, written to their full
        // request, resized in place and moved, then freed: no false alarm.
        let mut h = heap();
        let mut v = Vec::new();
        for n in (0..2048).chain([100_000, 300_000]) {
            let p = h.alloc(n, 16);
            // SAFETY: `p` holds `n` bytes.
            unsafe {
                p.write_bytes(0x41, n);
                assert_eq!(h.usable_size(p).unwrap(), n);
            }
            v.push((p, n));
        }
        for (p, n) in &mut v {
            // SAFETY: live blocks of `n` bytes.
            unsafe {
                *p = h.realloc(*p, *n / 2 + 1, 16).unwrap();
                *n = *n / 2 + 1;
                p.write_bytes(0x42, *n);
                *p = h.realloc(*p, *n * 3, 16).unwrap();
                *n *= 3;
                p.write_bytes(0x43, *n);
            }
        }
        h.check().unwrap();
        for (p, _) in v {
            // SAFETY: live blocks.
            unsafe { h.dealloc(p).unwrap() };
        }
        h.check().unwrap();
    }
}
