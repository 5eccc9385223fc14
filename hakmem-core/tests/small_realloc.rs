//! Small-block `realloc`: the fast path through the known-SuperSlab cache
//! (one slab lookup serves the checks, the size and, when the block moves,
//! the free of the old block). Paths forced: growth 8 B at a time through
//! every class up to 1 KiB (in place within a class, moving across
//! classes) with the held counts exact after every step, the moved-from
//! block refused afterwards as a double free, and a block reached at an
//! alignment above 16 (the general path).

use hakmem_core::sim::SimPages;
use hakmem_core::size_class::class_for;
use hakmem_core::{Config, FreeErrorKind, Heap};

/// The class size a request of `size` bytes at alignment 16 gets.
fn class_bytes(size: usize) -> usize {
    hakmem_core::size_class::class_size(class_for(size, 16).unwrap())
}

#[test]
fn vectors_grown_8_bytes_at_a_time_keep_content_and_exact_counts() {
    // (Two vectors under Miri, whose interpreter would take many minutes
    // over 64 of them.)
    const V: usize = if cfg!(miri) { 2 } else { 64 };
    let pages = SimPages::new();
    let mut heap = Heap::new(&pages, Config::DEFAULT).unwrap();
    let mut v = [core::ptr::null_mut::<u8>(); V];
    let mut moves = 0;
    for len in (8..=1024).step_by(8) {
        for (i, slot) in v.iter_mut().enumerate() {
            // SAFETY: `*slot` is null or the live block of the previous
            // step, used afterwards only through what realloc returns.
            let q = unsafe { heap.realloc(*slot, len, 16) }.unwrap();
            assert!(!q.is_null());
            if !slot.is_null() {
                // SAFETY: `q` holds at least `len - 8` bytes written below
                // in the previous step.
                let kept = unsafe { core::slice::from_raw_parts(q, len - 8) };
                assert!(kept.iter().all(|&b| b == i as u8), "len {len}, vector {i}");
                if q != *slot {
                    moves += 1;
                }
            }
            // SAFETY: `q` is live and at least `len` bytes long.
            unsafe { q.write_bytes(i as u8, len) };
            *slot = q;
        }
        let s = heap.stats();
        assert_eq!(s.held_blocks, V, "len {len}");
        if !cfg!(feature = "hardened") {
            assert_eq!(s.held_bytes, V * class_bytes(len), "len {len}");
        }
        heap.check().unwrap();
    }
    // Every vector moved at least once per class boundary crossed.
    assert!(moves >= V * 16, "{moves} moves");
    for p in v {
        // SAFETY: each is a live block.
        unsafe { heap.dealloc(p) }.unwrap();
    }
    assert_eq!(heap.stats().held_blocks, 0);
    heap.check().unwrap();
}

#[test]
fn the_block_moved_from_is_free() {
    let pages = SimPages::new();
    let mut heap = Heap::new(&pages, Config::DEFAULT).unwrap();
    let keep = heap.alloc(32, 16);
    let p = heap.alloc(32, 16);
    // SAFETY: `p` is live; after the move only the returned block is.
    let q = unsafe { heap.realloc(p, 100, 16) }.unwrap();
    assert_ne!(q, p);
    let before = heap.stats();
    assert_eq!(before.held_blocks, 2);
    // SAFETY: `p` was freed by the move; the heap must refuse it.
    let err = unsafe { heap.realloc(p, 200, 16) }.unwrap_err();
    assert_eq!((err.ptr, err.kind), (p as usize, FreeErrorKind::DoubleFree));
    // SAFETY: as above.
    let err = unsafe { heap.dealloc(p) }.unwrap_err();
    assert_eq!(err.kind, FreeErrorKind::DoubleFree);
    assert_eq!(heap.stats(), before);
    // SAFETY: `q` is live: an interior pointer of it is refused.
    let err = unsafe { heap.realloc(q.add(16), 8, 16) }.unwrap_err();
    assert_eq!(err.kind, FreeErrorKind::Interior);
    assert_eq!(heap.stats(), before);
    heap.check().unwrap();
    // SAFETY: both are live.
    unsafe {
        heap.dealloc(q).unwrap();
        heap.dealloc(keep).unwrap();
    }
    assert_eq!(heap.stats().held_blocks, 0);
}

#[test]
fn an_alignment_above_16_takes_the_general_path() {
    let pages = SimPages::new();
    let mut heap = Heap::new(&pages, Config::DEFAULT).unwrap();
    let p = heap.alloc(48, 16);
    // SAFETY: `p` is live, then only the returned block.
    unsafe {
        p.write_bytes(0x5a, 48);
        let q = heap.realloc(p, 40, 64).unwrap();
        assert_eq!(q as usize % 64, 0);
        assert!(core::slice::from_raw_parts(q, 40)
            .iter()
            .all(|&b| b == 0x5a));
        assert_eq!(heap.stats().held_blocks, 1);
        heap.dealloc(q).unwrap();
    }
    assert_eq!(heap.stats().held_blocks, 0);
    heap.check().unwrap();
}
