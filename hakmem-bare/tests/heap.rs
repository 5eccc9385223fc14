//! `LocalHeap` and `BareHeap`: exhaustion and recovery, reuse across size
//! classes, alignments, several regions, refused regions, init twice, the
//! out-of-memory hook, exact figures, invalid frees, several threads.

mod common;

use std::alloc::{GlobalAlloc, Layout};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

use common::{Arena, Rng};
use hakmem_bare::{BareError, BareHeap, FreeErrorKind, LocalHeap, OomCtx, BARE_CONFIG};

const KIB: usize = 1024;
const SS: usize = 16 * KIB;
/// The page of `BARE_CONFIG`'s source: an eighth of a SuperSlab.
const PAGE: usize = SS >> hakmem_bare::CHUNK_PAGES_SHIFT;

fn layout(size: usize, align: usize) -> Layout {
    Layout::from_size_align(size, align).unwrap()
}

/// A heap over `arena`.
fn heap_over(arena: &Arena) -> LocalHeap {
    // SAFETY: the arena is used by nothing else and outlives the heap (every
    // test drops the heap first).
    unsafe { LocalHeap::with_region(arena.start(), arena.len(), BARE_CONFIG) }.unwrap()
}

/// Allocates `size`-byte blocks until the heap says no; checks each lies in
/// one of `arenas`, is aligned, and fills it with a tag. Returns them.
fn fill(h: &mut LocalHeap, arenas: &[&Arena], size: usize, align: usize) -> Vec<*mut u8> {
    let mut v = Vec::new();
    loop {
        let p = h.alloc(layout(size, align));
        if p.is_null() {
            break;
        }
        assert_eq!(p as usize % align, 0);
        assert!(
            arenas.iter().any(|a| a.holds(p, size)),
            "block {p:?} (+{size}) outside every region"
        );
        // SAFETY: a fresh block of `size` bytes.
        unsafe { p.write_bytes(v.len() as u8, size) };
        v.push(p);
    }
    v
}

/// Checks the tags written by `fill` and frees the blocks.
fn free_all(h: &mut LocalHeap, blocks: Vec<*mut u8>, size: usize, align: usize) {
    for (i, p) in blocks.into_iter().enumerate() {
        // SAFETY: a live block of `size` bytes that `fill` tagged.
        let bytes = unsafe { std::slice::from_raw_parts(p, size) };
        assert!(bytes.iter().all(|&b| b == i as u8), "block {i} overwritten");
        // SAFETY: a live block of ours with this layout.
        unsafe { h.dealloc(p, layout(size, align)) };
    }
}

#[test]
#[cfg_attr(
    feature = "hardened",
    ignore = "pins how many blocks fit the arena; hardened blocks also hold their canary"
)]
fn exhaustion_returns_null_and_the_heap_recovers() {
    let arena = Arena::aligned(64 * KIB, SS);
    let mut h = heap_over(&arena);
    for &size in &[16usize, 64, 200, 896, 2000, 10_000] {
        let first = fill(&mut h, &[&arena], size, 8);
        let n = first.len();
        assert!(n > 0, "{size}: nothing allocated");
        let st = h.stats();
        assert_eq!(st.live_bytes, n * size);
        assert!(st.failed_allocs > 0);
        h.core().check().unwrap();
        free_all(&mut h, first, size, 8);
        assert_eq!(h.stats().live_bytes, 0);
        assert_eq!(h.stats().heap.held_blocks, 0);
        // The same again: the heap recovered all of it.
        let again = fill(&mut h, &[&arena], size, 8);
        assert_eq!(
            again.len(),
            n,
            "{size}: {} blocks after recovery, {n} before",
            again.len()
        );
        free_all(&mut h, again, size, 8);
    }
    // Small blocks use nearly all of the 64 KiB: four SuperSlabs, each
    // losing only its 1152-byte header (and one unit's tail) to metadata.
    let v = fill(&mut h, &[&arena], 16, 16);
    assert!(
        v.len() * 16 >= 58 * KIB,
        "only {} B of 16-byte blocks",
        v.len() * 16
    );
    free_all(&mut h, v, 16, 16);
    h.trim();
    assert_eq!(h.stats().region.mapped_bytes, 0);
    drop(h);
    arena.check_guards();
}

#[test]
#[cfg_attr(
    feature = "hardened",
    ignore = "pins how many blocks fit the arena; hardened blocks also hold their canary"
)]
fn memory_is_reused_across_size_classes_and_by_large_blocks() {
    let arena = Arena::aligned(64 * KIB, SS);
    let mut h = heap_over(&arena);
    // What 512-byte blocks fill on a fresh heap.
    let fresh512 = {
        let other = Arena::aligned(64 * KIB, SS);
        let mut g = heap_over(&other);
        let v = fill(&mut g, &[&other], 512, 16);
        let n = v.len();
        free_all(&mut g, v, 512, 16);
        n
    };
    let small = fill(&mut h, &[&arena], 32, 16);
    let small_bytes = small.len() * 32;
    assert!(small_bytes >= 58 * KIB);
    free_all(&mut h, small, 32, 16);
    // Every slab of 32-byte blocks went back to its SuperSlab (the cached
    // blocks too): 512-byte blocks fill exactly what they fill on a fresh
    // heap (less than 32-byte ones: a 512 B slab spans 4 of the 15 free
    // 1 KiB units of a SuperSlab, so 3 units stay free).
    let mid = fill(&mut h, &[&arena], 512, 16);
    assert_eq!(mid.len(), fresh512);
    free_all(&mut h, mid, 512, 16);
    // Every SuperSlab goes back to the region (the retained one too, which
    // could otherwise sit where the first large block would start): large
    // blocks take it all.
    h.trim();
    assert_eq!(h.stats().region.mapped_bytes, 0);
    let big = fill(&mut h, &[&arena], 20 * KIB, 16);
    assert_eq!(big.len(), 2, "two 20 KiB blocks, each spanning two chunks");
    free_all(&mut h, big, 20 * KIB, 16);
    let whole = h.alloc(layout(60 * KIB, 16));
    assert!(!whole.is_null(), "one block over most of the region");
    // SAFETY: a live block of ours.
    unsafe { h.dealloc(whole, layout(60 * KIB, 16)) };
    // And small blocks again after that.
    let again = fill(&mut h, &[&arena], 32, 16);
    assert_eq!(again.len() * 32, small_bytes);
    free_all(&mut h, again, 32, 16);
    h.core().check().unwrap();
}

#[test]
fn alignments_up_to_and_beyond_the_superslab_size() {
    let arena = Arena::new(512 * KIB, 64 * KIB, 256);
    let mut h = heap_over(&arena);
    let mut live = Vec::new();
    for shift in 0..=16 {
        let align = 1usize << shift;
        for &size in &[1usize, 24, 100, 1000, 5000] {
            let l = layout(size, align);
            let p = h.alloc(l);
            assert!(!p.is_null(), "size {size} align {align}");
            assert_eq!(p as usize % align, 0, "size {size} align {align}");
            assert!(arena.holds(p, size));
            // SAFETY: a fresh block of `size` bytes.
            unsafe { p.write_bytes(shift as u8, size) };
            live.push((p, l));
            if align >= 16 * KIB {
                // SAFETY: a live block of ours with this layout.
                unsafe { h.dealloc(p, l) };
                live.pop();
            }
        }
        // Keep the small blocks of small alignments, so later alignments see
        // a used heap; free the rest (a block aligned to a SuperSlab or more
        // maps `size + align` bytes, see the core's large.rs: three 64 KiB
        // aligned blocks are most of this region).
        live.retain(|&(p, l)| {
            let keep = l.size() <= 100 && l.align() <= 256;
            if !keep {
                // SAFETY: a live block of ours with this layout.
                unsafe { h.dealloc(p, l) };
            }
            keep
        });
    }
    for (p, l) in live {
        // SAFETY: a live block of ours with this layout.
        unsafe { h.dealloc(p, l) };
    }
    assert_eq!(h.stats().live_bytes, 0);
    h.core().check().unwrap();
}

#[test]
fn non_contiguous_claims_are_all_used() {
    let a = Arena::aligned(32 * KIB, SS);
    let b = Arena::new(48 * KIB, SS, 512); // misaligned: two whole chunks
    let c = Arena::aligned(64 * KIB, 64 * KIB);
    let mut h = LocalHeap::new(BARE_CONFIG).unwrap();
    assert!(h.alloc(layout(8, 8)).is_null(), "no memory yet");
    // SAFETY: the arenas are used by nothing else and outlive the heap.
    unsafe {
        h.claim(a.start(), a.len()).unwrap();
        h.claim(b.start(), b.len()).unwrap();
        h.claim(c.start(), c.len()).unwrap();
    }
    assert_eq!(h.stats().region.regions, 3);
    let v = fill(&mut h, &[&a, &b, &c], 48, 16);
    for arena in [&a, &b, &c] {
        assert!(
            v.iter().any(|&p| arena.holds(p, 48)),
            "a region was never used"
        );
    }
    // 2 + 2 + 3 SuperSlabs of 48-byte blocks: the first two regions keep
    // their page bitmaps inline; the third, aligned so that it has no slack
    // before its first boundary, keeps them in its last page, so its last
    // chunk serves large blocks only. The second, 512 B past a page, loses
    // a page to rounding inwards (`PAGE - 512` before, 512 after).
    assert_eq!(h.stats().heap.superslabs_mapped, 7);
    assert_eq!(
        h.stats().region.managed_bytes,
        (32 + 48 + 64) * KIB - 2 * PAGE
    );
    free_all(&mut h, v, 48, 16);
    // No region holds 80 KiB; the largest, 64 KiB, holds one block of all
    // but its bitmaps' page (and the block's header).
    assert!(h.alloc(layout(80 * KIB, 8)).is_null());
    let most = 64 * KIB - PAGE - KIB;
    let big = h.alloc(layout(most, 8));
    assert!(c.holds(big, most));
    // SAFETY: a live block of ours.
    unsafe { h.dealloc(big, layout(most, 8)) };
    drop(h);
    for arena in [a, b, c] {
        arena.check_guards();
    }
}

#[test]
fn tiny_misaligned_and_zero_length_regions() {
    let arena = Arena::aligned(64 * KIB, SS);
    let mut h = LocalHeap::new(BARE_CONFIG).unwrap();
    let s = arena.start();
    // SAFETY: refused claims write nothing; the accepted one is ours alone.
    unsafe {
        assert_eq!(h.claim(s, 0), Err(BareError::ZeroLength));
        assert_eq!(h.claim(s.add(3), 1), Err(BareError::TooSmall));
        assert_eq!(h.claim(s.add(3), 200), Err(BareError::TooSmall));
        // 15 KiB with no SuperSlab boundary inside: nothing fits.
        assert_eq!(h.claim(s.add(512), 15 * KIB), Err(BareError::TooSmall));
        // A boundary with 512 B after it: less than the smallest large block.
        assert_eq!(
            h.claim(s.add(SS - 4 * KIB), 4 * KIB + 512),
            Err(BareError::TooSmall)
        );
    }
    assert!(arena.untouched(), "a refused region was written");
    // 7 KiB after a boundary (6 KiB of whole 2 KiB pages, 2 KiB before
    // it): no SuperSlab, but large blocks fit.
    // SAFETY: ours alone, outlives the heap.
    let got = unsafe { h.claim(s.add(SS - 3 * KIB + 5), 10 * KIB) }.unwrap();
    assert_eq!(PAGE, 2 * KIB);
    assert_eq!(got, 8 * KIB);
    assert!(h.alloc(layout(16, 8)).is_null(), "no room for a SuperSlab");
    let p = h.alloc(layout(5000, 8));
    assert!(!p.is_null());
    assert_eq!(
        p as usize & !(SS - 1),
        s as usize + SS,
        "after the boundary"
    );
    assert!(arena.holds(p, 5000));
    // SAFETY: a fresh block of 5000 bytes.
    unsafe { p.write_bytes(1, 5000) };
    assert!(h.alloc(layout(5000, 8)).is_null());
    // SAFETY: a live block of ours.
    unsafe { h.dealloc(p, layout(5000, 8)) };
    drop(h);
    arena.check_guards();
}

#[test]
fn init_twice_is_refused_and_changes_nothing() {
    let a = Arena::aligned(64 * KIB, SS);
    let b = Arena::aligned(64 * KIB, SS);
    let heap = BareHeap::empty();
    let l = layout(100, 8);
    // SAFETY: before init every allocation is null.
    assert!(unsafe { heap.alloc(l) }.is_null());
    assert!(heap.stats().is_none());
    // SAFETY: refused.
    let r = unsafe { heap.claim(a.start(), a.len()) };
    assert_eq!(r, Err(BareError::NotInitialized));
    // A refused init leaves the heap uninitialised.
    // SAFETY: refused.
    let r = unsafe { heap.init(a.start(), 0) };
    assert_eq!(r, Err(BareError::ZeroLength));
    assert!(!heap.is_initialized());
    // SAFETY: the arena is ours alone and outlives the heap.
    unsafe { heap.init(a.start(), a.len()) }.unwrap();
    // SAFETY: a valid layout.
    let p = unsafe { heap.alloc(l) };
    assert!(a.holds(p, 100));
    // SAFETY: a fresh block.
    unsafe { p.write_bytes(7, 100) };
    let before = heap.stats().unwrap();
    // SAFETY: refused (and so not written).
    let r = unsafe { heap.init(b.start(), b.len()) };
    assert_eq!(r, Err(BareError::AlreadyInitialized));
    assert!(b.untouched());
    assert_eq!(heap.stats().unwrap(), before);
    // SAFETY: the block is still live and ours.
    assert!(unsafe { std::slice::from_raw_parts(p, 100) }
        .iter()
        .all(|&x| x == 7));
    // SAFETY: live, this layout.
    unsafe { heap.dealloc(p, l) };
    assert_eq!(heap.stats().unwrap().live_bytes, 0);
    // `claim` is how more memory comes in.
    // SAFETY: the arena is ours alone and outlives the heap.
    assert_eq!(unsafe { heap.claim(b.start(), b.len()) }, Ok(64 * KIB));
    assert_eq!(heap.stats().unwrap().region.regions, 2);
    drop(heap);
}

static SPARE: AtomicPtr<u8> = AtomicPtr::new(std::ptr::null_mut());
static SPARE_LEN: AtomicUsize = AtomicUsize::new(0);
static HOOK_CALLS: AtomicUsize = AtomicUsize::new(0);

/// Claims the spare arena once; then says there is nothing more.
fn claim_spare(ctx: &mut OomCtx<'_>, l: Layout) -> bool {
    HOOK_CALLS.fetch_add(1, Ordering::Relaxed);
    assert!(l.size() > 0);
    let p = SPARE.swap(std::ptr::null_mut(), Ordering::Relaxed);
    if p.is_null() {
        return false;
    }
    let before = ctx.region_stats().regions;
    // SAFETY: the spare arena is used by nothing else and outlives the heap.
    let got = unsafe { ctx.claim(p, SPARE_LEN.load(Ordering::Relaxed)) };
    assert!(got.is_ok());
    assert_eq!(ctx.region_stats().regions, before + 1);
    true
}

#[test]
fn oom_hook_claims_more_memory_and_the_retry_succeeds() {
    let a = Arena::aligned(32 * KIB, SS);
    let spare = Arena::aligned(64 * KIB, SS);
    SPARE.store(spare.start(), Ordering::Relaxed);
    SPARE_LEN.store(spare.len(), Ordering::Relaxed);
    let heap = BareHeap::new(BARE_CONFIG, Some(claim_spare));
    // SAFETY: the arena is ours alone and outlives the heap.
    unsafe { heap.init(a.start(), a.len()) }.unwrap();
    let small = layout(24, 8);
    // SAFETY: valid layouts; blocks are freed with them below.
    unsafe {
        let keep = heap.alloc(small);
        assert!(a.holds(keep, 24));
        // 40 KiB cannot fit in 32 KiB: the hook claims the spare arena.
        let big_l = layout(40 * KIB, 8);
        let big = heap.alloc(big_l);
        assert!(!big.is_null());
        assert!(spare.holds(big, 40 * KIB));
        assert_eq!(HOOK_CALLS.load(Ordering::Relaxed), 1);
        let st = heap.stats().unwrap();
        assert_eq!(st.oom_hook_calls, 1);
        assert_eq!(st.region.regions, 2);
        assert_eq!(st.live_bytes, 24 + 40 * KIB);
        // Nothing more to give: the hook says no, the allocation is null.
        let too_big = heap.alloc(layout(64 * KIB, 8));
        assert!(too_big.is_null());
        assert_eq!(HOOK_CALLS.load(Ordering::Relaxed), 2);
        assert_eq!(heap.stats().unwrap().failed_allocs, 1);
        // realloc goes through the hook path too, and fails cleanly.
        let r = heap.realloc(keep, small, 100 * KIB);
        assert!(r.is_null());
        assert_eq!(HOOK_CALLS.load(Ordering::Relaxed), 3);
        heap.dealloc(big, big_l);
        heap.dealloc(keep, small);
    }
    assert_eq!(heap.stats().unwrap().live_bytes, 0);
    drop(heap);
}

#[test]
fn global_alloc_zeroes_reallocs_and_keeps_contents() {
    let a = Arena::aligned(128 * KIB, SS);
    let heap = BareHeap::empty();
    // SAFETY: the arena is ours alone and outlives the heap.
    unsafe { heap.init(a.start(), a.len()) }.unwrap();
    // SAFETY: valid layouts; every block freed with its layout.
    unsafe {
        for &size in &[16usize, 200, 3000, 20_000] {
            let l = layout(size, 8);
            let p = heap.alloc(l);
            p.write_bytes(0xEE, size);
            heap.dealloc(p, l);
            let z = heap.alloc_zeroed(l);
            assert!(
                std::slice::from_raw_parts(z, size).iter().all(|&b| b == 0),
                "{size}"
            );
            heap.dealloc(z, l);
        }
        // Grow from a small block to a large one and back, keeping contents.
        let mut l = layout(10, 8);
        let mut p = heap.alloc(l);
        for i in 0..10 {
            *p.add(i) = i as u8;
        }
        for &n in &[100usize, 900, 5000, 40_000, 300, 10] {
            p = heap.realloc(p, l, n);
            assert!(!p.is_null(), "realloc to {n}");
            let keep = l.size().min(n).min(10);
            for i in 0..keep {
                assert_eq!(*p.add(i), i as u8, "byte {i} after realloc to {n}");
            }
            l = layout(n, 8);
            assert_eq!(heap.stats().unwrap().live_bytes, n);
        }
        heap.dealloc(p, l);
    }
    let st = heap.stats().unwrap();
    assert_eq!(st.live_bytes, 0);
    assert_eq!(st.peak_live_bytes, 40_000);
}

#[test]
fn peak_and_live_bytes_are_exact() {
    let arena = Arena::aligned(64 * KIB, SS);
    let mut h = heap_over(&arena);
    let l = layout(1000, 8);
    let v: Vec<*mut u8> = (0..3).map(|_| h.alloc(l)).collect();
    // SAFETY: live blocks of ours with this layout.
    unsafe {
        h.dealloc(v[0], l);
        h.dealloc(v[1], l);
    }
    let p = h.alloc(layout(500, 8));
    let st = h.stats();
    assert_eq!(st.live_bytes, 1500);
    assert_eq!(st.peak_live_bytes, 3000);
    assert_eq!((st.allocs, st.frees), (4, 2));
    assert_eq!(st.heap.held_blocks, 2);
    assert!(st.region.peak_mapped_bytes >= st.region.mapped_bytes);
    // SAFETY: live blocks of ours.
    unsafe {
        h.dealloc(v[2], l);
        h.dealloc(p, layout(500, 8));
    }
    assert_eq!(h.stats().live_bytes, 0);
    assert_eq!(h.stats().peak_live_bytes, 3000);
}

#[test]
fn invalid_frees_are_reported_and_change_nothing() {
    let arena = Arena::aligned(64 * KIB, SS);
    let mut h = heap_over(&arena);
    let l = layout(64, 8);
    let p = h.alloc(l);
    let q = h.alloc(l);
    let before = h.stats();
    let mut local = 0u64;
    // SAFETY: each bad pointer is detected and nothing is changed.
    unsafe {
        let e = h.try_dealloc(p.add(8), l).unwrap_err();
        assert_eq!(e.kind, FreeErrorKind::Interior);
        let e = h.try_dealloc((&raw mut local).cast(), l).unwrap_err();
        assert_eq!(e.kind, FreeErrorKind::NotOurs);
        // An address in the region that no range covers.
        let e = h
            .try_dealloc(arena.start().add(40 * KIB + 16), l)
            .unwrap_err();
        assert_eq!(e.kind, FreeErrorKind::NotOurs);
        assert_eq!(h.stats(), before);
        h.try_dealloc(p, l).unwrap();
        let e = h.try_dealloc(p, l).unwrap_err();
        assert_eq!(e.kind, FreeErrorKind::DoubleFree);
        assert!(e.to_string().contains("double free"));
        h.dealloc(q, l);
    }
    assert_eq!(h.stats().live_bytes, 0);
    h.core().check().unwrap();
}

/// With the hardened core, a pointer into the body of a large block, past
/// its first SuperSlab, is told from a header by `FixedRegion::region_start`.
#[cfg(feature = "hardened")]
#[test]
fn hardened_refuses_pointers_into_a_large_block_body() {
    let arena = Arena::aligned(128 * KIB, SS);
    let mut h = heap_over(&arena);
    let l = layout(60 * KIB, 8);
    let p = h.alloc(l);
    assert!(!p.is_null());
    // SAFETY: a fresh block of 60 KiB; the bad frees are detected.
    unsafe {
        p.write_bytes(0, 60 * KIB);
        for off in [8, SS, 2 * SS + 100, 3 * SS] {
            let e = h.try_dealloc(p.add(off), l).unwrap_err();
            assert_eq!(e.kind, FreeErrorKind::Interior, "offset {off}");
        }
        h.dealloc(p, l);
    }
}

#[test]
#[should_panic(expected = "double free")]
fn local_heap_dealloc_panics_on_a_double_free() {
    let arena = Arena::aligned(64 * KIB, SS);
    let mut h = heap_over(&arena);
    let l = layout(64, 8);
    let p = h.alloc(l);
    // SAFETY: the second free is the bug under test; it is detected.
    unsafe {
        h.dealloc(p, l);
        h.dealloc(p, l);
    }
}

/// Random allocs, reallocs and frees of random sizes and alignments, each
/// block filled with its own byte and checked when it goes; on a null the
/// test frees some blocks and goes on. Figures must match the model.
#[test]
fn random_churn_keeps_blocks_intact_and_figures_exact() {
    let a = Arena::aligned(192 * KIB, SS);
    let b = Arena::new(100 * KIB, SS, 4 * KIB + 16);
    let mut h = heap_over(&a);
    // SAFETY: ours alone, outlives the heap.
    unsafe { h.claim(b.start(), b.len()) }.unwrap();
    let mut rng = Rng(0xDEAD_BEEF_1234_5678);
    let mut live: BTreeMap<usize, (Layout, u8)> = BTreeMap::new();
    let mut nulls = 0;
    let check = |p: usize, l: Layout, tag: u8| {
        // SAFETY: a live block of at least `l.size()` bytes, filled by us.
        let s = unsafe { std::slice::from_raw_parts(p as *const u8, l.size()) };
        assert!(s.iter().all(|&x| x == tag), "block {p:#x} overwritten");
    };
    for step in 0..20_000u32 {
        let tag = step as u8;
        let r = rng.below(100);
        if live.is_empty() || r < 50 {
            let size = match rng.below(10) {
                0 => 1000 + rng.below(30_000),
                1..=3 => 200 + rng.below(800),
                _ => 1 + rng.below(200),
            };
            let max_shift = if rng.below(20) == 0 { 15 } else { 5 };
            let align = 1 << rng.below(max_shift);
            let l = layout(size, align);
            let p = h.alloc(l);
            if p.is_null() {
                nulls += 1;
                for _ in 0..live.len() / 2 {
                    let k = *live.keys().nth(rng.below(live.len())).unwrap();
                    let (l, t) = live.remove(&k).unwrap();
                    check(k, l, t);
                    // SAFETY: live, with its layout.
                    unsafe { h.dealloc(k as *mut u8, l) };
                }
                continue;
            }
            assert_eq!(p as usize % align, 0);
            assert!(a.holds(p, size) || b.holds(p, size));
            assert!(!live.contains_key(&(p as usize)));
            // SAFETY: a fresh block.
            unsafe { p.write_bytes(tag, size) };
            live.insert(p as usize, (l, tag));
        } else if r < 65 {
            let k = *live.keys().nth(rng.below(live.len())).unwrap();
            let (l, t) = live[&k];
            check(k, l, t);
            let max = if rng.below(4) == 0 { 20_000 } else { 600 };
            let n = 1 + rng.below(max);
            // SAFETY: live, with its layout.
            let p = unsafe { h.realloc(k as *mut u8, l, n) };
            if p.is_null() {
                check(k, l, t); // untouched
                continue;
            }
            live.remove(&k);
            let keep = l.size().min(n);
            // SAFETY: the block holds `n` bytes, the first `keep` copied.
            let s = unsafe { std::slice::from_raw_parts(p, keep) };
            assert!(s.iter().all(|&x| x == t), "realloc lost contents");
            // SAFETY: as above.
            unsafe { p.write_bytes(tag, n) };
            live.insert(p as usize, (layout(n, l.align()), tag));
        } else {
            let k = *live.keys().nth(rng.below(live.len())).unwrap();
            let (l, t) = live.remove(&k).unwrap();
            check(k, l, t);
            // SAFETY: live, with its layout.
            unsafe { h.dealloc(k as *mut u8, l) };
        }
        if step % 1000 == 0 {
            h.core().check().unwrap();
            let st = h.stats();
            assert_eq!(
                st.live_bytes,
                live.values().map(|(l, _)| l.size()).sum::<usize>()
            );
            assert_eq!(st.heap.held_blocks, live.len());
        }
    }
    assert!(nulls > 0, "the churn should reach exhaustion");
    for (k, (l, t)) in std::mem::take(&mut live) {
        check(k, l, t);
        // SAFETY: live, with its layout.
        unsafe { h.dealloc(k as *mut u8, l) };
    }
    let st = h.stats();
    assert_eq!((st.live_bytes, st.heap.held_blocks), (0, 0));
    h.trim();
    assert_eq!(h.stats().region.mapped_bytes, 0);
    drop(h);
    a.check_guards();
    b.check_guards();
}

#[test]
fn threads_share_a_bare_heap() {
    let arena = Arena::aligned(512 * KIB, SS);
    let heap = BareHeap::empty();
    let heap = &heap;
    // SAFETY: the arena is ours alone and outlives every use of HEAP here.
    unsafe { heap.init(arena.start(), arena.len()) }.unwrap();
    std::thread::scope(|s| {
        for t in 0..4u64 {
            s.spawn(move || {
                let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (t + 1));
                let mut mine: Vec<(*mut u8, Layout, u8)> = Vec::new();
                for i in 0..5000u32 {
                    if mine.len() < 50 && rng.below(3) != 0 {
                        let l = layout(1 + rng.below(2000), 8);
                        // SAFETY: a valid layout.
                        let p = unsafe { heap.alloc(l) };
                        if !p.is_null() {
                            let tag = (i as u8) ^ (t as u8 * 61);
                            // SAFETY: a fresh block.
                            unsafe { p.write_bytes(tag, l.size()) };
                            mine.push((p, l, tag));
                        }
                    } else if !mine.is_empty() {
                        let (p, l, tag) = mine.swap_remove(rng.below(mine.len()));
                        // SAFETY: live, ours, filled with `tag`.
                        unsafe {
                            let s = std::slice::from_raw_parts(p, l.size());
                            assert!(s.iter().all(|&x| x == tag));
                            heap.dealloc(p, l);
                        }
                    }
                }
                for (p, l, _) in mine {
                    // SAFETY: live, ours.
                    unsafe { heap.dealloc(p, l) };
                }
            });
        }
    });
    let st = heap.stats().unwrap();
    assert_eq!((st.live_bytes, st.heap.held_blocks), (0, 0));
    assert!(st.allocs > 1000);
    heap.with(|h| h.core().check().unwrap()).unwrap();
}

/// Large `realloc` on `FixedRegion`: grows in place while the pages after
/// the block are free, shrinks in place giving its tail pages back, and
/// moves (copying) once another block sits right behind it.
#[test]
fn large_realloc_grows_and_shrinks_in_place() {
    let arena = Arena::aligned(128 * KIB, SS);
    let mut h = heap_over(&arena);
    let mapped = |h: &LocalHeap| h.stats().region.mapped_bytes;
    let a = h.alloc(layout(20 * KIB, 16));
    assert!(!a.is_null());
    // SAFETY: `a`, then each block realloc returns, is live with the size
    // last asked for; the old pointer is not used after a move.
    unsafe {
        a.write_bytes(0x5a, 20 * KIB);
        let before = mapped(&h);
        let g = h.realloc(a, layout(20 * KIB, 16), 40 * KIB);
        assert_eq!(g, a, "grown in place into the free pages after it");
        assert_eq!(mapped(&h), before + 20 * KIB);
        let s = h.realloc(g, layout(40 * KIB, 16), 17 * KIB);
        assert_eq!(s, a, "shrunk in place");
        // 2 KiB pages: the header and 20 KiB took 11 of them, the header
        // and 17 KiB take 9.
        assert_eq!(PAGE, 2 * KIB);
        assert_eq!(mapped(&h), before - 4 * KIB, "the tail pages went back");
        // A second large block right behind the first (first fit from the
        // bottom: the next free chunk boundary).
        let b = h.alloc(layout(20 * KIB, 16));
        assert!(!b.is_null());
        let m = h.realloc(s, layout(17 * KIB, 16), 40 * KIB);
        assert!(!m.is_null());
        assert_ne!(m, a, "no free pages behind it: moved");
        let bytes = std::slice::from_raw_parts(m, 17 * KIB);
        assert!(bytes.iter().all(|&x| x == 0x5a), "contents kept");
        h.core().check().unwrap();
        h.dealloc(m, layout(40 * KIB, 16));
        h.dealloc(b, layout(20 * KIB, 16));
    }
    h.trim();
    assert_eq!(mapped(&h), 0);
    drop(h);
    arena.check_guards();
}

/// `Config::for_heap` (every request medium, as the bare benchmarks run
/// it): a realloc that cannot grow in place moves the block and frees the
/// old one by what it found there — the old pointer is then refused as a
/// double free, its granules serve the next request of its size, and the
/// figures stay exact. (The hardened build serves no medium block.)
#[cfg(not(feature = "hardened"))]
#[test]
fn for_heap_moving_realloc_frees_the_old_block() {
    let arena = Arena::aligned(64 * KIB, 64 * KIB);
    // SAFETY: the arena is used by nothing else and outlives the heap.
    let mut h = unsafe {
        LocalHeap::with_region(
            arena.start(),
            arena.len(),
            hakmem_bare::Config::for_heap(64 * KIB),
        )
    }
    .unwrap();
    let l = layout(100, 8);
    let a = h.alloc(l);
    // Right after `a`: `a` cannot grow in place.
    let b = h.alloc(l);
    assert!(!a.is_null() && !b.is_null());
    assert_eq!(b as usize - a as usize, 112, "medium blocks, packed");
    // SAFETY: `a` and `b` are live blocks of `l`; each is freed once
    // (`a` by the realloc that moves it).
    unsafe {
        a.write_bytes(7, 100);
        let m = h.realloc(a, l, 1000);
        assert!(!m.is_null() && m != a, "moved");
        assert!(std::slice::from_raw_parts(m, 100).iter().all(|&x| x == 7));
        h.core().check().unwrap();
        assert_eq!(h.stats().heap.held_blocks, 2);
        let e = h.try_dealloc(a, l).unwrap_err();
        assert_eq!(e.kind, FreeErrorKind::DoubleFree);
        let c = h.alloc(l);
        assert_eq!(c, a, "the old block's granules serve the next request");
        h.core().check().unwrap();
        for (p, l) in [(m, layout(1000, 8)), (b, l), (c, l)] {
            h.dealloc(p, l);
        }
    }
    h.core().check().unwrap();
    let s = h.stats();
    assert_eq!((s.heap.held_blocks, s.live_bytes), (0, 0));
}

/// `Config::for_heap` over 4 MiB: 64 SuperSlabs of 64 KiB, pages of 8 KiB
/// (an eighth of one), so the region's 512 pages keep their bitmaps inside
/// the source and none of its chunks is lost to them: each of the 64 holds
/// a block of nearly a chunk (with 256 B pages the bitmaps took the last
/// chunk's tail and only 63 fitted).
#[test]
fn for_heap_over_64_superslabs_loses_no_chunk_to_bitmaps() {
    const MIB: usize = 1 << 20;
    let arena = Arena::aligned(4 * MIB, 64 * KIB);
    // SAFETY: the arena is used by nothing else and outlives the heap.
    let mut h = unsafe {
        LocalHeap::with_region(
            arena.start(),
            arena.len(),
            hakmem_bare::Config::for_heap(4 * MIB),
        )
    }
    .unwrap();
    assert_eq!(h.stats().region.managed_bytes, 4 * MIB);
    let v = fill(&mut h, &[&arena], 62 * KIB, 8);
    assert_eq!(v.len(), 64);
    h.core().check().unwrap();
    free_all(&mut h, v, 62 * KIB, 8);
    h.trim();
    assert_eq!(h.stats().region.mapped_bytes, 0);
    drop(h);
    arena.check_guards();
}
