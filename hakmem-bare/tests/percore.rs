//! `PerCoreHeap` on the host, std threads standing in for cores (the core
//! number is a thread-local index): each core allocates from its own heap,
//! frees of another core's blocks go to their owner, an idle core's memory
//! serves the others, everything goes back to the region, and the
//! refusals of `init` and `claim` are those of `BareHeap`.

mod common;

use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;
use std::sync::Mutex;
use std::thread;

use common::{Arena, Rng};
use hakmem_bare::{BareError, PerCoreHeap, SpinLock, BARE_CONFIG};

const KIB: usize = 1024;
const SS: usize = 16 * KIB;

thread_local! {
    static CORE: Cell<usize> = const { Cell::new(0) };
}

/// The "core" the calling thread runs on.
fn core_id() -> usize {
    CORE.with(|c| c.get())
}

/// Runs `f` on a thread that says it is core `core`.
fn on_core<R: Send>(core: usize, f: impl FnOnce() -> R + Send) -> R {
    thread::scope(|s| {
        s.spawn(|| {
            CORE.with(|c| c.set(core));
            f()
        })
        .join()
        .unwrap()
    })
}

/// An arena that lives as long as the test binary (the heaps are statics).
fn arena(len: usize) -> &'static Arena {
    Box::leak(Box::new(Arena::aligned(len, SS)))
}

fn layout(size: usize) -> Layout {
    Layout::from_size_align(size, 8).unwrap()
}

/// Blocks as addresses, to hand between threads.
type Blocks = Vec<usize>;

/// Allocates `size`-byte blocks until the calling core's heap says no
/// (at most `max`), tagging each; checks they lie in `a`.
fn fill<const N: usize>(
    heap: &PerCoreHeap<SpinLock, N>,
    a: &Arena,
    size: usize,
    max: usize,
) -> Blocks {
    let mut v = Vec::new();
    while v.len() < max {
        // SAFETY: a non-zero layout.
        let p = unsafe { heap.alloc(layout(size)) };
        if p.is_null() {
            break;
        }
        assert!(a.holds(p, size), "block {p:?} outside the region");
        // SAFETY: a fresh block of `size` bytes.
        unsafe { p.write_bytes(v.len() as u8, size) };
        v.push(p as usize);
    }
    v
}

/// Checks the tags of `fill` and frees the blocks from the calling core.
fn free_all<const N: usize>(heap: &PerCoreHeap<SpinLock, N>, blocks: Blocks, size: usize) {
    for (i, p) in blocks.into_iter().enumerate() {
        let p = p as *mut u8;
        // SAFETY: a live block of `size` bytes that `fill` tagged.
        let bytes = unsafe { std::slice::from_raw_parts(p, size) };
        assert!(bytes.iter().all(|&b| b == i as u8), "block {i} overwritten");
        // SAFETY: a live block of ours with this layout.
        unsafe { heap.dealloc(p, layout(size)) };
    }
}

fn held(heap: &PerCoreHeap<SpinLock, 2>, core: usize) -> usize {
    heap.stats(core).unwrap().heap.held_blocks
}

#[test]
fn each_core_allocates_from_its_own_heap_and_frees_go_to_the_owner() {
    static HEAP: PerCoreHeap<SpinLock, 2> = PerCoreHeap::new(BARE_CONFIG, None, core_id);
    let a = arena(4 * SS);
    // SAFETY: the arena is used by nothing but the heap from now on.
    unsafe { HEAP.init(a.start(), a.len()) }.unwrap();

    let mine = on_core(0, || fill(&HEAP, a, 48, 100));
    let theirs = on_core(1, || fill(&HEAP, a, 48, 30));
    assert_eq!((held(&HEAP, 0), held(&HEAP, 1)), (100, 30));

    // Core 1 frees core 0's blocks: core 0's count drops at once (they are
    // pending for it), core 1's own stays.
    on_core(1, || free_all(&HEAP, mine, 48));
    assert_eq!((held(&HEAP, 0), held(&HEAP, 1)), (0, 30));
    assert_eq!(HEAP.live_bytes(), 30 * 48);
    HEAP.with_core(0, |h| h.core().check().unwrap()).unwrap();
    HEAP.with_core(1, |h| h.core().check().unwrap()).unwrap();

    // Core 0 gets them back (it collects when its slab runs dry).
    let again = on_core(0, || fill(&HEAP, a, 48, 100));
    assert_eq!(again.len(), 100);
    on_core(0, || free_all(&HEAP, again, 48));
    on_core(0, || free_all(&HEAP, theirs, 48));
    assert_eq!((held(&HEAP, 0), held(&HEAP, 1)), (0, 0));
    assert_eq!(HEAP.live_bytes(), 0);

    HEAP.trim();
    assert_eq!(HEAP.region_stats().mapped_bytes, 0, "all memory went back");
    a.check_guards();
}

#[test]
#[cfg_attr(
    feature = "hardened",
    ignore = "pins how many blocks fit the arena; hardened blocks also hold their canary"
)]
fn an_idle_cores_memory_serves_another_core() {
    static HEAP: PerCoreHeap<SpinLock, 2> = PerCoreHeap::new(BARE_CONFIG, None, core_id);
    let a = arena(4 * SS);
    // SAFETY: the arena is used by nothing but the heap from now on.
    unsafe { HEAP.init(a.start(), a.len()) }.unwrap();

    // Core 0 takes all the memory, core 1 frees it all, and core 0 goes
    // idle with its (now empty) SuperSlabs.
    let blocks = on_core(0, || fill(&HEAP, a, 64, usize::MAX));
    let n = blocks.len();
    assert!(n * 64 >= 3 * SS, "only {n} blocks of 64 B in 64 KiB");
    on_core(1, || free_all(&HEAP, blocks, 64));
    assert!(HEAP.stats(0).unwrap().heap.superslabs_mapped >= 4);

    // Core 1, out of memory, takes core 0's back through the region: as
    // many blocks as core 0 had, and in another size class.
    let mine = on_core(1, || fill(&HEAP, a, 64, usize::MAX));
    assert_eq!(mine.len(), n, "core 1 got the idle core's memory");
    assert_eq!(HEAP.stats(0).unwrap().heap.superslabs_mapped, 0);
    on_core(1, || free_all(&HEAP, mine, 64));
    let big = on_core(1, || fill(&HEAP, a, 256, usize::MAX));
    assert!(big.len() * 256 >= 3 * SS);
    on_core(1, || free_all(&HEAP, big, 256));

    HEAP.trim();
    assert_eq!(HEAP.region_stats().mapped_bytes, 0);
    assert_eq!(HEAP.live_bytes(), 0);
    a.check_guards();
}

#[test]
fn four_cores_churn_and_free_each_others_blocks() {
    static HEAP: PerCoreHeap<SpinLock, 4> = PerCoreHeap::new(BARE_CONFIG, None, core_id);
    let a = arena(32 * SS);
    // SAFETY: the arena is used by nothing but the heap from now on.
    unsafe { HEAP.init(a.start(), a.len()) }.unwrap();
    // Blocks any core may free: (address, size, tag).
    let pool: Mutex<Vec<(usize, usize, u8)>> = Mutex::new(Vec::new());
    thread::scope(|s| {
        for core in 0..4 {
            let pool = &pool;
            s.spawn(move || {
                CORE.with(|c| c.set(core));
                let mut rng = Rng(core as u64 + 1);
                for i in 0..4000 {
                    if rng.below(3) != 0 {
                        let size = 1 + rng.below(1500);
                        // SAFETY: a non-zero layout.
                        let p = unsafe { HEAP.alloc(layout(size)) };
                        if !p.is_null() {
                            assert!(a.holds(p, size));
                            // SAFETY: a fresh block of `size` bytes.
                            unsafe { p.write_bytes(i as u8, size) };
                            pool.lock().unwrap().push((p as usize, size, i as u8));
                        }
                    } else {
                        let b = {
                            let mut g = pool.lock().unwrap();
                            let n = g.len();
                            (n > 0).then(|| g.swap_remove(rng.below(n)))
                        };
                        if let Some((p, size, tag)) = b {
                            let p = p as *mut u8;
                            // SAFETY: a live block, filled with `tag`.
                            let body = unsafe { std::slice::from_raw_parts(p, size) };
                            assert!(body.iter().all(|&x| x == tag), "block overwritten");
                            // SAFETY: live, allocated with this layout.
                            unsafe { HEAP.dealloc(p, layout(size)) };
                        }
                    }
                }
            });
        }
    });
    for (p, size, _) in pool.into_inner().unwrap() {
        // SAFETY: live blocks left in the pool.
        unsafe { HEAP.dealloc(p as *mut u8, layout(size)) };
    }
    assert_eq!(HEAP.live_bytes(), 0);
    HEAP.trim();
    for c in 0..4 {
        let st = HEAP.stats(c).unwrap();
        assert_eq!(st.heap.held_blocks, 0, "core {c}");
        HEAP.with_core(c, |h| h.core().check().unwrap()).unwrap();
    }
    assert_eq!(HEAP.region_stats().mapped_bytes, 0);
    a.check_guards();
}

#[test]
fn init_and_claim_refuse_as_bare_heap_does_and_write_nothing() {
    static HEAP: PerCoreHeap<SpinLock, 2> = PerCoreHeap::new(BARE_CONFIG, None, core_id);
    let a = arena(2 * SS);
    // 200 B: no whole page at a chunk boundary.
    let tiny = Box::leak(Box::new(Arena::new(200, SS, 3)));
    // A boundary with 512 B after it: less than the smallest large block.
    let misaligned = Box::leak(Box::new(Arena::new(4 * KIB + 512, SS, SS - 4 * KIB)));
    // SAFETY: refused regions are not written; nothing else uses them.
    unsafe {
        assert_eq!(
            HEAP.claim(a.start(), a.len()),
            Err(BareError::NotInitialized)
        );
        assert_eq!(
            HEAP.init(tiny.start(), tiny.len()),
            Err(BareError::TooSmall)
        );
        assert_eq!(
            HEAP.init(misaligned.start(), misaligned.len()),
            Err(BareError::TooSmall)
        );
        assert_eq!(HEAP.init(a.start(), 0), Err(BareError::ZeroLength));
        assert!(!HEAP.is_initialized());
        // SAFETY: nothing but the heap uses the arena from now on.
        HEAP.init(a.start(), a.len()).unwrap();
        assert_eq!(
            HEAP.init(tiny.start(), tiny.len()),
            Err(BareError::AlreadyInitialized)
        );
        assert_eq!(HEAP.claim(a.start().add(SS), SS), Err(BareError::Overlap));
    }
    assert!(tiny.untouched() && misaligned.untouched());
    tiny.check_guards();
    misaligned.check_guards();
    // A refused first `init` left the heap usable.
    let v = on_core(1, || fill(&HEAP, a, 100, 10));
    assert_eq!(v.len(), 10);
    on_core(0, || free_all(&HEAP, v, 100));
    assert_eq!(HEAP.live_bytes(), 0);
}
