//! Large blocks and alignment. Paths forced: `alloc_general` → `alloc_large`
//! (a region of its own from `PageSource::map`, header at the region start,
//! or one SuperSlab below the pointer for alignments of a SuperSlab or
//! more), `free_large` → `PageSource::unmap`, aligned slab classes
//! (`class_for` with the slab start rounded to the class's natural
//! alignment), and `realloc`'s in-place paths (`resize_large_in_place`,
//! same small class) against its allocate-copy-free path; and the cache of
//! freed large regions (`cache_region`, `take_cached_region`, eviction,
//! `decommit_cached_regions`, `release_cached_regions`).

use core::ptr::NonNull;

use hakmem_core::sim::SimPages;
use hakmem_core::size_class::class_for;
use hakmem_core::{Config, Heap, PageSource};

const PAGE: usize = hakmem_core::sim::DEFAULT_PAGE_SIZE;

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

/// Writes a recognisable word at each multiple of `stride()` in
/// `[from, to)` of the block at `p`.
///
/// # Safety
/// `p` is a live block of at least `to` bytes, aligned to 8.
unsafe fn fill(p: *mut u8, from: usize, to: usize) {
    let mut off = from.next_multiple_of(stride());
    while off + 8 <= to {
        // SAFETY: inside the block, aligned (caller).
        unsafe { p.add(off).cast::<u64>().write(word(off)) };
        off += stride();
    }
}

/// Checks the words `fill` wrote in `[0, upto)`.
///
/// # Safety
/// `p` is a live block of at least `upto` bytes, aligned to 8.
unsafe fn verify(p: *mut u8, upto: usize) {
    let mut off = 0;
    while off + 8 <= upto {
        // SAFETY: inside the block, aligned (caller).
        let w = unsafe { p.add(off).cast::<u64>().read() };
        assert_eq!(w, word(off), "word at offset {off} of {upto}");
        off += stride();
    }
}

/// [`config`] with a large cache of `regions` freed regions.
fn caching(regions: usize) -> Config {
    Config {
        large_cache: regions,
        ..config()
    }
}

fn stride() -> usize {
    if cfg!(miri) {
        64
    } else {
        PAGE / 2
    }
}

fn word(off: usize) -> u64 {
    (off as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

fn free(heap: &mut Heap<&SimPages>, p: *mut u8) {
    // SAFETY: the callers pass live blocks they do not use afterwards.
    unsafe { heap.dealloc(p) }.unwrap();
}

fn usable(heap: &Heap<&SimPages>, p: *mut u8) -> usize {
    // SAFETY: the callers pass live blocks.
    unsafe { heap.usable_size(p) }.unwrap()
}

#[test]
#[cfg_attr(
    feature = "hardened",
    ignore = "pins usable sizes, mapping slack or the large cache, which hardened changes (canaries, guard pages, a cache that closes its regions: hardened.rs)"
)]
fn large_blocks_get_a_region_each_and_give_it_back() {
    let pages = SimPages::new();
    let mut heap = Heap::new(&pages, config()).unwrap();
    let geo = *heap.geometry();
    let max = geo.max_slab_size();
    let ss = geo.superslab_size();

    // The largest slab class is still a slab block.
    let top = heap.alloc(max, 16);
    assert!(!top.is_null());
    assert_eq!(heap.stats().large_count, 0);
    assert_eq!(pages.live_regions(), 1);
    free(&mut heap, top);
    heap.trim();
    assert_eq!(pages.live_regions(), 0);

    let sizes: Vec<usize> = if cfg!(miri) {
        vec![max + 1, 3 * PAGE, ss + 100, 3 * ss]
    } else {
        vec![
            max + 1,
            max + PAGE,
            1 << 20,
            ss - 200,
            3 << 20,
            (5 << 20) + 123,
        ]
    };
    let mut live = Vec::new();
    let (mut bytes, mut mapped) = (0, 0);
    for (i, &size) in sizes.iter().enumerate() {
        let before = pages.stats();
        let p = heap.alloc(size, 16);
        assert!(!p.is_null());
        assert_eq!(p as usize % 16, 0);
        let after = pages.stats();
        assert_eq!(after.live_regions, before.live_regions + 1, "size {size}");
        assert_eq!(after.map_calls, before.map_calls + 1);
        let region = after.mapped_bytes - before.mapped_bytes;
        let u = usable(&heap, p);
        assert!(u >= size);
        assert!(u - size < PAGE, "more than a page of slack: {u} for {size}");
        assert_eq!(region % PAGE, 0);
        assert!(
            region >= size && region - u <= 128,
            "region {region} for {size}"
        );
        // SAFETY: a fresh block of `size` bytes.
        unsafe { fill(p, 0, size) };
        bytes += size;
        mapped += region;
        let s = heap.stats();
        assert_eq!(s.large_count, i + 1);
        assert_eq!(s.large_bytes, bytes);
        assert_eq!(s.large_mapped_bytes, mapped);
        assert_eq!(s.held_blocks, i + 1);
        assert_eq!(s.held_bytes, bytes);
        assert_eq!(s.superslabs_mapped, 0);
        assert_eq!(s.mapped_bytes, pages.mapped_bytes());
        heap.check().unwrap();
        live.push((p, size, region));
    }
    for (p, size, region) in live {
        // SAFETY: live and `size` bytes long.
        unsafe { verify(p, size) };
        let before = pages.stats();
        free(&mut heap, p);
        let after = pages.stats();
        assert_eq!(after.live_regions, before.live_regions - 1);
        assert_eq!(after.mapped_bytes, before.mapped_bytes - region);
        bytes -= size;
        mapped -= region;
        let s = heap.stats();
        assert_eq!((s.large_bytes, s.large_mapped_bytes), (bytes, mapped));
        heap.check().unwrap();
    }
    assert_eq!(pages.live_regions(), 0);
    assert!(heap.is_unused());
}

#[test]
fn alignments_up_to_twice_the_superslab_are_honoured() {
    let pages = SimPages::new();
    let mut heap = Heap::new(&pages, config()).unwrap();
    let geo = *heap.geometry();
    let max = geo.max_slab_size();
    for shift in 5..=geo.superslab_shift + 1 {
        let align = 1usize << shift;
        let mut live: Vec<(*mut u8, usize)> = Vec::new();
        for (k, size) in [0, 1, 24, 100, 1000, align / 2, align, align + 1, max + 1]
            .into_iter()
            .enumerate()
        {
            let large_before = heap.stats().large_count;
            let p = if k % 2 == 0 {
                heap.alloc(size, align)
            } else {
                heap.alloc_zeroed(size, align)
            };
            assert!(!p.is_null(), "alloc({size}, {align})");
            assert_eq!(p as usize % align, 0, "alloc({size}, {align}) = {p:p}");
            let u = usable(&heap, p);
            assert!(u >= size, "usable {u} < {size}");
            // Served from a slab exactly when a slab class fits.
            let small = align <= geo.unit_size()
                && class_for(size, align).is_some_and(|c| c < geo.slab_classes);
            assert_eq!(
                heap.stats().large_count,
                large_before + usize::from(!small),
                "alloc({size}, {align})"
            );
            if size > 0 {
                // SAFETY: a live block of `size` bytes.
                unsafe {
                    if k % 2 == 1 {
                        assert_eq!(p.read(), 0);
                        assert_eq!(p.add(size - 1).read(), 0);
                    }
                    p.write(k as u8);
                    p.add(size - 1).write(k as u8);
                }
            }
            for &(q, qs) in &live {
                let (a, b) = (p as usize, q as usize);
                assert!(
                    a + size <= b || b + qs <= a,
                    "overlap: {p:p}+{size} and {q:p}+{qs}"
                );
            }
            live.push((p, size));
        }
        heap.check().unwrap();
        for (k, &(p, size)) in live.iter().enumerate() {
            if size > 0 {
                // SAFETY: live, `size` bytes.
                unsafe {
                    assert_eq!(p.read(), k as u8);
                    assert_eq!(p.add(size - 1).read(), k as u8);
                }
            }
            free(&mut heap, p);
        }
        let s = heap.stats();
        assert_eq!(
            (s.held_blocks, s.large_count, s.large_mapped_bytes),
            (0, 0, 0)
        );
        heap.check().unwrap();
    }
    heap.trim();
    assert_eq!(pages.mapped_bytes(), 0);
}

#[test]
#[cfg_attr(
    feature = "hardened",
    ignore = "pins usable sizes, mapping slack or the large cache, which hardened changes (canaries, guard pages, a cache that closes its regions: hardened.rs)"
)]
fn small_realloc_stays_within_its_class() {
    let pages = SimPages::new();
    let mut heap = Heap::new(&pages, config()).unwrap();
    let p = heap.alloc(20, 8);
    assert_eq!(usable(&heap, p), 32);
    // SAFETY: `p` and every block realloc returns are live; each old block
    // is used only through the pointer realloc returned.
    unsafe {
        p.write_bytes(0x11, 20);
        for size in [24, 32, 17, 16, 1, 20] {
            assert_eq!(heap.realloc(p, size, 8), Ok(p), "20 -> {size}");
            assert_eq!(usable(&heap, p), 32);
        }
        assert_eq!(heap.stats().held_bytes, 32);
        // Beyond the class: moves, content kept.
        let q = heap.realloc(p, 33, 8).unwrap();
        assert!(!q.is_null() && q != p);
        assert_eq!(usable(&heap, q), 48);
        assert!(core::slice::from_raw_parts(q, 20)
            .iter()
            .all(|&b| b == 0x11));
        assert_eq!(heap.stats().held_blocks, 1);
        assert_eq!(heap.stats().held_bytes, 48);
        // Shrinking far below the class also moves (no more than half wasted).
        q.write_bytes(0x22, 48);
        let r = heap.realloc(q, 400, 8).unwrap();
        r.write_bytes(0x33, 400);
        r.write_bytes(0x22, 48);
        let s = heap.realloc(r, 100, 8).unwrap();
        assert_ne!(s, r);
        assert_eq!(usable(&heap, s), 112);
        assert!(core::slice::from_raw_parts(s, 48)
            .iter()
            .all(|&b| b == 0x22));
        assert!(core::slice::from_raw_parts(s.add(48), 52)
            .iter()
            .all(|&b| b == 0x33));
        // A stricter alignment than the block has moves it.
        let t = heap.realloc(s, 100, 256).unwrap();
        assert_eq!(t as usize % 256, 0);
        assert!(core::slice::from_raw_parts(t, 48)
            .iter()
            .all(|&b| b == 0x22));
        assert_eq!(heap.stats().held_blocks, 1);
        heap.dealloc(t).unwrap();
    }
    assert_eq!(heap.stats().held_blocks, 0);
    heap.check().unwrap();
}

#[test]
#[cfg_attr(
    feature = "hardened",
    ignore = "pins usable sizes, mapping slack or the large cache, which hardened changes (canaries, guard pages, a cache that closes its regions: hardened.rs)"
)]
fn large_realloc_in_place_and_moving() {
    let pages = SimPages::new();
    let mut heap = Heap::new(&pages, config()).unwrap();
    let geo = *heap.geometry();
    let max = geo.max_slab_size();
    let size = if cfg!(miri) {
        3 * PAGE + 100
    } else {
        (1 << 20) + 100
    };
    let p = heap.alloc(size, 16);
    let u = usable(&heap, p);
    assert!(u > size, "no page slack to grow into");
    let sim = pages.stats();
    // SAFETY: `p` and every block realloc returns are live, each used only
    // through the pointer realloc returned.
    unsafe {
        fill(p, 0, size);
        // Growing within the mapping's page slack: in place.
        assert_eq!(heap.realloc(p, u, 16), Ok(p));
        fill(p, size, u);
        assert_eq!(heap.stats().large_bytes, u);
        assert_eq!(heap.stats().held_bytes, u);
        // Shrinking to more than half: in place, the figures follow.
        let half = u / 2 + 1;
        assert!(half > max);
        assert_eq!(heap.realloc(p, half, 16), Ok(p));
        assert_eq!(heap.stats().large_bytes, half);
        assert_eq!(usable(&heap, p), u, "the mapping stays");
        verify(p, half);
        // Growing back within the mapping: in place again.
        assert_eq!(heap.realloc(p, u - 1, 16), Ok(p));
        assert_eq!(heap.stats().large_bytes, u - 1);
        fill(p, half, u - 1);
        let s = pages.stats();
        assert_eq!(
            (s.map_calls, s.unmap_calls),
            (sim.map_calls, sim.unmap_calls)
        );
        verify(p, u - 1);

        // Shrinking to less than half moves to a smaller mapping.
        let small = u / 2 - PAGE;
        let q = heap.realloc(p, small, 16).unwrap();
        assert!(!q.is_null() && q != p);
        verify(q, small);
        let s = heap.stats();
        assert_eq!((s.large_count, s.large_bytes), (1, small));
        assert_eq!(pages.live_regions(), 1);
        assert_eq!(s.large_mapped_bytes, pages.mapped_bytes());
        assert!(usable(&heap, q) < u);

        // Growing past the mapping moves, content kept.
        let r = heap.realloc(q, u + 1, 16).unwrap();
        assert!(!r.is_null() && r != q);
        verify(r, small);
        assert_eq!(heap.stats().large_bytes, u + 1);

        // Shrinking into the slab classes moves to a slab block.
        let t = heap.realloc(r, max, 16).unwrap();
        assert!(!t.is_null() && t != r);
        verify(t, max);
        let s = heap.stats();
        assert_eq!((s.large_count, s.large_bytes, s.held_blocks), (0, 0, 1));
        // And back out again.
        let v = heap.realloc(t, max + 1, 16).unwrap();
        verify(v, max);
        assert_eq!(heap.stats().large_count, 1);
        heap.dealloc(v).unwrap();
    }
    assert!(heap.is_unused());
    heap.check().unwrap();
    heap.trim();
    assert_eq!(pages.mapped_bytes(), 0);
}

#[test]
fn superslab_aligned_large_block_resizes_in_place() {
    let pages = SimPages::new();
    let mut heap = Heap::new(&pages, config()).unwrap();
    let geo = *heap.geometry();
    let ss = geo.superslab_size();
    let size = ss + 3 * PAGE;
    let p = heap.alloc(size, ss);
    assert_eq!(p as usize % ss, 0);
    let u = usable(&heap, p);
    // SAFETY: `p` is live; realloc's results replace it.
    unsafe {
        fill(p, 0, size);
        assert_eq!(heap.realloc(p, u, ss), Ok(p));
        assert_eq!(heap.realloc(p, u / 2 + 1, ss), Ok(p));
        assert_eq!(heap.stats().large_bytes, u / 2 + 1);
        verify(p, u / 2 + 1);
        let q = heap.realloc(p, 2 * u, ss).unwrap();
        assert_eq!(q as usize % ss, 0);
        verify(q, u / 2 + 1);
        heap.dealloc(q).unwrap();
    }
    assert_eq!(pages.mapped_bytes(), 0);
}

#[test]
#[cfg_attr(
    feature = "hardened",
    ignore = "pins usable sizes, mapping slack or the large cache, which hardened changes (canaries, guard pages, a cache that closes its regions: hardened.rs)"
)]
fn realloc_grows_to_64_mib_preserving_content() {
    let pages = SimPages::new();
    let mut heap = Heap::new(&pages, config()).unwrap();
    let (mut size, limit) = if cfg!(miri) {
        (512, 64 << 10)
    } else {
        (64 << 10, 64 << 20)
    };
    let ss = heap.geometry().superslab_size();
    let mut p = heap.alloc(size, 16);
    // SAFETY: a fresh block of `size` bytes.
    unsafe { fill(p, 0, size) };
    while size < limit {
        let new = size * 2;
        // SAFETY: `p` is live and replaced by the result.
        let q = unsafe { heap.realloc(p, new, 16) }.unwrap();
        assert!(!q.is_null(), "realloc to {new}");
        if q != p {
            assert!(usable(&heap, q) >= new);
        }
        // SAFETY: `q` is live and `new` bytes long.
        unsafe {
            verify(q, size);
            fill(q, size, new);
        }
        p = q;
        size = new;
        let s = heap.stats();
        assert_eq!(s.held_blocks, 1);
        if size > heap.geometry().max_slab_size() {
            // The old mapping went back; only the SuperSlab of the first,
            // small, block may remain beside it (retained, or pinned by
            // its empty current slab until a flush).
            assert_eq!((s.large_count, s.large_bytes), (1, size));
            assert!(s.superslabs_mapped <= 1);
            assert_eq!(
                s.large_mapped_bytes + s.superslabs_mapped * ss,
                pages.mapped_bytes()
            );
            assert_eq!(pages.live_regions(), 1 + s.superslabs_mapped);
        }
    }
    assert_eq!(size, limit);
    // SAFETY: live, `size` bytes, freed once.
    unsafe {
        verify(p, size);
        heap.dealloc(p).unwrap();
    }
    heap.trim();
    assert_eq!(pages.mapped_bytes(), 0);
}

#[test]
fn large_alloc_zeroed_reads_zero() {
    let pages = SimPages::new();
    let mut heap = Heap::new(&pages, config()).unwrap();
    let geo = *heap.geometry();
    let size = if cfg!(miri) { 2 * PAGE + 100 } else { 3 << 20 };
    for align in [16, 4096, geo.superslab_size()] {
        for round in 0..2 {
            let p = heap.alloc_zeroed(size, align);
            assert!(!p.is_null());
            assert_eq!(p as usize % align, 0);
            // SAFETY: a live block of `size` bytes.
            unsafe {
                let bytes = core::slice::from_raw_parts(p, size);
                // (Chunk comparisons are `memcmp`s, which keeps Miri fast.)
                let zero = [0u8; 256];
                assert!(
                    bytes.chunks(256).all(|c| c == &zero[..c.len()]),
                    "align {align} round {round}: not zero"
                );
                // Dirty it, so the next round may get recycled memory.
                p.write_bytes(0xEE, size);
                heap.dealloc(p).unwrap();
            }
        }
    }
    assert_eq!(pages.mapped_bytes(), 0);
}

#[test]
#[cfg_attr(
    feature = "hardened",
    ignore = "pins usable sizes, mapping slack or the large cache, which hardened changes (canaries, guard pages, a cache that closes its regions: hardened.rs)"
)]
fn large_stats_are_exact() {
    let pages = SimPages::new();
    let mut heap = Heap::new(&pages, config()).unwrap();
    let geo = *heap.geometry();
    let (max, ss) = (geo.max_slab_size(), geo.superslab_size());
    let requests = [
        (max + 1, 16),
        (max + 17, 4096),
        (2 * max, 64),
        (100, 2 * ss),
        (3 * ss + 5, ss),
        (7 * PAGE, ss / 2),
    ];
    // Keep a SuperSlab mapped too: the figures must separate the two.
    let small = heap.alloc(64, 8);
    let mut live = Vec::new();
    let (mut bytes, mut mapped) = (0, 0);
    for &(size, align) in &requests {
        let before = pages.mapped_bytes();
        let p = heap.alloc(size, align);
        assert!(!p.is_null());
        assert_eq!(p as usize % align, 0);
        let region = pages.mapped_bytes() - before;
        // The region is the header room before the pointer (at most the
        // alignment, or exactly it from a SuperSlab up) plus the usable
        // bytes.
        let u = usable(&heap, p);
        let front = region - u;
        if align >= ss {
            assert_eq!(front, align);
        } else {
            assert!(front <= align.max(128) && front > 0, "front {front}");
        }
        assert_eq!((size + front).next_multiple_of(PAGE), region);
        bytes += size;
        mapped += region;
        live.push((p, size, region));
        let s = heap.stats();
        assert_eq!(s.large_count, live.len());
        assert_eq!(s.large_bytes, bytes);
        assert_eq!(s.large_mapped_bytes, mapped);
        assert_eq!(s.held_blocks, live.len() + 1);
        assert_eq!(s.held_bytes, bytes + 64);
        assert_eq!(s.mapped_bytes, ss + mapped);
        assert_eq!(s.mapped_bytes, pages.mapped_bytes());
        heap.check().unwrap();
    }
    // Free in an order other than allocation (the list is doubly linked).
    for i in [2, 0, 5, 3, 1, 4] {
        let (p, size, region) = live[i];
        free(&mut heap, p);
        bytes -= size;
        mapped -= region;
        let s = heap.stats();
        assert_eq!((s.large_bytes, s.large_mapped_bytes), (bytes, mapped));
        assert_eq!(s.mapped_bytes, pages.mapped_bytes());
        heap.check().unwrap();
    }
    let s = heap.stats();
    assert_eq!(
        (s.large_count, s.large_bytes, s.large_mapped_bytes),
        (0, 0, 0)
    );
    free(&mut heap, small);
    heap.trim();
    assert_eq!(pages.mapped_bytes(), 0);
}

#[test]
#[cfg_attr(
    feature = "hardened",
    ignore = "pins usable sizes, mapping slack or the large cache, which hardened changes (canaries, guard pages, a cache that closes its regions: hardened.rs)"
)]
fn freed_large_regions_are_reused_then_decommitted_then_unmapped() {
    let pages = SimPages::new();
    let mut heap = Heap::new(&pages, caching(2)).unwrap();
    // Large enough that a third of it needs a region less than half as big.
    let size = (heap.geometry().max_slab_size() * 4).max(64 << 10);
    let a = heap.alloc(size, 16);
    assert!(!a.is_null());
    // SAFETY: a live block of `size` bytes.
    unsafe { a.write_bytes(0x5a, size) };
    let regions = pages.live_regions();
    let mapped = pages.mapped_bytes();
    // SAFETY: live, freed once.
    unsafe { heap.dealloc(a) }.unwrap();
    let s = heap.stats();
    assert_eq!((s.large_count, s.large_cached_regions), (0, 1));
    assert_eq!(pages.live_regions(), regions, "the region stays mapped");
    assert_eq!(s.mapped_bytes, pages.mapped_bytes());
    assert_eq!(s.large_cached_bytes, mapped);
    heap.check().unwrap();
    // The next block of a similar size takes the region: no map call.
    let maps = pages.stats().map_calls;
    let b = heap.alloc_zeroed(size - 100, 16);
    assert_eq!(b, a, "the cached region is reused");
    assert_eq!(pages.stats().map_calls, maps);
    // SAFETY: a live block of `size - 100` bytes.
    assert!(unsafe { core::slice::from_raw_parts(b, size - 100) }
        .iter()
        .all(|&x| x == 0));
    assert_eq!(heap.stats().large_cached_regions, 0);
    // SAFETY: live, freed once.
    unsafe { heap.dealloc(b) }.unwrap();
    // decommit_free gives the cached region's pages back, keeping it mapped.
    let before = pages.stats();
    assert!(heap.committed_free() > 0);
    assert!(heap.decommit_free() >= size - PAGE);
    assert!(pages.stats().decommit_calls > before.decommit_calls);
    assert_eq!(pages.live_regions(), regions);
    // A much smaller large block does not take a clean region twice its
    // size.
    let small = heap.alloc(size / 3, 16);
    assert_ne!(small, a);
    assert_eq!(heap.stats().large_cached_regions, 1);
    // Reused after the decommit: recommitted, and zeroed where asked.
    let c = heap.alloc_zeroed(size, 16);
    assert_eq!(c, a);
    // SAFETY: a live block of `size` bytes.
    assert!(unsafe { core::slice::from_raw_parts(c, size) }
        .iter()
        .all(|&x| x == 0));
    heap.check().unwrap();
    // Three frees into a cache of two: the oldest region goes back.
    let d = heap.alloc(size, 16);
    for p in [small, c, d] {
        // SAFETY: live, freed once.
        unsafe { heap.dealloc(p) }.unwrap();
    }
    let s = heap.stats();
    assert_eq!(s.large_cached_regions, 2);
    assert_eq!(pages.live_regions(), 2 + s.superslabs_mapped);
    heap.check().unwrap();
    // A pointer into a cached region is no block.
    // SAFETY: the heap must refuse it.
    assert!(unsafe { heap.dealloc(c) }.is_err());
    heap.trim();
    assert_eq!(heap.stats().large_cached_regions, 0);
    assert_eq!(pages.mapped_bytes(), 0);
}

#[test]
fn a_large_block_grows_by_remapping_its_pages_with_its_neighbours_relinked() {
    let pages = SimPages::new();
    let mut heap = Heap::new(&pages, config()).unwrap();
    let big = heap.geometry().max_slab_size() + 1;
    // Large neighbours on both sides of the grown block in the heap's list.
    let before = heap.alloc(big, 16);
    let mut p = heap.alloc(big, 16);
    let after = heap.alloc(big, 16);
    let mut len = big;
    // SAFETY: live blocks of at least `len` bytes.
    unsafe { fill(p, 0, len) };
    let mut remapped = 0;
    for _ in 0..12 {
        let new_len = len + len / 2;
        let remaps = pages.stats().remap_calls;
        // SAFETY: `p` is a live block of this heap.
        let usable = unsafe { heap.usable_size(p) }.unwrap();
        // SAFETY: `p` is live; the old pointer is not used afterwards.
        let q = unsafe { heap.realloc(p, new_len, 16) }.unwrap();
        assert!(!q.is_null());
        // Growth past the mapping goes through the page source's remap (the
        // pages move); growth within it stays in place.
        let want = pages.stats().remap_calls;
        if new_len > usable {
            assert_eq!(want, remaps + 1, "grown by remapping");
        } else {
            // Within the mapping: in place, or (below half of it) moved to
            // a block that fits, but never through a remap.
            assert_eq!(want, remaps, "no remap within the mapping");
        }
        // SAFETY: `q` is live with at least `new_len` bytes.
        unsafe {
            verify(q, len);
            fill(q, 0, new_len);
        }
        heap.check().unwrap();
        let s = heap.stats();
        assert_eq!(s.large_count, 3);
        assert_eq!(s.large_bytes, 2 * big + new_len);
        assert_eq!(s.mapped_bytes, pages.mapped_bytes());
        assert_eq!(pages.live_regions(), 3 + s.superslabs_mapped);
        remapped += want - remaps;
        p = q;
        len = new_len;
    }
    assert!(remapped >= 4, "{remapped} remaps in 12 growths by half");
    // The grown block, and its neighbours, free as usual.
    for b in [before, p, after] {
        // SAFETY: live, freed once.
        unsafe { heap.dealloc(b) }.unwrap();
    }
    heap.check().unwrap();
    heap.trim();
    assert_eq!(pages.mapped_bytes(), 0);
}

/// A block aligned further than its request asked (by where its region
/// landed) and grown with that larger alignment keeps it: a region moved by
/// `remap` is placed at the alignment the block's offset needs, or the block
/// is copied (the fuzz target `core_ops` found a realloc to 32 KiB alignment
/// returning a 16 KiB-aligned block).
#[test]
fn a_large_block_grown_at_its_actual_alignment_keeps_it() {
    let pages = SimPages::new();
    let cfg = Config {
        superslab_shift: 14,
        ..Config::DEFAULT
    };
    let mut heap = Heap::new(&pages, cfg).unwrap();
    let ss = heap.geometry().superslab_size();
    let mut grown = 0;
    let mut held = Vec::new();
    for round in 0..64 {
        // Aligned to a SuperSlab: the header is at the region's start, the
        // block one SuperSlab above it.
        let p = heap.alloc(ss / 2 + round, ss);
        assert!(!p.is_null());
        let actual = 1usize << (p as usize).trailing_zeros();
        assert!(actual >= ss);
        // SAFETY: live blocks of at least the length given.
        unsafe { fill(p, 0, ss / 2) };
        // SAFETY: `p` is live and `actual`-aligned; not used afterwards.
        // (Sizes a page apart vary where the moved regions land.)
        let q = unsafe { heap.realloc(p, 4 * ss + round * PAGE, actual) }.unwrap();
        assert!(!q.is_null());
        assert_eq!(q as usize % actual, 0, "grown to alignment {actual}: {q:p}");
        // SAFETY: `q` is live with at least `4 * ss` bytes.
        unsafe { verify(q, ss / 2) };
        heap.check().unwrap();
        grown += usize::from(actual > ss);
        held.push(q);
    }
    // (Where blocks land is the host allocator's choice; under Miri's it
    // may never be further aligned than asked.)
    assert!(
        grown > 0 || cfg!(miri),
        "no block landed further aligned than asked"
    );
    for q in held {
        // SAFETY: live, freed once.
        unsafe { heap.dealloc(q) }.unwrap();
    }
    heap.check().unwrap();
    heap.trim();
    assert_eq!(pages.mapped_bytes(), 0);
}

#[test]
#[cfg_attr(miri, ignore = "maps 48 MiB")]
#[cfg_attr(
    feature = "hardened",
    ignore = "pins usable sizes, mapping slack or the large cache, which hardened changes (canaries, guard pages, a cache that closes its regions: hardened.rs)"
)]
fn the_large_cache_keeps_at_most_32_mib_committed() {
    let pages = SimPages::new();
    let mut cfg = Config::DEFAULT;
    cfg.large_cache = 4;
    let mut heap = Heap::new(&pages, cfg).unwrap();
    let size = 12 << 20;
    let blocks: Vec<_> = (0..4).map(|_| heap.alloc(size, 16)).collect();
    assert!(blocks.iter().all(|p| !p.is_null()));
    let before = pages.stats();
    for (i, &p) in blocks.iter().enumerate() {
        // SAFETY: live, freed once.
        unsafe { heap.dealloc(p) }.unwrap();
        let s = pages.stats();
        // Two 12+ MiB regions fit the 32 MiB budget; the third and the
        // fourth each push the oldest committed one out.
        let want = i.saturating_sub(1) as u64;
        assert_eq!(
            s.decommit_calls - before.decommit_calls,
            want,
            "after {} frees",
            i + 1
        );
        heap.check().unwrap();
    }
    let s = heap.stats();
    assert_eq!(s.large_cached_regions, 4);
    assert_eq!(
        pages.mapped_bytes(),
        s.mapped_bytes,
        "decommitted, still mapped"
    );
    // The newest region is reused as it is, without a recommit.
    let p = heap.alloc(size, 16);
    assert_eq!(p, blocks[3]);
    // SAFETY: live, freed once.
    unsafe { heap.dealloc(p) }.unwrap();
    heap.trim();
    assert_eq!(pages.mapped_bytes(), 0);
}

#[test]
fn a_committed_region_serves_a_smaller_block_keeping_its_pages() {
    let pages = SimPages::new();
    let mut heap = Heap::new(&pages, caching(2)).unwrap();
    let size = (heap.geometry().max_slab_size() * 8).max(256 << 10);
    let a = heap.alloc(size, 16);
    assert!(!a.is_null());
    // SAFETY: a live block of `size` bytes, then freed once.
    unsafe {
        a.write_bytes(0x5a, size);
        heap.dealloc(a).unwrap();
    }
    let before = pages.stats();
    // A fifth of the size: its committed pages are worth more than a clean
    // region of the right size would be, and while the heap's live blocks
    // keep few pages past twice their size it keeps them all: nothing is
    // mapped, decommitted or faulted in again.
    let small = size / 5;
    let b = heap.alloc(small, 16);
    assert_eq!(b, a, "the committed region is reused");
    let after = pages.stats();
    assert_eq!(after.map_calls, before.map_calls);
    assert_eq!(after.decommit_calls, before.decommit_calls);
    // The committed pages kept what was written (past the region's first
    // page, which the hardened build poisons while the region is cached).
    let skip = PAGE - b as usize % PAGE;
    // SAFETY: the block's bytes `skip..small` are live.
    let kept_bytes = unsafe { core::slice::from_raw_parts(b.add(skip), small - skip) };
    assert!(kept_bytes.iter().all(|&x| x == 0x5a));
    heap.check().unwrap();
    // SAFETY: live, freed once.
    unsafe { heap.dealloc(b) }.unwrap();
    heap.trim();
    assert_eq!(pages.mapped_bytes(), 0);
}

/// Allocates and fills a `big` block, frees it, calls `between`, and
/// returns a `small` block, checked to be in the big block's cached region.
fn replace_big_by_small<P: PageSource>(
    heap: &mut Heap<P>,
    big: usize,
    small: usize,
    between: impl FnOnce(),
) -> *mut u8 {
    let a = heap.alloc(big, 16);
    assert!(!a.is_null());
    // SAFETY: a live block of `big` bytes, then freed once.
    unsafe {
        a.write_bytes(0x33, big);
        heap.dealloc(a).unwrap();
    }
    between();
    let b = heap.alloc(small, 16);
    assert_eq!(b, a, "the cached region is reused");
    b
}

/// Live blocks keep committed pages past twice their size only up to
/// `LARGE_CACHE_COMMITTED` bytes in all: a program that frees a big buffer
/// and keeps a smaller block in its region, again and again, holds at most
/// that much more than twice its blocks' pages.
#[test]
#[cfg_attr(miri, ignore = "maps about 100 MiB")]
fn live_blocks_keep_pages_past_twice_their_size_only_within_the_bound() {
    let pages = SimPages::new();
    let mut heap = Heap::new(&pages, caching(2)).unwrap();
    let (big, small) = (8usize << 20, 1usize << 20);
    let mut live = Vec::new();
    let mut trimmed = Vec::new();
    for i in 0..8 {
        let mut before = pages.stats();
        let b = replace_big_by_small(&mut heap, big, small, || before = pages.stats());
        let after = pages.stats();
        let decommitted = (after.decommitted_bytes - before.decommitted_bytes) as usize;
        if after.decommit_calls != before.decommit_calls {
            trimmed.push(i);
            // At least twice its pages stay.
            let region = big.next_power_of_two() * 2;
            assert!(
                region - decommitted >= 2 * small,
                "{decommitted} of {region}"
            );
        }
        live.push(b);
        heap.check().unwrap();
    }
    // Each block keeps about 6 MiB past twice its 1 MiB: five fit in the
    // 32 MiB bound (`LARGE_CACHE_COMMITTED`), the sixth and later give
    // theirs back.
    assert_eq!(trimmed, [5, 6, 7]);
    for b in live {
        // SAFETY: live, freed once.
        unsafe { heap.dealloc(b) }.unwrap();
    }
    heap.check().unwrap();
    heap.trim();
    assert_eq!(pages.mapped_bytes(), 0);
}

/// A source that cannot decommit, as `FixedRegion`.
struct NoDecommit(SimPages);

// SAFETY: every method forwards to `SimPages`, which keeps the contract;
// `CAN_DECOMMIT` stays false, so the heap never asks for a decommit.
unsafe impl PageSource for NoDecommit {
    const MAPS_ZEROED: bool = <SimPages as PageSource>::MAPS_ZEROED;

    fn page_size(&self) -> usize {
        self.0.page_size()
    }

    fn map(&self, size: usize, align: usize) -> Option<NonNull<u8>> {
        self.0.map(size, align)
    }

    unsafe fn unmap(&self, ptr: NonNull<u8>, size: usize) {
        // SAFETY: forwarded caller contract.
        unsafe { self.0.unmap(ptr, size) }
    }

    fn contains(&self, addr: usize) -> bool {
        self.0.contains(addr)
    }
}

/// Over a source that cannot decommit, every page stays committed anyway:
/// small blocks in big cached regions are not counted against the bound on
/// kept pages (which they would exceed), and the cache still reuses them.
#[test]
#[cfg_attr(miri, ignore = "maps about 100 MiB")]
fn without_decommit_nothing_is_counted_as_kept() {
    let pages = NoDecommit(SimPages::new());
    let mut heap = Heap::new(&pages, caching(2)).unwrap();
    let (big, small) = (8usize << 20, 1usize << 20);
    let mut live = Vec::new();
    for _ in 0..8 {
        let b = replace_big_by_small(&mut heap, big, small, || ());
        live.push(b);
        heap.check().unwrap();
    }
    for b in live {
        // SAFETY: live, freed once.
        unsafe { heap.dealloc(b) }.unwrap();
    }
    heap.check().unwrap();
    heap.trim();
    assert_eq!(pages.0.mapped_bytes(), 0);
}

/// Hardened: a write after free into the part of a cached large region that
/// stays accessible (its first page, beside the header word) is found when
/// the region is reused, and stops the program naming it.
#[test]
#[cfg(feature = "hardened")]
#[should_panic(expected = "a free block was overwritten")]
fn hardened_a_write_after_free_in_a_cached_large_region_stops_its_reuse() {
    let pages = SimPages::new();
    let mut heap = Heap::new(&pages, caching(2)).unwrap();
    let size = (heap.geometry().max_slab_size() * 4).max(64 << 10);
    let a = heap.alloc(size, 16);
    assert!(!a.is_null());
    // SAFETY: a live block, freed once; the write after its free is the
    // fault under test (the region stays mapped in the cache).
    unsafe {
        heap.dealloc(a).unwrap();
        a.write(0x41);
    }
    let _ = heap.alloc(size, 16);
}
