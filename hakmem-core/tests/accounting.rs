//! Exact accounting. Paths forced: `free_local` onto the slab free list
//! (free blocks are not held) and `count_free` emptying a slab that stays
//! assigned and serves again, `on_empty` with the retain policy
//! (`release_superslab` unlinking its slabs), `set_retain`, `flush`, `trim`,
//! `release_empty_slabs` then `carve_slab` for another class in the
//! same SuperSlab, lazy carving by the bump pointer over a page source whose
//! fresh memory is not zero (`MAPS_ZEROED = false`, so `alloc_zeroed` must
//! clear), and `decommit_free` (retained and in-use SuperSlabs) then reuse
//! of the decommitted units (`recommit_units`, fresh marks).

use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;
use std::mem::ManuallyDrop;
use std::ptr::NonNull;

use hakmem_core::page_source::PageSource;
use hakmem_core::sim::SimPages;
use hakmem_core::size_class::class_size;
use hakmem_core::{Config, Heap, Stats};

const PAGE: usize = hakmem_core::sim::DEFAULT_PAGE_SIZE;
/// What `Dirty<false>` fills fresh regions with.
const DIRTY: u8 = 0xAB;

fn config(retain: usize) -> Config {
    let mut c = if cfg!(miri) {
        Config::SMALL
    } else {
        Config::DEFAULT
    };
    c.retain = retain;
    c
}

/// Checks the cross-figure invariants of a heap over `pages`, and returns its
/// stats.
fn consistent(heap: &Heap<&SimPages>, pages: &SimPages) -> Stats {
    heap.check().unwrap();
    let s = heap.stats();
    let ss = heap.geometry().superslab_size();
    assert_eq!(
        s.mapped_bytes,
        s.superslabs_mapped * ss + s.large_mapped_bytes
    );
    assert_eq!(s.mapped_bytes, pages.mapped_bytes());
    assert_eq!(
        s.superslabs_created,
        s.superslabs_released + s.superslabs_mapped
    );
    assert!(s.superslabs_retained <= s.superslabs_mapped);
    assert!(s.superslabs_retained <= heap.config().retain);
    assert_eq!(
        s.free_blocks,
        s.classes.iter().map(|c| c.free_blocks).sum::<usize>()
    );
    let held: usize = s.classes.iter().map(|c| c.held_blocks).sum();
    assert_eq!(s.held_blocks + s.pending_remote, held + s.large_count);
    let bytes: usize = s
        .classes
        .iter()
        .enumerate()
        .map(|(c, cs)| cs.held_blocks * class_size(c))
        .sum();
    assert_eq!(s.held_bytes, bytes + s.large_bytes);
    s
}

/// A heap that is dropped only by `ManuallyDrop::into_inner` at the end of
/// a test: when an assertion fails on a corrupted heap, its `Drop` (a trim)
/// must not panic again while unwinding, which would abort the whole test
/// binary. (`SimPages` frees the regions either way.)
fn guarded(pages: &SimPages, cfg: Config) -> ManuallyDrop<Heap<&SimPages>> {
    ManuallyDrop::new(Heap::new(pages, cfg).unwrap())
}

fn free(heap: &mut Heap<&SimPages>, p: *mut u8) {
    // SAFETY: the callers pass live blocks they do not use afterwards.
    unsafe { heap.dealloc(p) }.unwrap();
}

fn shuffle<T>(v: &mut [T], mut seed: u64) {
    for i in (1..v.len()).rev() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        v.swap(i, (seed % (i as u64 + 1)) as usize);
    }
}

/// Allocates `size`-byte blocks until they lie in `superslabs` SuperSlabs
/// (the last one then holds one block). The heap must hold no other block.
fn fill_superslabs(heap: &mut Heap<&SimPages>, size: usize, superslabs: usize) -> Vec<*mut u8> {
    assert_eq!(heap.stats().held_blocks, 0);
    let mask = heap.geometry().superslab_mask();
    let mut bases = Vec::new();
    let mut blocks = Vec::new();
    // (Watching addresses rather than `stats()` keeps Miri fast.)
    while bases.len() < superslabs {
        let p = heap.alloc(size, 8);
        assert!(!p.is_null());
        let base = p as usize & mask;
        if !bases.contains(&base) {
            bases.push(base);
        }
        blocks.push(p);
    }
    let s = heap.stats();
    assert_eq!(
        (s.superslabs_mapped, s.superslabs_retained),
        (superslabs, 0)
    );
    blocks
}

/// The geometries the decommit tests run on: the default one, whose slab
/// units are multiples of the page size, and the small one, whose units are
/// a quarter page (so pages span several units). Miri runs the small one.
fn decommit_configs() -> Vec<Config> {
    let mut small = Config::SMALL;
    small.retain = 1;
    if cfg!(miri) {
        vec![small]
    } else {
        vec![config(1), small]
    }
}

/// A block size and count that reach well past the header's page in one
/// SuperSlab of `heap`.
fn decommit_load<P: PageSource>(heap: &Heap<P>, small_block: bool) -> (usize, usize) {
    let small = heap.geometry().superslab_size() <= 16 << 10;
    match (small_block, small) {
        (true, false) => (16, 600),
        (true, true) => (128, 64),
        (false, false) => (256, 64),
        (false, true) => (256, 32),
    }
}

/// A block size that fills SuperSlabs quickly in both geometries.
fn big_block() -> usize {
    if cfg!(miri) {
        512
    } else {
        16 << 10
    }
}

#[test]
#[cfg_attr(
    feature = "hardened",
    ignore = "pins block sizes and placement to the request size classes; hardened blocks also hold their canary (hardened.rs)"
)]
fn freed_blocks_are_free_not_held() {
    let pages = SimPages::new();
    let mut heap = Heap::new(&pages, config(1)).unwrap();
    let n = 197;
    // 20 B requests are 32 B blocks (class 1); a 48 B block of class 2 stays.
    let other = heap.alloc(48, 8);
    let blocks: Vec<_> = (0..n).map(|_| heap.alloc(20, 8)).collect();
    let s = consistent(&heap, &pages);
    assert_eq!((s.held_blocks, s.held_bytes), (n + 1, n * 32 + 48));
    assert_eq!(s.classes[1].held_blocks, n);
    // A refill carves the rest of its page onto the free list: free, not
    // held, and within a page per class.
    let (ahead, ahead1, ahead2) = (
        s.free_blocks,
        s.classes[1].free_blocks,
        s.classes[2].free_blocks,
    );
    assert_eq!(ahead, ahead1 + ahead2);
    assert!(
        ahead1 < PAGE / 32 && ahead2 < PAGE / 48,
        "{ahead1} {ahead2}"
    );

    // Every free is counted at once: off the held figures, on the free list.
    for (k, &p) in blocks.iter().enumerate() {
        free(&mut heap, p);
        let s = heap.stats();
        let held = n - k - 1;
        assert_eq!(s.held_blocks, held + 1, "after {} frees", k + 1);
        assert_eq!(s.held_bytes, held * 32 + 48);
        assert_eq!(s.classes[1].held_blocks, held);
        assert_eq!(
            s.classes[1].free_blocks,
            ahead1 + k + 1,
            "after {} frees",
            k + 1
        );
        assert_eq!(s.free_blocks, ahead + k + 1);
        assert_eq!(s.classes[2].held_blocks, 1);
        assert_eq!(s.classes[2].free_blocks, ahead2);
        if k % 16 == 0 {
            consistent(&heap, &pages);
        }
    }
    // An allocation takes the block freed last (the free list is LIFO).
    let p = heap.alloc(32, 8);
    assert_eq!(p, blocks[n - 1]);
    let s = consistent(&heap, &pages);
    assert_eq!(s.classes[1].free_blocks, ahead1 + n - 1);
    assert_eq!(s.classes[1].held_blocks, 1);
    free(&mut heap, p);
    free(&mut heap, other);
    let s = consistent(&heap, &pages);
    assert_eq!(s.classes[2].free_blocks, ahead2 + 1);
    assert_eq!(s.free_blocks, ahead + n + 1);
    assert_eq!(s.held_blocks, 0);
    // Its slabs hold nothing, but the current ones stay pinned (counted
    // live, so the SuperSlab is not empty yet) until a flush.
    assert_eq!(s.superslabs_retained, 0);

    // flush retires them and gives the empty slabs' units back, changing
    // nothing else.
    heap.flush();
    let f = consistent(&heap, &pages);
    assert_eq!(f.superslabs_retained, 1);
    assert_eq!(f.free_blocks, 0);
    assert!(f.classes.iter().all(|c| c.free_blocks == 0));
    assert_eq!(f.held_blocks, 0);
    assert_eq!(f.superslabs_mapped, s.superslabs_mapped);
}

#[test]
fn flush_keeps_held_blocks_and_superslabs() {
    let pages = SimPages::new();
    let mut heap = Heap::new(&pages, config(1)).unwrap();
    let mut blocks = fill_superslabs(&mut heap, big_block(), 2);
    blocks.extend((0..50).map(|i| heap.alloc([16, 100, 700][i % 3], 8)));
    let kept: Vec<_> = blocks.iter().copied().step_by(2).collect();
    for &p in blocks.iter().skip(1).step_by(2) {
        free(&mut heap, p);
    }
    let before = consistent(&heap, &pages);
    assert!(before.free_blocks > 0);
    heap.flush();
    let after = consistent(&heap, &pages);
    assert!(after.free_blocks <= before.free_blocks);
    assert_eq!(after.held_blocks, kept.len());
    assert_eq!(after.held_bytes, before.held_bytes);
    assert_eq!(
        after.classes.map(|c| c.held_blocks),
        before.classes.map(|c| c.held_blocks)
    );
    assert_eq!(after.superslabs_mapped, before.superslabs_mapped);
    for p in kept {
        free(&mut heap, p);
    }
    assert_eq!(consistent(&heap, &pages).held_blocks, 0);
}

#[test]
fn retain_policy_keeps_at_most_k_empty_superslabs() {
    for k in [0, 1, 3] {
        let pages = SimPages::new();
        let mut heap = guarded(&pages, config(k));
        let mut blocks = fill_superslabs(&mut heap, big_block(), 5);
        let s = consistent(&heap, &pages);
        assert_eq!((s.superslabs_mapped, s.superslabs_retained), (5, 0));
        shuffle(&mut blocks, 0x9E37_79B9 + k as u64);
        for (i, &p) in blocks.iter().enumerate() {
            free(&mut heap, p);
            // Never more than K empty ones, at every step.
            let s = heap.stats();
            assert!(s.superslabs_retained <= k, "K {k}, step {i}: {s:?}");
        }
        // The current slab pins its SuperSlab until a flush.
        assert_eq!(heap.stats().superslabs_mapped, (k + 1).min(5), "K {k}");
        heap.flush();
        let s = consistent(&heap, &pages);
        let keep = k.min(5);
        assert_eq!(s.held_blocks, 0);
        assert_eq!(s.superslabs_mapped, keep, "K {k}");
        assert_eq!(s.superslabs_retained, keep);
        assert_eq!(s.superslabs_released, 5 - keep);
        assert_eq!(pages.live_regions(), keep);
        assert_eq!(
            pages.mapped_bytes(),
            keep * heap.geometry().superslab_size()
        );
        // A retained SuperSlab serves the next allocations.
        let p = heap.alloc(64, 8);
        assert_eq!(heap.stats().superslabs_created, 5 + usize::from(k == 0));
        free(&mut heap, p);
        assert_eq!(heap.trim(), keep);
        assert_eq!(pages.mapped_bytes(), 0);
        consistent(&heap, &pages);
        drop(ManuallyDrop::into_inner(heap));
    }
}

#[test]
fn set_retain_lowers_at_once_and_trim_releases_every_empty_superslab() {
    let pages = SimPages::new();
    let mut heap = Heap::new(&pages, config(3)).unwrap();
    let ss = heap.geometry().superslab_size();
    let blocks = fill_superslabs(&mut heap, big_block(), 4);
    for &p in &blocks {
        free(&mut heap, p);
    }
    // The current slab pins its SuperSlab until a flush.
    heap.flush();
    let s = consistent(&heap, &pages);
    assert_eq!((s.superslabs_mapped, s.superslabs_retained), (3, 3));
    heap.set_retain(1);
    let s = consistent(&heap, &pages);
    assert_eq!((s.superslabs_mapped, s.superslabs_retained), (1, 1));
    assert_eq!(s.superslabs_released, 3);
    assert_eq!(pages.mapped_bytes(), ss);
    // Raising it maps nothing.
    heap.set_retain(5);
    assert_eq!(consistent(&heap, &pages).superslabs_mapped, 1);

    // Three SuperSlabs; empty two of them completely.
    let blocks = fill_superslabs(&mut heap, big_block(), 3);
    let s = consistent(&heap, &pages);
    assert_eq!(s.superslabs_created, 6);
    let mask = heap.geometry().superslab_mask();
    let last = blocks[blocks.len() - 1] as usize & mask;
    let (live, gone): (Vec<_>, Vec<_>) = blocks.iter().partition(|&&p| p as usize & mask == last);
    for p in gone {
        free(&mut heap, p);
    }
    let s = consistent(&heap, &pages);
    assert_eq!((s.superslabs_mapped, s.superslabs_retained), (3, 2));
    assert!(s.free_blocks > 0);
    assert_eq!(heap.trim(), 2);
    let s = consistent(&heap, &pages);
    assert_eq!((s.superslabs_mapped, s.superslabs_retained), (1, 0));
    assert_eq!(s.held_blocks, live.len());
    for p in live {
        free(&mut heap, p);
    }
    // (Pinned by the current slab, not yet retained; trim retires it.)
    assert_eq!(consistent(&heap, &pages).superslabs_retained, 0);
    assert_eq!(heap.trim(), 1);
    assert_eq!(pages.mapped_bytes(), 0);
    assert_eq!(heap.trim(), 0);
}

#[test]
#[cfg_attr(
    feature = "hardened",
    ignore = "pins block sizes and placement to the request size classes; hardened blocks also hold their canary (hardened.rs)"
)]
fn an_emptied_slab_serves_another_class() {
    let pages = SimPages::new();
    let mut heap = Heap::new(&pages, config(1)).unwrap();
    let ss = heap.geometry().superslab_size();
    // Fill one SuperSlab with 16 B blocks (the block that spilled into a
    // second one goes back, and so does that SuperSlab).
    let mut blocks = fill_superslabs(&mut heap, 16, 2);
    let spilled = blocks.pop().unwrap();
    free(&mut heap, spilled);
    assert_eq!(heap.trim(), 1);
    let s = consistent(&heap, &pages);
    assert_eq!(s.superslabs_mapped, 1);
    assert!(blocks.len() * 16 > ss * 3 / 4, "{} blocks", blocks.len());
    // Free them all, in order (their slabs stay assigned, empty).
    for &p in &blocks {
        free(&mut heap, p);
    }
    let s = consistent(&heap, &pages);
    // (Not retained: the current 16 B slab pins it.)
    assert_eq!((s.held_blocks, s.superslabs_retained), (0, 0));
    let created = s.superslabs_created;

    // Another class takes over the emptied slabs' units.
    let size = if cfg!(miri) { 256 } else { 1024 };
    let base = blocks[0] as usize & heap.geometry().superslab_mask();
    let mut other = Vec::new();
    loop {
        let p = heap.alloc(size, 8);
        assert!(!p.is_null());
        if p as usize & heap.geometry().superslab_mask() != base {
            assert_eq!(heap.stats().superslabs_created, created + 1);
            free(&mut heap, p);
            break;
        }
        other.push(p);
    }
    assert_eq!(heap.stats().superslabs_created, created + 1);
    assert!(
        other.len() * size > ss / 2,
        "only {} blocks of {size} B fitted in the emptied SuperSlab",
        other.len()
    );
    let s = consistent(&heap, &pages);
    assert_eq!(s.held_blocks, other.len());
    for p in other {
        free(&mut heap, p);
    }
    heap.trim();
    assert_eq!(pages.mapped_bytes(), 0);
}

/// Distinct addresses, and none among `live`.
fn assert_distinct(fresh: &[*mut u8], live: &[*mut u8]) {
    let mut all: Vec<usize> = fresh.iter().chain(live).map(|&p| p as usize).collect();
    all.sort_unstable();
    let dup = all.windows(2).find(|w| w[0] == w[1]);
    assert!(
        dup.is_none(),
        "block {:#x} handed out twice",
        dup.unwrap()[0]
    );
}

#[test]
#[cfg_attr(
    feature = "hardened",
    ignore = "pins block sizes and placement to the request size classes; hardened blocks also hold their canary (hardened.rs)"
)]
fn an_emptied_slab_stays_with_its_class_until_its_units_are_wanted() {
    let pages = SimPages::new();
    let mut heap = guarded(&pages, config(1));
    let keep = heap.alloc(100, 8);
    // Empty a slab of 16 B blocks again and again: it is never remade.
    let first = heap.alloc(16, 8);
    free(&mut heap, first);
    // (Its refill carved the rest of the page onto the free list.)
    let free16 = heap.stats().classes[0].free_blocks;
    let sim = pages.stats();
    for _ in 0..100 {
        let p = heap.alloc(16, 8);
        assert_eq!(p, first, "the emptied slab serves again");
        free(&mut heap, p);
    }
    assert_eq!(pages.stats(), sim, "no page-source call in the loop");
    let s = consistent(&heap, &pages);
    assert_eq!((s.held_blocks, s.classes[0].free_blocks), (1, free16));
    // A second free of a block of the empty slab is still a double free.
    // SAFETY: `first` was freed; the heap must refuse it.
    assert!(unsafe { heap.dealloc(first) }.is_err());
    // Its units go back with a flush (or when another class needs them).
    heap.flush();
    let s = consistent(&heap, &pages);
    assert_eq!((s.held_blocks, s.classes[0].free_blocks), (1, 0));
    let fresh: Vec<_> = (0..3).map(|_| heap.alloc(16, 8)).collect();
    assert_distinct(&fresh, &[keep]);
    for p in fresh {
        free(&mut heap, p);
    }
    free(&mut heap, keep);
    consistent(&heap, &pages);
    drop(ManuallyDrop::into_inner(heap));
}

/// `SimPages` behind a page source whose fresh memory is dirty when `ZEROED`
/// is false (every new region is filled with [`DIRTY`]), which records its
/// regions (so a test can inspect them) and which pages are decommitted and
/// not recommitted since.
struct Dirty<const ZEROED: bool> {
    sim: SimPages,
    regions: RefCell<Vec<(NonNull<u8>, usize)>>,
    decommitted: RefCell<BTreeSet<usize>>,
    recommits: Cell<usize>,
}

impl<const ZEROED: bool> Dirty<ZEROED> {
    fn new() -> Self {
        Dirty {
            sim: SimPages::new(),
            regions: RefCell::new(Vec::new()),
            decommitted: RefCell::new(BTreeSet::new()),
            recommits: Cell::new(0),
        }
    }

    /// The live region starting at `base`.
    fn region(&self, base: usize) -> (NonNull<u8>, usize) {
        *self
            .regions
            .borrow()
            .iter()
            .find(|(p, _)| p.as_ptr() as usize == base)
            .expect("no region starts there")
    }

    /// Whether any byte of `[addr, addr + len)` is decommitted and not
    /// recommitted since.
    fn is_decommitted(&self, addr: usize, len: usize) -> bool {
        let first_page = addr & !(PAGE - 1);
        self.decommitted
            .borrow()
            .range(first_page..addr + len)
            .next()
            .is_some()
    }
}

// SAFETY: every method forwards to `SimPages`, which keeps the contract.
// `map` hands out a region nobody else knows yet, so filling it is ours to
// do; with `ZEROED` false the source does not claim zeroed memory, and with
// it true nothing is written. `decommit` forwards to `SimPages`, which zeroes
// the range as `CAN_DECOMMIT` requires. The bookkeeping is never reentered.
unsafe impl<const ZEROED: bool> PageSource for Dirty<ZEROED> {
    const MAPS_ZEROED: bool = ZEROED;
    const CAN_DECOMMIT: bool = true;

    fn page_size(&self) -> usize {
        self.sim.page_size()
    }

    fn map(&self, size: usize, align: usize) -> Option<NonNull<u8>> {
        let p = self.sim.map(size, align)?;
        if !ZEROED {
            // SAFETY: a fresh region of `size` bytes that only we know.
            unsafe { p.as_ptr().write_bytes(DIRTY, size) };
        }
        self.regions.borrow_mut().push((p, size));
        Some(p)
    }

    unsafe fn unmap(&self, ptr: NonNull<u8>, size: usize) {
        let a = ptr.as_ptr() as usize;
        self.regions.borrow_mut().retain(|(p, _)| *p != ptr);
        self.decommitted
            .borrow_mut()
            .retain(|&d| d < a || d >= a + size);
        // SAFETY: forwarded caller contract.
        unsafe { self.sim.unmap(ptr, size) }
    }

    unsafe fn decommit(&self, ptr: NonNull<u8>, size: usize) {
        let a = ptr.as_ptr() as usize;
        self.decommitted
            .borrow_mut()
            .extend((a..a + size).step_by(PAGE));
        // SAFETY: forwarded caller contract.
        unsafe { self.sim.decommit(ptr, size) }
    }

    unsafe fn recommit(&self, ptr: NonNull<u8>, size: usize) -> bool {
        let a = ptr.as_ptr() as usize;
        self.decommitted
            .borrow_mut()
            .retain(|&d| d < a || d >= a + size);
        self.recommits.set(self.recommits.get() + 1);
        // SAFETY: forwarded caller contract.
        unsafe { self.sim.recommit(ptr, size) }
    }

    fn contains(&self, addr: usize) -> bool {
        self.sim.contains(addr)
    }
}

/// The bytes of a live region of `src`.
///
/// # Safety
/// Nothing writes to the region while the slice lives.
unsafe fn region_bytes<const Z: bool>(src: &Dirty<Z>, base: usize) -> &[u8] {
    let (p, len) = src.region(base);
    // SAFETY: a live, initialised region (filled or zeroed at map), not
    // written meanwhile (caller).
    unsafe { core::slice::from_raw_parts(p.as_ptr(), len) }
}

/// The index of the first byte that is not `v`.
fn first_not(bytes: &[u8], v: u8) -> Option<usize> {
    // Chunk comparisons are `memcmp`s, which keeps Miri fast.
    let all = [v; 256];
    let chunk = bytes.chunks(256).position(|c| c != &all[..c.len()])?;
    let at = bytes[chunk * 256..].iter().position(|&b| b != v);
    at.map(|i| chunk * 256 + i)
}

#[test]
#[cfg_attr(
    feature = "hardened",
    ignore = "pins block sizes and placement to the request size classes; hardened blocks also hold their canary (hardened.rs)"
)]
fn memory_is_not_written_before_it_is_handed_out() {
    let src = Dirty::<false>::new();
    let mut heap = Heap::new(&src, config(1)).unwrap();
    let geo = *heap.geometry();
    let blocks: Vec<_> = (0..5).map(|_| heap.alloc(64, 8)).collect();
    for w in blocks.windows(2) {
        assert_eq!(w[1] as usize, w[0] as usize + 64, "carved in order");
    }
    let base = blocks[0] as usize & geo.superslab_mask();
    let first = blocks[0] as usize - base;
    // A refill carves up to the end of the page its block ends in
    // (`carve_batch`): pages no block was handed out from stay untouched.
    let end = (blocks[4] as usize + 64 - base).next_multiple_of(4096);
    {
        // SAFETY: the heap is not used while `bytes` lives.
        let bytes = unsafe { region_bytes(&src, base) };
        assert_eq!(bytes.len(), geo.superslab_size());
        assert_ne!(bytes[..8], [DIRTY; 8], "the header is written");
        let header = geo.header_bytes as usize;
        assert!(header <= first);
        assert_eq!(first_not(&bytes[header..first], DIRTY), None);
        assert_eq!(
            first_not(&bytes[end..], DIRTY).map(|i| i + end),
            None,
            "written beyond the page the handed-out blocks end in (offset {end})"
        );
    }
    // A large block (beyond the medium tier too): only its header is written.
    let size = geo.max_slab_size().max(geo.medium_max) + 2 * PAGE;
    let l = heap.alloc(size, 16);
    let lbase = l as usize & geo.superslab_mask();
    {
        // SAFETY: the heap is not used while `bytes` lives.
        let bytes = unsafe { region_bytes(&src, lbase) };
        let user = l as usize - lbase;
        assert_eq!(first_not(&bytes[user..], DIRTY), None);
    }
    // SAFETY: live blocks, freed once.
    unsafe {
        heap.dealloc(l).unwrap();
        for p in blocks {
            heap.dealloc(p).unwrap();
        }
    }
    heap.check().unwrap();
}

#[test]
#[cfg_attr(
    feature = "hardened",
    ignore = "pins block sizes and placement to the request size classes; hardened blocks also hold their canary (hardened.rs)"
)]
fn alloc_zeroed_clears_memory_that_was_not_mapped_zeroed() {
    let src = Dirty::<false>::new();
    let mut heap = Heap::new(&src, config(1)).unwrap();
    let geo = *heap.geometry();
    let max = geo.max_slab_size();
    let requests = [
        (100, 8),
        (16, 16),
        (24, 64),
        (max, 16),
        (max + 1, 16),
        (700, 4096),
    ];
    let mut live = Vec::new();
    for (size, align) in requests {
        let p = heap.alloc_zeroed(size, align);
        assert!(!p.is_null());
        assert_eq!(p as usize % align, 0);
        // SAFETY: a live block of `size` bytes.
        let bytes = unsafe { core::slice::from_raw_parts(p, size) };
        assert_eq!(first_not(bytes, 0), None, "alloc_zeroed({size}, {align})");
        live.push((p, size));
    }
    // The memory around really was dirty: the byte after the first block
    // was never handed out.
    // SAFETY: inside the SuperSlab, initialised at map time.
    assert_eq!(unsafe { live[0].0.add(112).read() }, DIRTY);
    // Recycled blocks are cleared too.
    for &(p, size) in &live {
        // SAFETY: live blocks, dirtied then freed once.
        unsafe {
            p.write_bytes(0xCD, size);
            heap.dealloc(p).unwrap();
        }
    }
    for (size, align) in requests {
        let p = heap.alloc_zeroed(size, align);
        // SAFETY: a live block of `size` bytes.
        let bytes = unsafe { core::slice::from_raw_parts(p, size) };
        assert_eq!(first_not(bytes, 0), None, "recycled alloc_zeroed({size})");
        // SAFETY: live, freed once.
        unsafe { heap.dealloc(p) }.unwrap();
    }
    heap.check().unwrap();
}

/// Allocates `n` blocks of `size`, fills them with 0xFF, frees them all, and
/// decommits the free memory (the now retained SuperSlab). Returns the bytes
/// decommitted.
fn dirty_then_decommit<P: PageSource>(heap: &mut Heap<P>, size: usize, n: usize) -> usize {
    let blocks: Vec<_> = (0..n).map(|_| heap.alloc(size, 8)).collect();
    for &p in &blocks {
        // SAFETY: live blocks of `size` bytes, freed once.
        unsafe {
            p.write_bytes(0xFF, size);
            heap.dealloc(p).unwrap();
        }
    }
    // The current slab pins the SuperSlab until decommit_free's flush.
    assert_eq!(heap.stats().superslabs_retained, 0);
    let bytes = heap.decommit_free();
    assert_eq!(heap.stats().superslabs_retained, 1);
    bytes
}

#[test]
fn decommit_free_decommits_retained_superslabs_which_serve_again() {
    let pages = SimPages::new();
    let mut heap = Heap::new(&pages, config(2)).unwrap();
    let geo = *heap.geometry();
    let blocks = fill_superslabs(&mut heap, big_block(), 2);
    for &p in &blocks {
        free(&mut heap, p);
    }
    let s = consistent(&heap, &pages);
    // (One holds the current slab, pinned until decommit_free's flush.)
    assert_eq!((s.superslabs_mapped, s.superslabs_retained), (2, 1));
    assert!(s.free_blocks > 0);
    assert_eq!(heap.committed_free(), 2);
    let sim = pages.stats();
    let bytes = heap.decommit_free();
    let after = pages.stats();
    // One run of free units in each (the second SuperSlab's untouched units
    // are still fresh from the page source and need no decommit) — unless
    // that run lies within the header's page, where small units can.
    let calls = after.decommit_calls - sim.decommit_calls;
    if geo.unit_size() >= PAGE {
        assert_eq!(calls, 2);
    } else {
        assert!(calls == 1 || calls == 2, "{calls} decommit calls");
    }
    assert_eq!(
        after.decommitted_bytes - sim.decommitted_bytes,
        bytes as u64
    );
    let body = geo.superslab_size() - (geo.header_bytes as usize).next_multiple_of(PAGE);
    // (Units never used are still clean and need no decommit.)
    assert!(bytes > 0 && bytes <= 2 * body, "{bytes} of {body}");
    assert_eq!(
        after.mapped_bytes, sim.mapped_bytes,
        "decommit keeps the range"
    );
    let s = consistent(&heap, &pages);
    assert_eq!((s.superslabs_mapped, s.superslabs_retained), (2, 2));
    assert_eq!(
        s.free_blocks, 0,
        "decommit_free gives empty slabs' units back"
    );
    assert_eq!(heap.committed_free(), 0);
    // Nothing left to decommit.
    assert_eq!(heap.decommit_free(), 0);
    assert_eq!(pages.stats().decommit_calls, after.decommit_calls);

    // Both SuperSlabs serve again, without new ones.
    let again: Vec<_> = (0..blocks.len())
        .map(|_| heap.alloc(big_block(), 8))
        .collect();
    let s = consistent(&heap, &pages);
    assert_eq!(s.superslabs_created, 2);
    assert_eq!(s.held_blocks, blocks.len());
    for &p in &again {
        // SAFETY: live blocks.
        unsafe { p.write_bytes(0x77, big_block()) };
    }
    // What is still free was decommitted already.
    let sim = pages.stats();
    assert_eq!(heap.decommit_free(), 0);
    assert_eq!(pages.stats().decommit_calls, sim.decommit_calls);
    for &p in &again {
        // SAFETY: live blocks, untouched by the decommit; freed once.
        unsafe {
            let bytes = core::slice::from_raw_parts(p, big_block());
            assert_eq!(first_not(bytes, 0x77), None);
            heap.dealloc(p).unwrap();
        }
    }
    assert_eq!(heap.trim(), 2);
    assert_eq!(pages.mapped_bytes(), 0);
}

#[test]
#[cfg_attr(
    feature = "hardened",
    ignore = "pins block sizes and placement to the request size classes; hardened blocks also hold their canary (hardened.rs)"
)]
fn decommit_free_in_a_superslab_in_use() {
    // Free units of a SuperSlab that still holds blocks are decommitted too;
    // the live blocks keep their contents, and the decommitted units are
    // recommitted before they serve again.
    for cfg in decommit_configs() {
        let src = Dirty::<true>::new();
        let mut heap = Heap::new(&src, cfg).unwrap();
        let (size, n) = if heap.geometry().superslab_size() <= 16 << 10 {
            (512, 20)
        } else {
            (16 << 10, 100)
        };
        let blocks: Vec<_> = (0..n).map(|_| heap.alloc(size, 8)).collect();
        let mask = heap.geometry().superslab_mask();
        let base = blocks[0] as usize & mask;
        assert!(blocks.iter().all(|&p| p as usize & mask == base));
        let (live, gone) = blocks.split_at(blocks.len() / 3);
        for &p in live {
            // SAFETY: live blocks of `size` bytes.
            unsafe { p.write_bytes(0x5A, size) };
        }
        for &p in gone {
            // SAFETY: live blocks, dirtied, then freed once.
            unsafe {
                p.write_bytes(0xFF, size);
                heap.dealloc(p).unwrap();
            }
        }
        let before = heap.stats();
        let bytes = heap.decommit_free();
        assert!(bytes > 0);
        assert!(src.sim.stats().decommit_calls > 0);
        assert_eq!(heap.committed_free(), 0);
        let s = heap.stats();
        assert_eq!(s.held_blocks, live.len());
        assert_eq!(s.superslabs_mapped, before.superslabs_mapped);
        assert!(s.free_blocks <= before.free_blocks);
        heap.check().unwrap();
        for &p in live {
            assert!(!src.is_decommitted(p as usize, size));
            // SAFETY: live blocks of `size` bytes.
            let bytes = unsafe { core::slice::from_raw_parts(p, size) };
            assert_eq!(first_not(bytes, 0x5A), None, "a live block lost its data");
        }
        // Reuse: zeroed where asked, never from pages still decommitted.
        let created = s.superslabs_created;
        let mut again = Vec::new();
        for i in 0..gone.len() {
            let p = if i % 2 == 0 {
                heap.alloc_zeroed(size, 8)
            } else {
                heap.alloc(size, 8)
            };
            again.push(p);
            assert!(
                !src.is_decommitted(p as usize, size),
                "block at offset {:#x} uses pages decommitted and never recommitted \
                 (unit {} KiB, {} recommit calls)",
                p as usize - base,
                heap.geometry().unit_size() >> 10,
                src.recommits.get()
            );
            if i % 2 == 0 {
                // SAFETY: a live block of `size` bytes.
                let bytes = unsafe { core::slice::from_raw_parts(p, size) };
                assert_eq!(first_not(bytes, 0), None);
            }
        }
        assert!(src.recommits.get() > 0);
        assert_eq!(heap.stats().superslabs_created, created);
        for &p in live.iter().chain(&again) {
            // SAFETY: live blocks, freed once.
            unsafe { heap.dealloc(p) }.unwrap();
        }
        heap.check().unwrap();
    }
}

#[test]
fn alloc_zeroed_after_decommit_free_is_zero() {
    // Blocks in the header's page are not decommitted (whole pages only) and
    // still hold what they held; the others read zero after the decommit.
    for cfg in decommit_configs() {
        let pages = SimPages::new();
        let mut heap = Heap::new(&pages, cfg).unwrap();
        let (size, n) = decommit_load(&heap, true);
        assert!(dirty_then_decommit(&mut heap, size, n) > 0);
        let mut dirty = Vec::new();
        for _ in 0..n {
            let p = heap.alloc_zeroed(size, 8);
            // SAFETY: a live block of `size` bytes.
            let bytes = unsafe { core::slice::from_raw_parts(p, size) };
            if first_not(bytes, 0).is_some() {
                dirty.push(p as usize & !heap.geometry().superslab_mask());
            }
        }
        assert!(
            dirty.is_empty(),
            "{} alloc_zeroed blocks were not zero, at SuperSlab offsets {dirty:?}",
            dirty.len()
        );
    }
}

#[test]
fn blocks_reused_after_decommit_free_free_cleanly() {
    // The blocks below the first page boundary after the header are not
    // decommitted (whole pages only); they still carry the "free" mark of
    // their last free, which must not be taken for a double free.
    for cfg in decommit_configs() {
        let pages = SimPages::new();
        let mut heap = Heap::new(&pages, cfg).unwrap();
        let (size, n) = decommit_load(&heap, true);
        assert!(dirty_then_decommit(&mut heap, size, n) > 0);
        let blocks: Vec<_> = (0..n).map(|_| heap.alloc(size, 8)).collect();
        let mut refused = Vec::new();
        for &p in &blocks {
            // SAFETY: live blocks, freed once.
            if let Err(e) = unsafe { heap.dealloc(p) } {
                refused.push(e);
            }
        }
        assert!(
            refused.is_empty(),
            "{} valid frees refused after decommit_free, first: {}",
            refused.len(),
            refused[0]
        );
        heap.check().unwrap();
    }
}

#[test]
fn decommitted_memory_is_recommitted_before_reuse() {
    for cfg in decommit_configs() {
        let src = Dirty::<true>::new();
        let mut heap = Heap::new(&src, cfg).unwrap();
        let (size, n) = decommit_load(&heap, false);
        assert!(dirty_then_decommit(&mut heap, size, n) > 0);
        assert!(!src.decommitted.borrow().is_empty());
        let blocks: Vec<_> = (0..n).map(|_| heap.alloc(size, 8)).collect();
        let base = blocks[0] as usize & heap.geometry().superslab_mask();
        let bad: Vec<usize> = blocks
            .iter()
            .filter(|&&p| src.is_decommitted(p as usize, size))
            .map(|&p| p as usize - base)
            .collect();
        assert!(
            bad.is_empty(),
            "unit {} KiB: blocks handed out from decommitted pages never \
             recommitted ({} recommit calls), at offsets {bad:?}",
            heap.geometry().unit_size() >> 10,
            src.recommits.get()
        );
        assert!(src.recommits.get() > 0);
    }
}

#[test]
fn decommit_free_on_dirty_memory_leaves_it_reading_zero() {
    // With a source that maps dirty memory, decommitted units (which read as
    // zero afterwards) may skip clearing, and units that were not wholly
    // decommitted may not.
    for cfg in decommit_configs() {
        let src = Dirty::<false>::new();
        let mut heap = Heap::new(&src, cfg).unwrap();
        let (size, n) = decommit_load(&heap, true);
        assert!(dirty_then_decommit(&mut heap, size, n) > 0);
        for _ in 0..n {
            let p = heap.alloc_zeroed(size, 8);
            // SAFETY: a live block of `size` bytes.
            let bytes = unsafe { core::slice::from_raw_parts(p, size) };
            assert_eq!(first_not(bytes, 0), None, "{p:p}");
        }
        heap.check().unwrap();
    }
}

#[test]
fn a_heap_built_in_place_works_like_one_built_by_value() {
    let pages = SimPages::new();
    let mut slot = std::mem::MaybeUninit::<Heap<&SimPages>>::uninit();
    // A bad configuration is refused before anything is written.
    let mut bad = config(1);
    bad.superslab_shift = 40;
    assert!(Heap::new_in(&mut slot, &pages, bad).is_err());
    let heap = Heap::new_in(&mut slot, &pages, config(1)).unwrap();
    heap.check().unwrap();
    assert_eq!(heap.stats(), Heap::new(&pages, config(1)).unwrap().stats());
    let blocks: Vec<_> = (0..100).map(|i| heap.alloc(16 + i * 8, 8)).collect();
    assert!(blocks.iter().all(|p| !p.is_null()));
    assert_eq!(consistent(heap, &pages).held_blocks, 100);
    for p in blocks {
        free(heap, p);
    }
    heap.trim();
    assert_eq!(pages.mapped_bytes(), 0);
    // SAFETY: `new_in` initialised the slot; the heap is dropped once.
    unsafe { slot.assume_init_drop() };
}
