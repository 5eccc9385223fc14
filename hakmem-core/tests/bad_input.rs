//! Bad input: every invalid free is refused with the right [`FreeErrorKind`],
//! its message names the pointer in hex, and the heap is left exactly as it
//! was. Paths forced: `dealloc`'s fast path through the known-SuperSlab
//! cache into `free_local`'s checks (SuperSlab header, interior pointer,
//! memory beyond a slab's bump pointer, the double-free tag or, with
//! `hardened`, the allocation bitmap), its slow path through `locate` and
//! `PageSource::contains` (pointers never handed out, large blocks, unmapped
//! memory), the same checks behind `usable_size` and `realloc`, and the
//! out-of-memory paths of `alloc_from_slab`/`alloc_large` when
//! `PageSource::map` fails, plus the size and alignment guards of `alloc`.

use hakmem_core::sim::SimPages;
use hakmem_core::{free_remote, Config, FreeError, FreeErrorKind, Heap, Stats};

use FreeErrorKind::{DoubleFree, Interior, NotAllocated, NotOurs};

type TestHeap<'a> = Heap<&'a SimPages>;

fn config() -> Config {
    if cfg!(miri) {
        // The large and small tiers as they were designed for: this suite
        // tests them (tests/medium.rs and the model test cover the medium tier).
        Config {
            medium: false,
            ..Config::SMALL
        }
    } else {
        Config::DEFAULT
    }
}

fn config_with(f: impl FnOnce(&mut Config)) -> Config {
    let mut c = config();
    f(&mut c);
    c
}

/// Hands `ptr` to `dealloc`, `usable_size` and `realloc`; each must refuse it
/// with the same error, of one of the `allowed` kinds, and change nothing:
/// neither the heap's figures nor the page source's, nor any invariant.
/// Returns the kind reported.
fn refused_as(heap: &mut TestHeap<'_>, ptr: *mut u8, allowed: &[FreeErrorKind]) -> FreeErrorKind {
    let stats = heap.stats();
    let sim = heap.source().stats();
    // SAFETY: the callers pass pointers that are not live blocks and lie in
    // no large block's body beyond its first SuperSlab-sized window (except
    // the `hardened` tests, which the feature allows), so `dealloc` only
    // inspects them.
    let err = unsafe { heap.dealloc(ptr) }.expect_err("dealloc accepted a bad pointer");
    assert_eq!(err.ptr, ptr as usize, "{err:?}");
    assert!(
        allowed.contains(&err.kind),
        "{ptr:p}: got {:?}, want one of {allowed:?}",
        err.kind
    );
    let msg = err.to_string();
    let hex = format!("{:#x}", ptr as usize);
    assert!(msg.contains(&hex), "{msg:?} does not name {hex}");
    assert!(msg.contains(err.kind.describe()), "{msg:?}");
    assert_eq!(heap.stats(), stats, "a refused dealloc changed the stats");
    assert_eq!(
        heap.source().stats(),
        sim,
        "a refused dealloc touched pages"
    );
    heap.check().unwrap();
    // SAFETY: as above.
    assert_eq!(unsafe { heap.usable_size(ptr) }, Err(err), "usable_size");
    // SAFETY: as above; a refused realloc must neither allocate nor free.
    assert_eq!(unsafe { heap.realloc(ptr, 64, 16) }, Err(err), "realloc");
    assert_eq!(heap.stats(), stats, "a refused realloc changed the stats");
    assert_eq!(
        heap.source().stats(),
        sim,
        "a refused realloc touched pages"
    );
    heap.check().unwrap();
    err.kind
}

/// `refused_as` with exactly one acceptable kind.
fn refused(heap: &mut TestHeap<'_>, ptr: *mut u8, kind: FreeErrorKind) {
    refused_as(heap, ptr, &[kind]);
}

/// Allocates, writes, verifies and frees a few blocks of several classes;
/// the heap must end where it started.
fn still_works(heap: &mut TestHeap<'_>) {
    let before = heap.stats();
    let mut blocks = Vec::new();
    for i in 0..40 {
        let size = [16, 24, 100, 700][i % 4];
        let p = heap.alloc(size, 8);
        assert!(!p.is_null());
        // SAFETY: a fresh block of `size` bytes.
        unsafe { p.write_bytes(i as u8, size) };
        blocks.push((p, size, i as u8));
    }
    assert_eq!(heap.stats().held_blocks, before.held_blocks + 40);
    heap.check().unwrap();
    for (p, size, v) in blocks {
        // SAFETY: a live block of `size` bytes, freed once, not used after.
        unsafe {
            let want = [v; 700];
            assert_eq!(core::slice::from_raw_parts(p, size), &want[..size]);
            heap.dealloc(p).unwrap();
        }
    }
    let after = heap.stats();
    assert_eq!(after.held_blocks, before.held_blocks);
    assert_eq!(after.held_bytes, before.held_bytes);
    heap.check().unwrap();
}

fn free(heap: &mut TestHeap<'_>, p: *mut u8) {
    // SAFETY: the callers pass live blocks of `heap` that they do not use
    // afterwards.
    unsafe { heap.dealloc(p) }.unwrap();
}

#[test]
fn null_is_ignored() {
    let pages = SimPages::new();
    let mut heap = Heap::new(&pages, config()).unwrap();
    free(&mut heap, core::ptr::null_mut());
    // SAFETY: null is never a block.
    let r = unsafe { free_remote(&pages, heap.geometry(), core::ptr::null_mut()) };
    assert_eq!(r, Ok(()));
    assert_eq!(heap.stats(), Stats::ZERO);
}

#[test]
fn pointers_never_handed_out_are_not_ours() {
    let pages = SimPages::new();
    let mut heap = Heap::new(&pages, config()).unwrap();
    let mut local = [0u64; 4];
    // Nothing mapped yet.
    refused(&mut heap, (&raw mut local).cast(), NotOurs);
    assert_eq!(heap.stats(), Stats::ZERO);

    // With a SuperSlab in the fast path's cache.
    let keep = heap.alloc(32, 8);
    assert!(!keep.is_null());
    refused(&mut heap, (&raw mut local).cast(), NotOurs);
    refused(
        &mut heap,
        (&raw mut local).cast::<u8>().wrapping_add(8),
        NotOurs,
    );
    // Only SuperSlabs are mapped, and each covers its whole aligned window,
    // so a system allocation can never share a window with one.
    let boxed = Box::into_raw(Box::new([7u64; 4]));
    refused(&mut heap, boxed.cast(), NotOurs);
    refused(&mut heap, boxed.cast::<u8>().wrapping_add(16), NotOurs);
    // SAFETY: `boxed` came from `Box::into_raw` and was only inspected.
    let back = unsafe { Box::from_raw(boxed) };
    assert_eq!(*back, [7; 4], "the heap wrote to a foreign allocation");
    assert_eq!(local, [0; 4], "the heap wrote to a foreign allocation");

    // A block of another page source's heap is not ours either.
    let other_pages = SimPages::new();
    let mut other = Heap::new(&other_pages, config()).unwrap();
    let q = other.alloc(32, 8);
    refused(&mut heap, q, NotOurs);
    free(&mut other, q);

    still_works(&mut heap);
    free(&mut heap, keep);
    heap.check().unwrap();
}

#[test]
fn superslab_header_is_not_allocated() {
    let pages = SimPages::new();
    let mut heap = Heap::new(&pages, config()).unwrap();
    let p = heap.alloc(16, 8);
    let geo = *heap.geometry();
    let base = p as usize & geo.superslab_mask();
    let header = geo.header_bytes as usize;
    assert!(p as usize - base >= header, "a block inside the header");
    for off in [8, 16, 24, 64, (header / 2) & !15, header - 16, header - 1] {
        refused(&mut heap, p.with_addr(base + off), NotAllocated);
    }
    // The SuperSlab's first byte: a SuperSlab-aligned pointer is taken for a
    // large block or for nothing (`locate`), so it is reported as not ours
    // although the page source did hand it out.
    refused_as(&mut heap, p.with_addr(base), &[NotOurs, NotAllocated]);
    still_works(&mut heap);
    free(&mut heap, p);
}

#[test]
#[cfg_attr(
    feature = "hardened",
    ignore = "pins block sizes and placement to the request size classes; hardened blocks also hold their canary (hardened.rs)"
)]
fn padding_before_a_slabs_first_block_is_not_allocated() {
    let pages = SimPages::new();
    let mut heap = Heap::new(&pages, config()).unwrap();
    // The first slab of a fresh SuperSlab starts after the header, rounded up
    // to the class's natural alignment (512 here), leaving padding.
    let p = heap.alloc(512, 8);
    let geo = *heap.geometry();
    let base = p as usize & geo.superslab_mask();
    let header = geo.header_bytes as usize;
    let start = p as usize - base;
    assert!(
        start > header && start % 512 == 0,
        "start {start}, header {header}"
    );
    refused(&mut heap, p.with_addr(base + header), NotAllocated);
    refused(&mut heap, p.wrapping_sub(16), NotAllocated);
    free(&mut heap, p);
    still_works(&mut heap);
}

#[test]
fn interior_pointers_of_small_blocks() {
    let pages = SimPages::new();
    let mut heap = Heap::new(&pages, config()).unwrap();
    let sizes: &[usize] = if cfg!(miri) {
        &[16, 32, 48, 256, 320, 896]
    } else {
        &[16, 32, 48, 256, 320, 896, 4000, 100_000]
    };
    let mut blocks = Vec::new();
    for &size in sizes {
        let p = heap.alloc(size, 8);
        assert!(!p.is_null());
        // SAFETY: a live block.
        let usable = unsafe { heap.usable_size(p) }.unwrap();
        assert!(usable >= size);
        let offsets: &[usize] = if cfg!(miri) {
            &[1, 8, usable - 1]
        } else {
            &[1, 8, 15, usable / 2 + 1, usable - 16, usable - 1]
        };
        for &off in offsets {
            if off != 0 {
                refused(&mut heap, p.wrapping_add(off), Interior);
            }
        }
        blocks.push(p);
    }
    still_works(&mut heap);
    for p in blocks {
        free(&mut heap, p);
    }
    assert_eq!(heap.stats().held_blocks, 0);
    heap.check().unwrap();
}

#[test]
fn interior_and_header_pointers_of_large_blocks() {
    let pages = SimPages::new();
    let mut heap = Heap::new(&pages, config()).unwrap();
    let geo = *heap.geometry();
    let size = geo.max_slab_size() + 1 + 3 * 4096;
    let l = heap.alloc(size, 16);
    assert!(!l.is_null());
    assert_eq!(heap.stats().large_count, 1);
    // SAFETY: a live block.
    let usable = unsafe { heap.usable_size(l) }.unwrap();
    assert!(usable >= size);
    // All of these lie in the block's first SuperSlab-sized window.
    assert!(l as usize + usable - (l as usize & geo.superslab_mask()) <= geo.superslab_size());
    for off in [1, 8, 16, 4096, size / 2, size - 1, usable - 1] {
        refused(&mut heap, l.wrapping_add(off), Interior);
    }
    // The block's header, before the user pointer.
    let base = l as usize & geo.superslab_mask();
    for addr in [base + 8, base + 16, l as usize - 16] {
        refused(&mut heap, l.with_addr(addr), NotAllocated);
    }
    still_works(&mut heap);
    free(&mut heap, l);
    assert_eq!(heap.stats().large_count, 0);
    assert_eq!(pages.mapped_bytes(), heap.stats().mapped_bytes);
}

#[test]
#[cfg_attr(
    feature = "hardened",
    ignore = "pins block sizes and placement to the request size classes; hardened blocks also hold their canary (hardened.rs)"
)]
fn memory_beyond_the_bump_pointer_is_not_allocated() {
    let pages = SimPages::new();
    let mut heap = Heap::new(&pages, config()).unwrap();
    let geo = *heap.geometry();
    let p = heap.alloc(64, 8);
    let q = heap.alloc(64, 8);
    assert_eq!(q as usize, p as usize + 64, "blocks are carved in order");
    // Carved onto the free list (a refill carves the rest of its page,
    // `carve_batch`) but never handed out: a free block, so a double free.
    for k in [2, 3, 7] {
        refused(&mut heap, p.wrapping_add(64 * k), DoubleFree);
    }
    // Past that page, beyond the bump pointer: no block at all.
    let page_end = (q as usize + 64).next_multiple_of(4096);
    for k in [0, 1, 5] {
        refused(&mut heap, p.with_addr(page_end + 64 * k), NotAllocated);
    }
    // A unit no slab has taken yet.
    let base = p as usize & geo.superslab_mask();
    let last_unit = base + (geo.units as usize - 1) * geo.unit_size();
    refused(&mut heap, p.with_addr(last_unit + 64), NotAllocated);
    // Once handed out, the same address is a block.
    let r = heap.alloc(64, 8);
    assert_eq!(r as usize, p as usize + 128);
    free(&mut heap, r);
    free(&mut heap, q);
    free(&mut heap, p);
    still_works(&mut heap);
}

#[test]
fn double_free_on_the_slab_free_list() {
    let pages = SimPages::new();
    let mut heap = Heap::new(&pages, config()).unwrap();
    let keep = heap.alloc(32, 8);
    let p = heap.alloc(32, 8);
    let ahead = heap.stats().free_blocks; // the rest of the refill's page
    free(&mut heap, p);
    assert_eq!(heap.stats().free_blocks, ahead + 1);
    refused(&mut heap, p, DoubleFree);
    refused(&mut heap, p, DoubleFree);
    // The block is still usable exactly once (the free list is LIFO).
    let again = heap.alloc(32, 8);
    assert_eq!(again, p);
    free(&mut heap, again);
    refused(&mut heap, again, DoubleFree);
    still_works(&mut heap);
    free(&mut heap, keep);
    heap.check().unwrap();
}

#[test]
fn double_free_of_many_blocks_before_and_after_a_flush() {
    let pages = SimPages::new();
    let mut heap = Heap::new(&pages, config()).unwrap();
    // `keep` holds the slab, so freed blocks stay on its free list.
    let keep = heap.alloc(16, 8);
    let blocks: Vec<_> = (0..192).map(|_| heap.alloc(16, 8)).collect();
    let ahead = heap.stats().free_blocks; // the rest of the refill's page
    for &p in &blocks {
        free(&mut heap, p);
    }
    assert_eq!(heap.stats().free_blocks, ahead + blocks.len());
    // (Every block natively; a sample under Miri.)
    let step = if cfg!(miri) { 5 } else { 1 };
    for &p in blocks.iter().step_by(step) {
        refused(&mut heap, p, DoubleFree);
    }
    // A flush gives the units of the slabs that emptied back (only `keep`'s
    // slab stays): blocks there are still double frees, the others no
    // block at all any more.
    heap.flush();
    let mask = heap.geometry().superslab_mask();
    let unit = heap.geometry().unit_size();
    let slab_of = |p: *mut u8| (p as usize & mask, (p as usize & !mask) / unit);
    for &p in blocks.iter().step_by(7) {
        let want = if slab_of(p) == slab_of(keep) {
            DoubleFree
        } else {
            NotAllocated
        };
        refused(&mut heap, p, want);
    }
    still_works(&mut heap);
    free(&mut heap, keep);
}

#[test]
fn double_free_after_the_slab_or_superslab_went_back() {
    // A slab that holds nothing stays assigned to its class (so a free and
    // an allocation in a loop do not remake it): a second free there is
    // still a double free. Once a flush gives its units back, and once its
    // SuperSlab is released, the memory is no block at all, which is what
    // the error says (the tag that marked the block free is not consulted
    // for memory that is not in a slab).
    let pages = SimPages::new();
    let mut heap = Heap::new(&pages, config()).unwrap();
    let p = heap.alloc(64, 8);
    free(&mut heap, p);
    // (The current slab pins its SuperSlab until a flush.)
    assert_eq!(heap.stats().superslabs_retained, 0);
    refused(&mut heap, p, DoubleFree);
    heap.flush();
    assert_eq!(heap.stats().superslabs_retained, 1);
    refused(&mut heap, p, NotAllocated);

    let pages = SimPages::new();
    let mut heap = Heap::new(&pages, config_with(|c| c.retain = 0)).unwrap();
    let p = heap.alloc(64, 8);
    free(&mut heap, p);
    refused(&mut heap, p, DoubleFree);
    heap.flush();
    assert_eq!(pages.mapped_bytes(), 0);
    refused(&mut heap, p, NotOurs);
    still_works(&mut heap);
}

#[test]
fn double_free_of_a_large_block() {
    let pages = SimPages::new();
    let mut heap = Heap::new(&pages, config()).unwrap();
    let size = heap.geometry().max_slab_size() + 1;
    let l = heap.alloc(size, 16);
    assert_eq!(pages.live_regions(), 1);
    free(&mut heap, l);
    assert_eq!(pages.live_regions(), 0);
    // The block's region went straight back to the page source, so the
    // address lies in no live region: "not ours" is all anyone can say (the
    // address might even be mapped again and be a new, live block).
    refused(&mut heap, l, NotOurs);
    still_works(&mut heap);
}

#[test]
fn double_free_via_usable_size_and_realloc() {
    let pages = SimPages::new();
    let mut heap = Heap::new(&pages, config()).unwrap();
    let keep = heap.alloc(100, 8);
    let p = heap.alloc(100, 8);
    free(&mut heap, p);
    let want = FreeError {
        ptr: p as usize,
        kind: DoubleFree,
    };
    let before = heap.stats();
    // SAFETY: `p` is freed; both calls must refuse it without using it.
    unsafe {
        assert_eq!(heap.usable_size(p), Err(want));
        assert_eq!(heap.realloc(p, 200, 8), Err(want));
        assert_eq!(heap.realloc(p, 50, 8), Err(want));
        assert_eq!(heap.realloc(p, 100_000_000, 8), Err(want));
    }
    assert_eq!(heap.stats(), before);
    heap.check().unwrap();
    free(&mut heap, keep);
}

/// Without `hardened`, a freed block carries its "free" mark in its second
/// word; if the application overwrites it (a use after free) a later double
/// free looks like a valid free. That case is out of the cheap check's reach
/// and only the `hardened` tail word, at the block's end, catches it.
#[cfg(feature = "hardened")]
#[test]
fn hardened_double_free_after_the_block_was_overwritten() {
    let pages = SimPages::new();
    let mut heap = Heap::new(&pages, config()).unwrap();
    let keep = heap.alloc(32, 8);
    let p = heap.alloc(32, 8);
    free(&mut heap, p);
    // `p` is the only free block of its slab, so its link is already null
    // and zeroing its first 16 bytes only destroys the free mark.
    // SAFETY: the block's memory stays mapped (the SuperSlab holds `keep`);
    // this is the use after free under test.
    unsafe { p.write_bytes(0, 16) };
    // The tail word still says `p` is free: the second free is refused...
    // SAFETY: as above; the heap must refuse it.
    let err = unsafe { heap.dealloc(p) }.unwrap_err();
    assert_eq!((err.ptr, err.kind), (p as usize, DoubleFree));
    // ...and the invariant check names the overwritten block.
    let bad = heap.check().unwrap_err();
    assert_eq!((bad.what, bad.at), ("free block tag", p as usize));
    // Handing `p` out again would trust memory the application wrote after
    // freeing it: the heap stops with a clear message instead.
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| heap.alloc(32, 8)));
    let msg = r.expect_err("an overwritten free block was handed out");
    let msg = msg.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.contains("heap corruption"), "{msg}");
    assert!(msg.contains(&format!("{:#x}", p as usize)), "{msg}");
    let _ = keep;
    // The heap stopped mid-allocation; it is not used (or dropped) again.
    std::mem::forget(heap);
}

/// With `hardened`, `dealloc` may be given any pointer, including one deep
/// inside a large block (beyond its first SuperSlab-sized window, where the
/// address masks to a SuperSlab boundary inside the block's body).
#[cfg(feature = "hardened")]
#[test]
fn hardened_interior_pointers_deep_in_large_blocks() {
    let pages = SimPages::new();
    let mut heap = Heap::new(&pages, config()).unwrap();
    let geo = *heap.geometry();
    let ss = geo.superslab_size();
    let l = heap.alloc(3 * ss, 16);
    assert!(!l.is_null());
    let base = l as usize & geo.superslab_mask();
    for k in 1..3 {
        let window = base + k * ss;
        refused(&mut heap, l.with_addr(window), Interior);
        refused(&mut heap, l.with_addr(window + 64), Interior);
    }
    // A block aligned to the SuperSlab size has its header below it, so
    // even its first window is body.
    let a = heap.alloc(4096, ss);
    assert_eq!(a as usize % ss, 0);
    refused(&mut heap, a.wrapping_add(16), Interior);
    free(&mut heap, a);
    free(&mut heap, l);
    assert_eq!(pages.mapped_bytes(), 0);
}

#[test]
fn uncarved_memory_freed_by_a_non_owner_is_refused() {
    // `free_remote` (and another heap's `dealloc`, which forwards to it)
    // cannot read the owner's bump pointer, but must still not accept
    // memory that was never handed out: otherwise the owner's collect
    // counts a block that the application never held.
    let pages = SimPages::new();
    let mut heap = Heap::new(&pages, config()).unwrap();
    let geo = *heap.geometry();
    let p = heap.alloc(64, 8);
    let uncarved = p.wrapping_add(64 * 2);
    let before = heap.stats();
    // SAFETY: `uncarved` lies inside a slab of a live SuperSlab but is no
    // block; a correct `free_remote` only inspects it.
    let r = unsafe { free_remote(&pages, &geo, uncarved) };
    assert!(
        matches!(
            r,
            Err(FreeError {
                kind: NotAllocated | DoubleFree,
                ..
            })
        ),
        "free_remote of never-allocated memory: {r:?}"
    );
    let mut other = Heap::new(&pages, config()).unwrap();
    // SAFETY: as above.
    let r = unsafe { other.dealloc(uncarved.wrapping_add(64)) };
    assert!(
        matches!(
            r,
            Err(FreeError {
                kind: NotAllocated | DoubleFree,
                ..
            })
        ),
        "another heap's dealloc of never-allocated memory: {r:?}"
    );
    assert_eq!(heap.stats(), before);
    assert_eq!(heap.stats().pending_remote, 0);
    heap.collect();
    heap.check().unwrap();
    free(&mut heap, p);
}

#[test]
fn out_of_memory_on_a_fresh_heap() {
    let pages = SimPages::new();
    let mut heap = Heap::new(&pages, config()).unwrap();
    let large = heap.geometry().max_slab_size() + 1;
    pages.fail_all_maps(true);
    for (size, align) in [(16, 8), (0, 1), (700, 64), (large, 16), (100, 1 << 20)] {
        assert!(heap.alloc(size, align).is_null(), "alloc({size}, {align})");
        assert!(heap.alloc_zeroed(size, align).is_null());
        // SAFETY: a null pointer reallocs as an allocation.
        let r = unsafe { heap.realloc(core::ptr::null_mut(), size, align) };
        assert_eq!(r, Ok(core::ptr::null_mut()));
        assert_eq!(heap.stats(), Stats::ZERO);
        heap.check().unwrap();
    }
    assert!(pages.stats().failed_maps > 0);
    assert_eq!(pages.mapped_bytes(), 0);
    pages.fail_all_maps(false);
    still_works(&mut heap);
    let l = heap.alloc(large, 16);
    assert!(!l.is_null());
    free(&mut heap, l);
}

#[test]
fn out_of_memory_with_a_superslab_in_use() {
    let pages = SimPages::new();
    let mut heap = Heap::new(&pages, config()).unwrap();
    let geo = *heap.geometry();
    let first = heap.alloc(16, 8);
    assert_eq!(heap.stats().superslabs_mapped, 1);
    // No more memory from the page source: the mapped SuperSlab still
    // serves every class it has room for, then allocation fails cleanly.
    pages.set_byte_budget(Some(pages.mapped_bytes()));
    let size = if cfg!(miri) { 256 } else { 4096 };
    let other = heap.alloc(size, 8);
    assert!(!other.is_null(), "a new class needs no new SuperSlab");
    let large = heap.alloc(geo.max_slab_size() + 1, 16);
    assert!(large.is_null());
    let mut blocks = vec![first, other];
    loop {
        let p = heap.alloc(size, 8);
        if p.is_null() {
            break;
        }
        blocks.push(p);
        assert!(blocks.len() <= geo.superslab_size() / size, "never ran out");
    }
    assert!(blocks.len() > geo.superslab_size() / size / 2);
    let s = heap.stats();
    assert_eq!(s.held_blocks, blocks.len());
    assert_eq!(s.superslabs_mapped, 1);
    assert_eq!(s.mapped_bytes, pages.mapped_bytes());
    heap.check().unwrap();
    // Realloc that needs memory fails and leaves the block as it was.
    // SAFETY: `other` is live and `size` bytes long.
    unsafe {
        other.write_bytes(0x5C, size);
        assert_eq!(heap.realloc(other, 2 * size, 8), Ok(core::ptr::null_mut()));
        assert!(core::slice::from_raw_parts(other, size)
            .iter()
            .all(|&b| b == 0x5C));
        assert_eq!(heap.usable_size(other), Ok(size));
    }
    assert_eq!(heap.stats(), s);
    // Freed blocks are reusable while the budget holds.
    let p = blocks.pop().unwrap();
    free(&mut heap, p);
    assert_eq!(heap.alloc(size, 8), p);
    blocks.push(p);
    // Lift the budget: allocation maps again.
    pages.set_byte_budget(None);
    let more = heap.alloc(size, 8);
    assert!(!more.is_null());
    assert_eq!(heap.stats().superslabs_mapped, 2);
    blocks.push(more);
    for p in blocks {
        free(&mut heap, p);
    }
    heap.check().unwrap();
    heap.trim();
    assert_eq!(pages.mapped_bytes(), 0);
}

#[test]
#[cfg_attr(
    feature = "hardened",
    ignore = "pins block sizes and placement to the request size classes; hardened blocks also hold their canary (hardened.rs)"
)]
fn size_zero_gets_unique_freeable_blocks() {
    let pages = SimPages::new();
    let mut heap = Heap::new(&pages, config()).unwrap();
    let mut blocks = Vec::new();
    for i in 0..32 {
        let align = [1, 8, 16, 64, 4096][i % 5];
        let p = if i % 2 == 0 {
            heap.alloc(0, align)
        } else {
            heap.alloc_zeroed(0, align)
        };
        assert!(!p.is_null());
        assert_eq!(p as usize % align, 0);
        // SAFETY: a live block.
        let usable = unsafe { heap.usable_size(p) }.unwrap();
        if align <= 16 {
            // (A large block, for alignments beyond a slab unit, may have no
            // usable byte at all: its pointer then ends its mapping.)
            assert!(usable >= 16, "{usable}");
        }
        blocks.push(p);
    }
    let mut sorted = blocks.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), blocks.len(), "size-0 blocks must be unique");
    assert_eq!(heap.stats().held_blocks, blocks.len());
    for p in blocks {
        free(&mut heap, p);
    }
    assert_eq!(heap.stats().held_blocks, 0);
    heap.check().unwrap();
}

#[test]
fn sizes_too_large_return_null() {
    let pages = SimPages::new();
    let mut heap = Heap::new(&pages, config()).unwrap();
    let keep = heap.alloc(48, 8);
    let before = heap.stats();
    let huge = [
        usize::MAX,
        usize::MAX - 4095,
        isize::MAX as usize + 1,
        isize::MAX as usize,
        isize::MAX as usize - 15,
        isize::MAX as usize - 4096,
    ];
    for size in huge {
        for align in [1, 16, 4096, 1 << 22] {
            assert!(
                heap.alloc(size, align).is_null(),
                "alloc({size:#x}, {align})"
            );
            assert!(heap.alloc_zeroed(size, align).is_null());
        }
        // SAFETY: `keep` is live; a failed realloc leaves it so.
        let r = unsafe { heap.realloc(keep, size, 16) };
        assert_eq!(r, Ok(core::ptr::null_mut()));
    }
    if !cfg!(miri) {
        // Representable, but more than any page source has.
        assert!(heap.alloc(1 << 62, 16).is_null());
    }
    assert_eq!(heap.stats(), before);
    heap.check().unwrap();
    // SAFETY: still live.
    assert_eq!(unsafe { heap.usable_size(keep) }, Ok(48));
    free(&mut heap, keep);
    still_works(&mut heap);
}

/// A request no source could place (its alignment span past isize::MAX)
/// is refused before any mapping is tried, so it does not retire the
/// empty current slab that a real out-of-memory retry would give back
/// (found by the `core_ops` fuzz corpus).
#[test]
fn unplaceable_alignments_leave_an_empty_current_slab() {
    let pages = SimPages::new();
    let mut heap = Heap::new(&pages, config()).unwrap();
    let keep = heap.alloc(48, 8);
    let p = heap.alloc(200, 8);
    free(&mut heap, p);
    let before = heap.stats();
    assert!(
        before.free_blocks > 0,
        "the 200 B slab stays current, empty"
    );
    for align in [1usize << 62, 1 << 63] {
        for size in [16, 64, 1 << 20] {
            assert!(
                heap.alloc(size, align).is_null(),
                "alloc({size}, {align:#x})"
            );
            assert!(heap.alloc_zeroed(size, align).is_null());
        }
    }
    assert_eq!(heap.stats(), before);
    heap.check().unwrap();
    free(&mut heap, keep);
    still_works(&mut heap);
}

#[test]
fn alignments_that_are_not_powers_of_two_return_null() {
    let pages = SimPages::new();
    let mut heap = Heap::new(&pages, config()).unwrap();
    let keep = heap.alloc(48, 8);
    let before = heap.stats();
    let large = heap.geometry().max_slab_size() + 1;
    for align in [24, 48, 96, 100, 1000, 3 << 20, usize::MAX] {
        for size in [0, 1, 16, 100, 300, large] {
            assert!(heap.alloc(size, align).is_null(), "alloc({size}, {align})");
            assert!(heap.alloc_zeroed(size, align).is_null());
        }
        // SAFETY: `keep` is live; a failed realloc leaves it so.
        let r = unsafe { heap.realloc(keep, 300, align) };
        assert_eq!(r, Ok(core::ptr::null_mut()));
    }
    assert_eq!(heap.stats(), before);
    heap.check().unwrap();
    free(&mut heap, keep);
}

#[test]
fn small_alignments_that_are_not_powers_of_two_return_null() {
    // `Heap::alloc` documents null "on an invalid alignment"; alignments up
    // to 16 must be checked too, not only those that leave the fast path.
    let pages = SimPages::new();
    let mut heap = Heap::new(&pages, config()).unwrap();
    for align in [0, 3, 5, 6, 12] {
        for size in [0, 1, 16, 100, 256] {
            let p = heap.alloc(size, align);
            let z = heap.alloc_zeroed(size, align);
            for q in [p, z] {
                if !q.is_null() {
                    free(&mut heap, q);
                }
            }
            assert!(
                p.is_null() && z.is_null(),
                "alloc({size}, {align}) = {p:p}, alloc_zeroed = {z:p}"
            );
        }
    }
    assert_eq!(heap.stats().held_blocks, 0);
}

#[test]
fn pointers_below_the_first_superslab_boundary_are_not_ours() {
    // Dangling pointers of zero-sized values (`NonNull::dangling()`) and
    // other small integers mask to address 0; a fresh heap's cache of owned
    // SuperSlabs must not take them for one.
    let pages = SimPages::new();
    let mut heap = Heap::new(&pages, config()).unwrap();
    for addr in [1usize, 8, 16, 4096] {
        refused(&mut heap, addr as *mut u8, NotOurs);
    }
    let p = heap.alloc(16, 8);
    for addr in [1usize, 8, 16, 4096] {
        refused(&mut heap, addr as *mut u8, NotOurs);
    }
    free(&mut heap, p);
    heap.trim();
    // After the SuperSlab went back, its emptied cache entry matches nothing.
    refused(&mut heap, 8 as *mut u8, NotOurs);
}
