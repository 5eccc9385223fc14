//! `FixedRegion` as a page source: alignment, bounds, exact `contains`,
//! reuse of unmapped ranges, refused regions, several regions.

mod common;

use std::collections::BTreeMap;
use std::ptr::{self, NonNull};

use common::{Arena, Rng};
use hakmem_bare::{BareError, FixedRegion, PageSource, INLINE_PAGES, INLINE_REGIONS, MAX_REGIONS};

const PAGE: usize = 256;
const CHUNK: usize = 16 << 10;

fn source() -> FixedRegion {
    FixedRegion::new(8, 14)
}

/// Bytes of the bitmaps of a region of `pages` pages kept in the region (on
/// a 64-bit host): mapped and starts, one bit per page, and one bit per
/// chunk (64 pages) plus one.
fn bitmap_bytes(pages: usize) -> usize {
    (2 * pages.div_ceil(64) + (pages / 64 + 1).div_ceil(64)) * 8
}

/// Checks `contains` on the first and last byte of every page of the arena
/// against the set of live ranges.
fn check_contains(src: &FixedRegion, arena: &Arena, live: &BTreeMap<usize, usize>) {
    let s = arena.start() as usize;
    let from = s - PAGE;
    let to = s + arena.len() + PAGE;
    let mut a = from & !(PAGE - 1);
    while a < to {
        for addr in [a, a + PAGE - 1] {
            let inside = live
                .range(..=addr)
                .next_back()
                .is_some_and(|(&p, &n)| addr < p + n);
            assert_eq!(src.contains(addr), inside, "contains({addr:#x})");
        }
        a += PAGE;
    }
}

#[test]
fn maps_are_aligned_in_bounds_and_contains_is_exact() {
    let arena = Arena::aligned(256 << 10, CHUNK);
    let src = source();
    // SAFETY: the arena is ours alone and outlives `src`.
    let managed = unsafe { src.claim(arena.start(), arena.len()) }.unwrap();
    // 1024 pages need two bitmaps of 16 words and one chunk bitmap word (264
    // bytes): in the region, at its end (no head slack), so the last chunk
    // loses two pages.
    let meta = bitmap_bytes(1024).next_multiple_of(PAGE);
    assert_eq!(meta, 2 * PAGE);
    assert_eq!(managed, arena.len() - meta);
    let mut live = BTreeMap::new();
    for _ in 0..15 {
        let p = src.map(CHUNK, CHUNK).expect("a whole chunk is free");
        assert_eq!(p.as_ptr() as usize % CHUNK, 0);
        assert!(arena.holds(p.as_ptr(), CHUNK));
        live.insert(p.as_ptr() as usize, CHUNK);
    }
    assert!(
        src.map(CHUNK, CHUNK).is_none(),
        "the last chunk holds the bitmap"
    );
    let p = src
        .map(CHUNK - meta, CHUNK)
        .expect("all but the bitmaps' pages");
    live.insert(p.as_ptr() as usize, CHUNK - meta);
    assert!(src.map(PAGE, PAGE).is_none());
    check_contains(&src, &arena, &live);
    // Unmap every other range; contains follows.
    let addrs: Vec<usize> = live.keys().copied().step_by(2).collect();
    for a in addrs {
        let n = live.remove(&a).unwrap();
        // SAFETY: a live range of `src`, with its size.
        unsafe { src.unmap(NonNull::new(arena.start().with_addr(a)).unwrap(), n) };
    }
    check_contains(&src, &arena, &live);
    let st = src.stats();
    assert_eq!(st.mapped_bytes, live.values().sum::<usize>());
    assert_eq!(st.peak_mapped_bytes, managed);
    assert_eq!(st.failed_maps, 2);
}

#[test]
fn unmapped_ranges_are_reused_by_larger_maps_spanning_chunks() {
    let arena = Arena::aligned(8 * CHUNK, 2 * CHUNK);
    let src = source();
    // SAFETY: the arena is ours alone and outlives `src`.
    let managed = unsafe { src.claim(arena.start(), arena.len()) }.unwrap();
    assert_eq!(
        managed,
        arena.len(),
        "a 512-page region keeps its bitmap inline"
    );
    let mut c: Vec<NonNull<u8>> = (0..8).map(|_| src.map(CHUNK, CHUNK).unwrap()).collect();
    // SuperSlab-shaped maps (one chunk, chunk-aligned) go last-fit, from the top.
    for (i, p) in c.iter().enumerate() {
        assert_eq!(
            p.as_ptr() as usize,
            arena.start() as usize + (7 - i) * CHUNK
        );
    }
    c.reverse();
    assert!(src.map(CHUNK, CHUNK).is_none());
    // SAFETY: live ranges with their sizes.
    unsafe {
        src.unmap(c[2], CHUNK);
        src.unmap(c[3], CHUNK);
        src.unmap(c[5], CHUNK);
    }
    // Three chunks are free, two of them adjacent.
    assert!(src.map(3 * CHUNK, CHUNK).is_none());
    // c[5] is not 32 KiB aligned: a 32 KiB-aligned chunk goes to c[2].
    let big_aligned = src.map(CHUNK, 2 * CHUNK).unwrap();
    assert_eq!(big_aligned, c[2]);
    // SAFETY: live range with its size.
    unsafe { src.unmap(big_aligned, CHUNK) };
    // A large map spanning two former SuperSlab chunks (and a page more
    // does not fit).
    assert!(src.map(2 * CHUNK + PAGE, CHUNK).is_none());
    let big = src.map(2 * CHUNK, CHUNK).unwrap();
    assert_eq!(big, c[2]);
    assert!(src.contains(c[3].as_ptr() as usize + 5));
    // A sub-chunk map with page alignment goes to the first free page.
    let small = src.map(3 * PAGE, PAGE).unwrap();
    assert_eq!(small, c[5]);
    // Everything back, then one map of the whole region.
    // SAFETY: live ranges with their sizes.
    unsafe {
        src.unmap(big, 2 * CHUNK);
        src.unmap(small, 3 * PAGE);
        for i in [0, 1, 4, 6, 7] {
            src.unmap(c[i], CHUNK);
        }
    }
    assert_eq!(src.stats().mapped_bytes, 0);
    let all = src.map(managed, CHUNK).unwrap();
    assert_eq!(all.as_ptr(), arena.start());
    assert_eq!(src.largest_free(PAGE), 0);
    // SAFETY: live range with its size.
    unsafe { src.unmap(all, managed) };
    assert_eq!(src.largest_free(CHUNK), managed);
}

#[test]
fn misaligned_region_keeps_its_bitmap_in_the_head_and_writes_nothing_else() {
    // 1 MiB + 1000 bytes, starting 1000 bytes past a chunk boundary: the
    // bitmap (4096 pages = 512 bytes) goes in the head, before the first
    // boundary, so every whole chunk stays whole.
    let len = (1 << 20) + 1000;
    let arena = Arena::new(len, CHUNK, 1000);
    let src = source();
    // SAFETY: the arena is ours alone and outlives `src`.
    let managed = unsafe { src.claim(arena.start(), arena.len()) }.unwrap();
    let s = arena.start() as usize;
    let first_page = s.next_multiple_of(PAGE);
    let end_page = (s + len) & !(PAGE - 1);
    let pages = (end_page - first_page) / PAGE;
    let bitmap_bytes = bitmap_bytes(pages);
    let meta = bitmap_bytes.next_multiple_of(PAGE);
    assert_eq!(managed, end_page - first_page - meta);
    // Only the bitmaps were written, at the first page.
    {
        // SAFETY: the arena's bytes are initialised and ours.
        let bytes = unsafe { std::slice::from_raw_parts(arena.start(), len) };
        let off = first_page - s;
        assert!(bytes[..off].iter().all(|&b| b == common::GUARD));
        // Mapped and starts bitmaps all clear (the chunk bitmap after them
        // has every chunk free, so set bits).
        let clear = 2 * pages.div_ceil(64) * 8;
        assert!(bytes[off..off + clear].iter().all(|&b| b == 0));
        assert!(bytes[off + bitmap_bytes..]
            .iter()
            .all(|&b| b == common::GUARD));
    }
    let mut n = 0;
    while let Some(p) = src.map(CHUNK, CHUNK) {
        assert!(arena.holds(p.as_ptr(), CHUNK));
        n += 1;
    }
    // The region starts 1000 B past a boundary: 63 whole chunks, all usable.
    assert_eq!(n, (1 << 20) / CHUNK - 1, "every whole chunk is usable");
    // The partial chunks at both ends serve page-aligned maps.
    let head = src.map(PAGE, PAGE).unwrap();
    assert!(arena.holds(head.as_ptr(), PAGE));
    assert_eq!(head.as_ptr() as usize, first_page + meta);
    arena.check_guards();
}

#[test]
fn refused_regions_are_not_written() {
    let arena = Arena::new(64 << 10, CHUNK, 0);
    let src = source();
    let start = arena.start();
    // SAFETY: every claim below is refused, so nothing is written.
    unsafe {
        assert_eq!(src.claim(start, 0), Err(BareError::ZeroLength));
        assert_eq!(src.claim(ptr::null_mut(), 4096), Err(BareError::Null));
        let high = ptr::without_provenance_mut::<u8>(usize::MAX - 100);
        assert_eq!(src.claim(high, 4096), Err(BareError::Overflow));
        // Less than a page once rounded inwards.
        assert_eq!(src.claim(start.add(1), 300), Err(BareError::TooSmall));
        assert_eq!(src.claim(start.add(100), PAGE), Err(BareError::TooSmall));
        // Whole pages, but no chunk boundary inside: nothing the heap asks for
        // (every map it makes is chunk-aligned) could go there.
        assert_eq!(
            src.claim(start.add(PAGE), CHUNK - 2 * PAGE),
            Err(BareError::TooSmall)
        );
    }
    assert!(arena.untouched(), "a refused region was written");
    // SAFETY: the arena is ours alone and outlives `src`.
    unsafe {
        // A boundary and one page after it: accepted (page-sized maps only).
        let got = src.claim(start.add(CHUNK - PAGE), 2 * PAGE).unwrap();
        assert_eq!(got, 2 * PAGE);
        assert_eq!(src.claim(start.add(CHUNK), PAGE), Err(BareError::Overlap));
        assert_eq!(src.claim(start, CHUNK), Err(BareError::Overlap));
    }
    assert!(
        src.map(2 * PAGE, CHUNK).is_none(),
        "no aligned room for 512 B"
    );
    let p = src.map(PAGE, CHUNK).unwrap();
    assert_eq!(p.as_ptr() as usize, start as usize + CHUNK);
    assert!(src.map(PAGE, PAGE).is_some());
    assert!(src.map(PAGE, PAGE).is_none());
    arena.check_guards();
}

#[test]
fn min_claim_refuses_regions_that_cannot_hold_it() {
    let arena = Arena::aligned(64 << 10, CHUNK);
    let src = source().with_min_claim(1000);
    // SAFETY: refused, or ours alone.
    unsafe {
        let tail = arena.start().add(3 * CHUNK);
        assert_eq!(
            src.claim(tail.sub(PAGE), 4 * PAGE),
            Err(BareError::TooSmall)
        );
        assert_eq!(src.claim(tail.sub(PAGE), 5 * PAGE), Ok(5 * PAGE));
    }
}

#[test]
fn several_regions_up_to_the_limit() {
    let arenas: Vec<Arena> = (0..MAX_REGIONS + 1)
        .map(|_| Arena::aligned(2 * CHUNK, CHUNK))
        .collect();
    let src = source();
    let mut live = Vec::new();
    for (i, a) in arenas.iter().enumerate() {
        // SAFETY: each arena is ours alone and outlives `src`.
        let r = unsafe { src.claim(a.start(), a.len()) };
        if i < INLINE_REGIONS {
            assert_eq!(r, Ok(2 * CHUNK), "bitmaps inside the source");
        } else if i < MAX_REGIONS {
            assert_eq!(r, Ok(2 * CHUNK - PAGE), "bitmaps in the last page");
        } else {
            assert_eq!(r, Err(BareError::TooManyRegions));
            assert!(a.untouched());
        }
    }
    // Maps come from every region; none crosses from one to another.
    while let Some(p) = src.map(CHUNK, CHUNK) {
        assert!(arenas[..MAX_REGIONS]
            .iter()
            .any(|a| a.holds(p.as_ptr(), CHUNK)));
        live.push(p);
    }
    assert_eq!(
        live.len(),
        2 * INLINE_REGIONS + (MAX_REGIONS - INLINE_REGIONS)
    );
    // The rest of each region with its bitmaps at the end: a chunk less a page.
    for _ in INLINE_REGIONS..MAX_REGIONS {
        let p = src.map(CHUNK - PAGE, CHUNK).unwrap();
        assert!(arenas.iter().any(|a| a.holds(p.as_ptr(), CHUNK - PAGE)));
    }
    assert!(src.map(PAGE, PAGE).is_none(), "every page is mapped");
    for p in &live {
        assert!(src.contains(p.as_ptr() as usize + CHUNK - 1));
    }
    assert!(!src.contains(arenas[MAX_REGIONS].start() as usize));
    assert_eq!(src.stats().regions, MAX_REGIONS);
}

#[test]
#[should_panic(expected = "not a live mapped range")]
fn double_unmap_panics() {
    let arena = Arena::aligned(2 * CHUNK, CHUNK);
    let src = source();
    // SAFETY: the arena is ours alone and outlives `src`.
    unsafe { src.claim(arena.start(), arena.len()) }.unwrap();
    let p = src.map(CHUNK, CHUNK).unwrap();
    // SAFETY: a live range; the second unmap is the bug under test, which
    // the source detects before changing anything.
    unsafe {
        src.unmap(p, CHUNK);
        src.unmap(p, CHUNK);
    }
}

#[test]
#[should_panic(expected = "not a live mapped range")]
fn partial_unmap_panics() {
    let arena = Arena::aligned(2 * CHUNK, CHUNK);
    let src = source();
    // SAFETY: the arena is ours alone and outlives `src`.
    unsafe { src.claim(arena.start(), arena.len()) }.unwrap();
    let p = src.map(CHUNK, CHUNK).unwrap();
    // SAFETY: the range is live but larger: detected, nothing changes.
    unsafe { src.unmap(p, 2 * CHUNK) };
}

#[test]
#[should_panic(expected = "not a live mapped range")]
fn unmapping_two_adjacent_ranges_at_once_panics() {
    let arena = Arena::aligned(4 * CHUNK, CHUNK);
    let src = source();
    // SAFETY: the arena is ours alone and outlives `src`.
    unsafe { src.claim(arena.start(), arena.len()) }.unwrap();
    let a = src.map(4 * PAGE, PAGE).unwrap();
    let b = src.map(4 * PAGE, PAGE).unwrap();
    assert_eq!(b.as_ptr() as usize, a.as_ptr() as usize + 4 * PAGE);
    // SAFETY: two live ranges passed as one: detected, nothing changes.
    unsafe { src.unmap(a, 8 * PAGE) };
}

#[test]
fn region_start_finds_the_start_of_each_live_range() {
    let arena = Arena::aligned(8 * CHUNK, CHUNK);
    let src = source();
    // SAFETY: the arena is ours alone and outlives `src`.
    unsafe { src.claim(arena.start(), arena.len()) }.unwrap();
    let a = src.map(CHUNK + 3 * PAGE, CHUNK).unwrap();
    let b = src.map(2 * PAGE, PAGE).unwrap(); // right after `a`
    let c = src.map(CHUNK, CHUNK).unwrap(); // from the top
    let (a, b, c) = (
        a.as_ptr() as usize,
        b.as_ptr() as usize,
        c.as_ptr() as usize,
    );
    assert_eq!(b, a + CHUNK + 3 * PAGE);
    for (start, len) in [(a, CHUNK + 3 * PAGE), (b, 2 * PAGE), (c, CHUNK)] {
        for addr in [start, start + 1, start + len / 2, start + len - 1] {
            assert_eq!(src.region_start(addr), Some(start), "{addr:#x}");
        }
    }
    assert_eq!(src.region_start(b + 2 * PAGE), None, "free page");
    assert_eq!(src.region_start(arena.start() as usize - 1), None);
    // SAFETY: a live range with its size.
    unsafe {
        src.unmap(
            NonNull::new(arena.start().with_addr(a)).unwrap(),
            CHUNK + 3 * PAGE,
        )
    };
    assert_eq!(src.region_start(a + 5), None);
    assert_eq!(src.region_start(b + 5), Some(b));
}

/// Random maps and unmaps of random sizes and alignments over two regions
/// (one with an inline bitmap, one with it in the region), SuperSlab-shaped
/// ones placed from the top, the others from the bottom: every live
/// range is aligned, in bounds and disjoint from the others (each is filled
/// with its own byte and checked at unmap), and `contains` is exact.
#[test]
fn random_maps_and_unmaps_against_a_model() {
    let a = Arena::new(100 << 10, CHUNK, 3 * PAGE + 7);
    let b = Arena::aligned(512 << 10, CHUNK);
    assert!(b.len() / PAGE > INLINE_PAGES);
    let src = source();
    // SAFETY: both arenas are ours alone and outlive `src`.
    unsafe {
        src.claim(a.start(), a.len()).unwrap();
        src.claim(b.start(), b.len()).unwrap();
    }
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let mut live: BTreeMap<usize, (NonNull<u8>, usize, u8)> = BTreeMap::new();
    let mut fails = 0;
    for step in 0..4000 {
        if live.is_empty() || rng.below(100) < 55 {
            let max = if rng.below(4) == 0 { 200 } else { 64 };
            let n = 1 + rng.below(max);
            // A quarter are SuperSlab-shaped (placed from the top).
            let (size, align) = if rng.below(4) == 0 {
                (CHUNK, CHUNK)
            } else {
                (n * PAGE, PAGE << rng.below(8))
            };
            match src.map(size, align) {
                Some(p) => {
                    let addr = p.as_ptr() as usize;
                    assert_eq!(addr % align, 0);
                    assert!(a.holds(p.as_ptr(), size) || b.holds(p.as_ptr(), size));
                    if let Some((&q, &(_, m, _))) = live.range(..addr + size).next_back() {
                        assert!(q + m <= addr, "overlapping live ranges");
                    }
                    let fill = step as u8;
                    // SAFETY: a fresh live range of `size` bytes.
                    unsafe { p.as_ptr().write_bytes(fill, size) };
                    live.insert(addr, (p, size, fill));
                }
                None => fails += 1,
            }
        } else {
            let k = *live.keys().nth(rng.below(live.len())).unwrap();
            let (p, size, fill) = live.remove(&k).unwrap();
            // SAFETY: a live range of `size` bytes, written by us.
            let bytes = unsafe { std::slice::from_raw_parts(p.as_ptr(), size) };
            assert!(bytes.iter().all(|&x| x == fill), "a range was overwritten");
            // SAFETY: a live range with its size.
            unsafe { src.unmap(p, size) };
        }
        if step % 500 == 0 {
            let ranges = live.iter().map(|(&k, &(_, n, _))| (k, n)).collect();
            check_contains(&src, &a, &ranges);
            check_contains(&src, &b, &ranges);
        }
    }
    assert!(fails > 0, "the test should reach exhaustion");
    let st = src.stats();
    assert_eq!(st.mapped_bytes, live.values().map(|v| v.1).sum::<usize>());
    a.check_guards();
    b.check_guards();
}
