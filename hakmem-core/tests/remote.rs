//! Remote frees with real threads on one shared `SimPages`. Paths forced:
//! `free_remote` → `locate` → `remote::push` onto a SuperSlab's lock-free
//! list (and `remote::free_large`, which decommits at once), a foreign
//! heap's `dealloc` forwarding there, and the owner's `Heap::collect`
//! (`collect_superslab`, `collect_large`) taking the lists back — with the
//! owner idle, with the owner collecting and allocating concurrently, and
//! after the heap itself moved to another thread.

use std::ptr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;

use hakmem_core::sim::SimPages;
use hakmem_core::{free_remote, Config, FreeError, FreeErrorKind, Heap, Stats};

const THREADS: usize = 4;
const PER_THREAD: usize = if cfg!(miri) { 12 } else { 2_000 };
const N: usize = THREADS * PER_THREAD;
/// Slab classes in both geometries (`Config::SMALL` serves up to 896 B).
const SIZES: [usize; 4] = [16, 48, 256, 640];

fn config(retain: usize) -> Config {
    let mut c = if cfg!(miri) {
        // The large and small tiers as they were designed for: this suite
        // tests them (tests/medium.rs and the model test cover the medium tier).
        Config {
            medium: false,
            ..Config::SMALL
        }
    } else {
        Config::DEFAULT
    };
    c.retain = retain;
    c
}

/// A block on its way to the thread that frees it.
#[derive(Clone, Copy, Debug)]
struct Sent {
    ptr: *mut u8,
    /// The value the owner wrote into its first word.
    value: u64,
}

// SAFETY: a `Sent` hands a block from the thread that allocated it to the
// one thread that frees it; the sender does not touch the block afterwards,
// and the block's memory stays mapped until the owner collects the free.
unsafe impl Send for Sent {}

/// Allocates `n` blocks of the `SIZES`, each tagged with its index.
fn alloc_blocks(heap: &mut Heap<&SimPages>, n: usize) -> Vec<Sent> {
    (0..n)
        .map(|i| {
            let p = heap.alloc(SIZES[i % SIZES.len()], 8);
            assert!(!p.is_null());
            // SAFETY: a fresh block of at least 16 bytes.
            unsafe { p.cast::<u64>().write(i as u64) };
            Sent {
                ptr: p,
                value: i as u64,
            }
        })
        .collect()
}

/// Frees `blocks` from `THREADS` threads (round robin), checking each
/// block's content first.
fn free_from_threads(pages: &SimPages, geo: hakmem_core::Geometry, blocks: &[Sent]) {
    thread::scope(|s| {
        for t in 0..THREADS {
            let mine: Vec<Sent> = blocks.iter().skip(t).step_by(THREADS).copied().collect();
            s.spawn(move || {
                for b in mine {
                    // SAFETY: each block is live and freed exactly once, here.
                    unsafe {
                        assert_eq!(b.ptr.cast::<u64>().read(), b.value);
                        free_remote(pages, &geo, b.ptr).unwrap();
                    }
                }
            });
        }
    });
}

fn class_held(s: &Stats) -> usize {
    s.classes.iter().map(|c| c.held_blocks).sum()
}

#[test]
fn remote_frees_stay_pending_until_collected_then_superslabs_go_back() {
    let pages = SimPages::new();
    let mut heap = Heap::new(&pages, config(0)).unwrap();
    let geo = *heap.geometry();
    let blocks = alloc_blocks(&mut heap, N);
    let live = heap.stats();
    assert_eq!(live.held_blocks, N);
    let sim = pages.stats();

    free_from_threads(&pages, geo, &blocks);

    let s = heap.stats();
    assert_eq!(s.pending_remote, N);
    assert_eq!(s.held_blocks, 0, "pending blocks are not held");
    // Per class, pending blocks still count until collected (documented),
    // and so do their bytes.
    assert_eq!(class_held(&s), N);
    assert_eq!(s.held_bytes, live.held_bytes);
    assert_eq!(
        s.free_blocks, live.free_blocks,
        "pending blocks are not free"
    );
    assert_eq!(s.superslabs_mapped, live.superslabs_mapped);
    assert_eq!(pages.stats(), sim, "pushers must not touch the page source");
    heap.check().unwrap();

    assert_eq!(heap.collect(), N);
    let s = heap.stats();
    assert_eq!(s.pending_remote, 0);
    assert_eq!(s.held_blocks, 0);
    assert_eq!(s.held_bytes, 0);
    assert_eq!(class_held(&s), 0);
    heap.check().unwrap();
    // Retain 0: every SuperSlab that became empty went back, the ones of
    // current slabs (pinned, `account.rs`) at the flush.
    heap.flush();
    let s = heap.stats();
    assert_eq!(s.superslabs_mapped, 0);
    assert_eq!(s.superslabs_released, s.superslabs_created);
    assert_eq!(pages.mapped_bytes(), 0);
    assert_eq!(pages.live_regions(), 0);
    assert_eq!(heap.collect(), 0);
}

#[test]
fn collected_blocks_are_reused_and_survivors_intact() {
    let pages = SimPages::new();
    let mut heap = Heap::new(&pages, config(1)).unwrap();
    let geo = *heap.geometry();
    let blocks = alloc_blocks(&mut heap, N);
    let (remote, local): (Vec<Sent>, Vec<Sent>) = blocks.iter().partition(|b| b.value % 3 != 0);

    free_from_threads(&pages, geo, &remote);
    let s = heap.stats();
    assert_eq!(s.pending_remote, remote.len());
    assert_eq!(s.held_blocks, local.len());
    assert_eq!(heap.collect(), remote.len());
    let s = heap.stats();
    assert_eq!(s.pending_remote, 0);
    assert_eq!(s.held_blocks, local.len());
    assert_eq!(class_held(&s), local.len());
    heap.check().unwrap();

    // The collected blocks serve new allocations without new SuperSlabs.
    let created = s.superslabs_created;
    let again = alloc_blocks(&mut heap, remote.len());
    assert_eq!(heap.stats().superslabs_created, created);
    assert_eq!(heap.stats().held_blocks, N);
    for b in local.iter().chain(again.iter()) {
        // SAFETY: live blocks, each freed once.
        unsafe {
            assert_eq!(b.ptr.cast::<u64>().read(), b.value);
            heap.dealloc(b.ptr).unwrap();
        }
    }
    assert_eq!(heap.stats().held_blocks, 0);
    heap.check().unwrap();
    heap.trim();
    assert_eq!(pages.mapped_bytes(), 0);
}

#[test]
fn owner_collects_and_allocates_while_threads_free() {
    let pages = SimPages::new();
    let mut heap = Heap::new(&pages, config(1)).unwrap();
    let geo = *heap.geometry();
    let blocks = alloc_blocks(&mut heap, N);
    // Frees completed so far, and threads finished.
    let freed = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let mut local: Vec<*mut u8> = Vec::new();
    thread::scope(|s| {
        for t in 0..THREADS {
            let mine: Vec<Sent> = blocks.iter().skip(t).step_by(THREADS).copied().collect();
            let (pages, freed, done) = (&pages, &freed, &done);
            s.spawn(move || {
                for b in mine {
                    // SAFETY: each block is live and freed exactly once, here.
                    unsafe {
                        assert_eq!(b.ptr.cast::<u64>().read(), b.value);
                        free_remote(pages, &geo, b.ptr).unwrap();
                    }
                    freed.fetch_add(1, Ordering::Release);
                }
                done.fetch_add(1, Ordering::Release);
            });
        }
        // Meanwhile the owner works on the same SuperSlabs (and its `alloc`
        // collects by itself when it needs a new slab).
        let mut round = 0usize;
        while done.load(Ordering::Acquire) < THREADS {
            round += 1;
            if round % 3 == 0 && local.len() < 16 {
                let p = heap.alloc(32, 8);
                assert!(!p.is_null());
                local.push(p);
            } else if round % 3 == 1 {
                if let Some(p) = local.pop() {
                    // SAFETY: a live local block, freed once.
                    unsafe { heap.dealloc(p) }.unwrap();
                }
            } else {
                heap.collect();
            }
            // Whatever the interleaving, the blocks not held are exactly those
            // whose free has begun: all that completed before the snapshot,
            // at most one more per thread.
            let before = freed.load(Ordering::Acquire);
            let st = heap.stats();
            let after = freed.load(Ordering::Acquire);
            let gone = N + local.len() - st.held_blocks;
            assert!(
                before <= gone && gone <= after + THREADS && gone <= N,
                "held {} pending {} freed {before}..{after} local {} round {round}",
                st.held_blocks,
                st.pending_remote,
                local.len()
            );
            assert!(st.pending_remote <= gone);
            if cfg!(miri) || round % 8 == 0 {
                heap.check().unwrap();
            }
            thread::yield_now();
        }
    });
    heap.collect();
    let st = heap.stats();
    assert_eq!(st.pending_remote, 0);
    assert_eq!(st.held_blocks, local.len());
    heap.check().unwrap();
    for p in local {
        // SAFETY: live local blocks, freed once.
        unsafe { heap.dealloc(p) }.unwrap();
    }
    assert_eq!(heap.stats().held_blocks, 0);
    heap.trim();
    assert_eq!(pages.mapped_bytes(), 0);
}

#[test]
fn another_heaps_dealloc_forwards_to_the_remote_path() {
    let pages = SimPages::new();
    let mut a = Heap::new(&pages, config(1)).unwrap();
    let mut b = Heap::new(&pages, config(1)).unwrap();
    let large_size = a.geometry().max_slab_size() + 3 * 4096;
    let pa = a.alloc(48, 8);
    let qa = a.alloc(48, 8);
    let la = a.alloc(large_size, 16);
    let pb = b.alloc(48, 8);
    assert!(![pa, qa, la, pb].iter().any(|p| p.is_null()));
    let b_before = b.stats();
    let a_before = a.stats();

    // SAFETY: `pa` and `la` are live blocks of `a`, freed once, not used after.
    unsafe {
        b.dealloc(pa).unwrap();
        b.dealloc(la).unwrap();
    }
    assert_eq!(b.stats(), b_before, "the forwarding heap's figures moved");
    b.check().unwrap();
    let s = a.stats();
    assert!(s.pending_remote >= 1, "{s:?}");
    // Every block of `a` is held or pending (the large one may still count
    // as held; see `large_block_freed_remotely_is_not_held`).
    assert_eq!(s.held_blocks + s.pending_remote, a_before.held_blocks);
    assert_eq!(
        s.classes, a_before.classes,
        "pending blocks count per class"
    );

    // `b` may query and resize `a`'s blocks too; a move frees remotely.
    // SAFETY: `qa` is a live block of `a`.
    unsafe {
        assert_eq!(b.usable_size(qa), Ok(48));
        let moved = b.realloc(qa, 1000, 8).unwrap();
        assert!(!moved.is_null() && moved != qa);
        assert_eq!(b.stats().held_blocks, b_before.held_blocks + 1);
        let s = a.stats();
        assert_eq!(s.held_blocks + s.pending_remote, a_before.held_blocks);
        assert!(s.held_blocks <= 1, "{s:?}");
        b.dealloc(moved).unwrap();
    }

    // `b` batches the blocks it freed into `a` per slab; they are pending
    // (counted) at once, and reach `a`'s lists when `b` hands its batches
    // over — when one fills, or when `b` collects, flushes or is dropped.
    b.collect();
    assert_eq!(a.collect(), 3);
    let s = a.stats();
    assert_eq!(s.pending_remote, 0);
    assert_eq!(s.held_blocks, 0);
    assert_eq!(s.large_count, 0);
    a.check().unwrap();
    // SAFETY: `pb` is a live block of `b`.
    unsafe { b.dealloc(pb) }.unwrap();
    b.trim();
    a.trim();
    assert_eq!(pages.mapped_bytes(), 0);
}

#[test]
fn heap_with_pending_frees_moves_to_another_thread() {
    let pages = SimPages::new();
    let mut heap = Heap::new(&pages, config(0)).unwrap();
    let geo = *heap.geometry();
    let blocks = alloc_blocks(&mut heap, N);
    let (remote, local): (Vec<Sent>, Vec<Sent>) = blocks.iter().partition(|b| b.value % 2 == 0);
    free_from_threads(&pages, geo, &remote);
    assert_eq!(heap.stats().pending_remote, remote.len());
    let id = heap.id();

    // The heap (over `&SimPages`, so `Send`) changes hands; its pending
    // frees live in its SuperSlabs and go with it.
    let (mut heap, local) = thread::scope(|s| {
        s.spawn(move || {
            assert_eq!(heap.id(), id);
            let st = heap.stats();
            assert_eq!(st.pending_remote, remote.len());
            assert_eq!(st.held_blocks, local.len());
            assert_eq!(heap.collect(), remote.len());
            let st = heap.stats();
            assert_eq!(st.pending_remote, 0);
            assert_eq!(st.held_blocks, local.len());
            heap.check().unwrap();
            // The new owner frees half of what is left, locally.
            for b in local.iter().take(local.len() / 2) {
                // SAFETY: live blocks of this heap, freed once.
                unsafe {
                    assert_eq!(b.ptr.cast::<u64>().read(), b.value);
                    heap.dealloc(b.ptr).unwrap();
                }
            }
            (heap, local)
        })
        .join()
        .unwrap()
    });
    let rest = &local[local.len() / 2..];
    assert_eq!(heap.stats().held_blocks, rest.len());
    for b in rest {
        // SAFETY: live blocks of this heap, freed once.
        unsafe {
            assert_eq!(b.ptr.cast::<u64>().read(), b.value);
            heap.dealloc(b.ptr).unwrap();
        }
    }
    heap.check().unwrap();
    // (Current slabs pin their SuperSlabs until a flush.)
    heap.flush();
    let st = heap.stats();
    assert_eq!(st.held_blocks, 0);
    assert_eq!(st.superslabs_mapped, 0);
    assert_eq!(pages.mapped_bytes(), 0);
}

#[test]
fn remote_double_free_is_detected() {
    let pages = SimPages::new();
    let mut heap = Heap::new(&pages, config(1)).unwrap();
    let geo = *heap.geometry();
    let keep = heap.alloc(64, 8);
    let p = heap.alloc(64, 8);
    let cached = heap.alloc(64, 8);
    // SAFETY: a live block of this heap, freed once; it goes to the magazine.
    unsafe { heap.dealloc(cached) }.unwrap();
    let sent = [
        Sent { ptr: p, value: 0 },
        Sent {
            ptr: cached,
            value: 0,
        },
    ];

    let results = thread::scope(|s| {
        let pages = &pages;
        s.spawn(move || {
            let [p, cached] = sent;
            // SAFETY: `p` is live and freed once; the other calls hand
            // blocks that are already free, which must only be inspected.
            unsafe {
                [
                    free_remote(pages, &geo, p.ptr),
                    free_remote(pages, &geo, p.ptr),
                    free_remote(pages, &geo, cached.ptr),
                ]
            }
        })
        .join()
        .unwrap()
    });
    let double = |ptr: *mut u8| {
        Err(FreeError {
            ptr: ptr as usize,
            kind: FreeErrorKind::DoubleFree,
        })
    };
    assert_eq!(results, [Ok(()), double(p), double(cached)]);
    let st = heap.stats();
    assert_eq!(st.pending_remote, 1);
    assert_eq!(st.held_blocks, 1);
    heap.check().unwrap();
    // The owner sees the pending block as freed too.
    // SAFETY: `p` is pending; `dealloc` must refuse it.
    assert_eq!(unsafe { heap.dealloc(p) }, double(p));
    assert_eq!(heap.stats(), st);

    assert_eq!(heap.collect(), 1);
    // Now on its slab's free list (`keep` holds the slab).
    // SAFETY: as above.
    assert_eq!(unsafe { free_remote(&pages, &geo, p) }, double(p));
    assert_eq!(heap.stats().pending_remote, 0);
    heap.check().unwrap();
    // SAFETY: `keep` is live, freed once.
    unsafe { heap.dealloc(keep) }.unwrap();
    assert_eq!(heap.stats().held_blocks, 0);
}

/// The sizes of a large block whose body spans whole pages after its
/// header page, so that a remote free has something to decommit.
fn large_size(heap: &Heap<&SimPages>) -> usize {
    heap.geometry().max_slab_size() + 5 * 4096
}

#[test]
fn remote_free_of_a_large_block_decommits_and_owner_unmaps_on_collect() {
    let pages = SimPages::new();
    let mut heap = Heap::new(&pages, config(1)).unwrap();
    let geo = *heap.geometry();
    let size = large_size(&heap);
    let keep = heap.alloc(size, 16);
    let l = heap.alloc(size, 16);
    // SAFETY: a fresh block of `size` bytes.
    unsafe { l.write_bytes(0xA5, size) };
    let before = heap.stats();
    assert_eq!(before.large_count, 2);
    let sim = pages.stats();

    let sent = Sent { ptr: l, value: 0 };
    let (first, second) = thread::scope(|s| {
        let pages = &pages;
        s.spawn(move || {
            let sent = sent;
            // SAFETY: `l` is live and freed once; the second call must
            // only inspect it.
            unsafe {
                (
                    free_remote(pages, &geo, sent.ptr),
                    free_remote(pages, &geo, sent.ptr),
                )
            }
        })
        .join()
        .unwrap()
    });
    assert_eq!(first, Ok(()));
    assert_eq!(
        second,
        Err(FreeError {
            ptr: l as usize,
            kind: FreeErrorKind::DoubleFree
        })
    );
    let after = pages.stats();
    assert_eq!(after.decommit_calls, sim.decommit_calls + 1);
    assert!(after.decommitted_bytes > sim.decommitted_bytes);
    assert_eq!(
        after.live_regions, sim.live_regions,
        "only the owner unmaps"
    );
    // Until collected, the owner still lists it.
    assert_eq!(heap.stats().large_count, 2);
    // SAFETY: `l` was freed remotely; the owner must refuse it.
    let r = unsafe { heap.dealloc(l) };
    assert_eq!(r.map_err(|e| e.kind), Err(FreeErrorKind::DoubleFree));

    assert_eq!(heap.collect(), 1);
    let st = heap.stats();
    assert_eq!(st.large_count, 1);
    assert_eq!(st.large_bytes, size);
    assert_eq!(st.held_blocks, 1);
    assert_eq!(pages.live_regions(), sim.live_regions - 1);
    assert_eq!(pages.mapped_bytes(), st.mapped_bytes);
    heap.check().unwrap();
    // Gone: its address is no longer the page source's.
    // SAFETY: as above.
    let r = unsafe { free_remote(&pages, &geo, l) };
    assert_eq!(r.map_err(|e| e.kind), Err(FreeErrorKind::NotOurs));
    // SAFETY: `keep` is live, freed once.
    unsafe { heap.dealloc(keep) }.unwrap();
    assert_eq!(pages.mapped_bytes(), 0);
}

#[test]
fn large_block_freed_remotely_is_not_held() {
    // `Stats::held_blocks` is documented as exact, "blocks pending remote
    // collection are not counted"; `pending_remote` counts "blocks freed by
    // other threads and not yet collected". A large block is a block.
    let pages = SimPages::new();
    let mut heap = Heap::new(&pages, config(1)).unwrap();
    let geo = *heap.geometry();
    let size = large_size(&heap);
    let l = heap.alloc(size, 16);
    let small = heap.alloc(16, 8);
    let before = heap.stats();
    assert_eq!(before.held_blocks, 2);
    let sent = Sent { ptr: l, value: 0 };
    thread::scope(|s| {
        let pages = &pages;
        s.spawn(move || {
            let sent = sent;
            // SAFETY: `l` is live and freed once.
            unsafe { free_remote(pages, &geo, sent.ptr) }.unwrap();
        });
    });
    let st = heap.stats();
    assert_eq!(
        (st.held_blocks, st.pending_remote),
        (1, 1),
        "a large block freed by another thread is still counted as held \
         (large_count {}, large_bytes {})",
        st.large_count,
        st.large_bytes
    );
    heap.collect();
    assert_eq!(heap.stats().held_blocks, 1);
    // SAFETY: live, freed once.
    unsafe { heap.dealloc(small) }.unwrap();
}

/// The owner's collection joins a remote list to the slab's free list in
/// three ways (`remote::collect_slab`): as the whole free list (the slab
/// ran dry), behind a free list no longer than the list, or walked in front
/// of a longer one. Forces each (a slab of 16 B blocks run dry by
/// allocation, then `local` blocks freed by the owner and `remote` by
/// another thread), and checks that the counts stay exact and that every
/// freed block comes back exactly once.
#[test]
fn collected_lists_join_the_free_list_every_way() {
    use std::collections::HashSet;
    for (local, remote) in [(0, 5), (2, 9), (9, 2), (5, 5), (0, 1), (1, 0)] {
        let pages = SimPages::new();
        let mut heap = Heap::new(&pages, config(0)).unwrap();
        let geo = *heap.geometry();
        // Fill the first slab of the class: its free list and bump run out
        // exactly when the next block comes from another slab.
        let first = heap.alloc(16, 8);
        let slab_of = |p: *mut u8| p as usize >> geo.unit_shift;
        let mut blocks = vec![first];
        loop {
            let p = heap.alloc(16, 8);
            assert!(!p.is_null());
            if slab_of(p) != slab_of(first) {
                // SAFETY: a live block of ours, freed once.
                unsafe { heap.dealloc(p).unwrap() };
                break;
            }
            blocks.push(p);
        }
        for &p in &blocks {
            // SAFETY: a live block of at least 16 bytes.
            unsafe { p.cast::<u64>().write(0) };
        }
        let (mine, rest) = blocks.split_at(local);
        let theirs: Vec<Sent> = rest[..remote]
            .iter()
            .map(|&ptr| Sent { ptr, value: 0 })
            .collect();
        for &p in mine {
            // SAFETY: live blocks of ours, each freed once.
            unsafe { heap.dealloc(p).unwrap() };
        }
        free_from_threads(&pages, geo, &theirs);
        let held = blocks.len() - local - remote;
        assert_eq!(heap.stats().held_blocks, held);
        heap.check().unwrap();
        assert_eq!(heap.collect(), remote);
        let s = heap.stats();
        assert_eq!((s.held_blocks, s.pending_remote), (held, 0));
        heap.check().unwrap();
        // Every freed block is handed out again, once, before the heap
        // carves anything new of the first slab.
        let freed: HashSet<usize> = blocks[..local + remote]
            .iter()
            .map(|&p| p as usize)
            .collect();
        let mut again = HashSet::new();
        while again.len() < freed.len() {
            let p = heap.alloc(16, 8);
            assert!(!p.is_null());
            if slab_of(p) == slab_of(first) {
                assert!(freed.contains(&(p as usize)), "{p:?} was not freed");
                assert!(again.insert(p as usize), "{p:?} handed out twice");
            }
        }
        heap.check().unwrap();
    }
}

#[test]
fn interleaved_frees_of_many_classes_stay_batched_per_class() {
    // A producer/consumer ring's consumer frees blocks of every class its
    // producer allocates, in no order: each class keeps its own batch, so
    // no block reaches the owner's lists until a batch fills or the freeing
    // heap hands its batches over (one compare-and-swap a class, not one
    // per block or two).
    let pages = SimPages::new();
    let mut a = Heap::new(&pages, config(1)).unwrap();
    let mut b = Heap::new(&pages, config(1)).unwrap();
    // The ring's sizes, 16..512 B: 24 classes.
    let sizes: Vec<usize> = (1..=16)
        .map(|i| 16 * i)
        .chain((1..=8).map(|i| 256 + 32 * i))
        .collect();
    let per_class = 8;
    let mut blocks = Vec::new();
    for _ in 0..per_class {
        for &s in &sizes {
            let p = a.alloc(s, 8);
            assert!(!p.is_null());
            blocks.push(p);
        }
    }
    let held = a.stats().held_blocks;
    for &p in &blocks {
        // SAFETY: live blocks of `a`, each freed once, not used after.
        unsafe { b.dealloc(p) }.unwrap();
    }
    b.check().unwrap();
    let s = a.stats();
    assert_eq!(s.pending_remote, blocks.len(), "{s:?}");
    assert_eq!(s.held_blocks + s.pending_remote, held);
    assert_eq!(a.collect(), 0, "a batch was pushed before it filled");
    b.collect();
    assert_eq!(a.collect(), blocks.len());
    let s = a.stats();
    assert_eq!((s.pending_remote, s.held_blocks), (0, 0), "{s:?}");
    a.check().unwrap();
    b.check().unwrap();
}

#[test]
fn the_fast_free_says_which_path_takes_what_it_refused() {
    use hakmem_core::{FastFree, FAST_PATHS};
    let pages = SimPages::new();
    let mut a = Heap::new(&pages, config(1)).unwrap();
    let mut b = Heap::new(&pages, config(1)).unwrap();
    let p = a.alloc(48, 8);
    let q = a.alloc(48, 8);
    let held = a.stats().held_blocks;
    // SAFETY: `p` and `q` are live blocks of `a`; each is freed once (the
    // second free of `q` is refused, as a double free must be).
    unsafe {
        if !FAST_PATHS {
            // The hardened build has no fast path: everything goes the
            // general way.
            assert_eq!(b.free_fast_kind(p), FastFree::Other);
            return;
        }
        // Another heap's block: refused, nothing changed, then freed by the
        // path that finds it through the page source.
        assert_eq!(b.free_fast_kind(p), FastFree::Unknown);
        assert_eq!(a.stats().held_blocks, held);
        assert_eq!(a.stats().pending_remote, 0);
        b.dealloc_unknown(p).unwrap();
        assert_eq!(a.stats().pending_remote, 1);
        // The same block again, now that its class's batch holds its slab
        // (the cross-thread free's common case), and a pointer into it:
        // refused and reported, nothing changed.
        assert_eq!(
            b.dealloc_unknown(p).unwrap_err().kind,
            FreeErrorKind::DoubleFree
        );
        assert_eq!(
            b.dealloc_unknown(q.add(1)).unwrap_err().kind,
            FreeErrorKind::Interior
        );
        assert_eq!(a.stats().pending_remote, 1);
        b.check().unwrap();
        // Null is no SuperSlab's, and its free does nothing.
        assert_eq!(a.free_fast_kind(ptr::null_mut()), FastFree::Unknown);
        assert_eq!(a.dealloc_unknown(ptr::null_mut()), Ok(()));
        // The owner's own block goes on its free list; the same block again
        // is refused by the fast path and reported by the general one.
        assert_eq!(a.free_fast_kind(q), FastFree::Done);
        assert_eq!(a.free_fast_kind(q), FastFree::Other);
        assert_eq!(
            a.dealloc_general(q).unwrap_err().kind,
            FreeErrorKind::DoubleFree
        );
        // A pointer of no heap at all is refused by both and reported.
        let mut local = 0u64;
        let bad = ptr::addr_of_mut!(local).cast::<u8>();
        assert_eq!(a.free_fast_kind(bad), FastFree::Unknown);
        assert_eq!(
            a.dealloc_unknown(bad).unwrap_err().kind,
            FreeErrorKind::NotOurs
        );
    }
    b.collect();
    assert_eq!(a.collect(), 1);
    assert_eq!(a.stats().held_blocks, 0);
    a.check().unwrap();
}
