//! The medium tier: requests between the slab classes and a SuperSlab cost
//! whole 16 B granules, not a SuperSlab; frees merge neighbours (the whole
//! arena is one block again, and the SuperSlab goes back); bad frees of
//! medium blocks are refused with state unchanged; realloc shrinks in place
//! and grows into a free neighbour; remote frees are collected into the
//! arena; `Config::for_heap` gives valid geometries.

// The hardened build serves no medium block (see medium.rs).
#![cfg(not(feature = "hardened"))]

use hakmem_core::sim::SimPages;
use hakmem_core::{free_remote, Config, FreeErrorKind, Heap};

fn heap(pages: &SimPages) -> Heap<&SimPages> {
    Heap::new(pages, Config::SMALL).unwrap()
}

#[test]
fn medium_blocks_cost_granules_and_merge_back() {
    let pages = SimPages::new();
    let mut h = heap(&pages);
    let geo = *h.geometry();
    assert!(geo.medium_max > geo.max_slab_size());
    let size = geo.max_slab_size() + 100;
    let a = h.alloc(size, 16);
    let b = h.alloc(size, 16);
    let c = h.alloc(size, 16);
    assert!(!a.is_null() && !b.is_null() && !c.is_null());
    let s = h.stats();
    assert_eq!((s.medium_blocks, s.large_count), (3, 0), "{s}");
    assert_eq!(s.medium_bytes, 3 * size.next_multiple_of(16));
    // Packed one after another: a block costs its granules.
    assert_eq!(b as usize - a as usize, size.next_multiple_of(16));
    assert_eq!(s.superslabs_mapped, 1);
    h.check().unwrap();
    // SAFETY: live blocks of this heap, not used afterwards.
    unsafe {
        h.dealloc(b).unwrap();
        h.check().unwrap();
        h.dealloc(a).unwrap();
        h.check().unwrap();
        h.dealloc(c).unwrap();
    }
    h.check().unwrap();
    let s = h.stats();
    assert_eq!((s.medium_blocks, s.medium_bytes, s.held_blocks), (0, 0, 0));
    h.trim();
    assert_eq!(pages.live_regions(), 0, "the empty SuperSlab went back");
}

#[test]
fn bad_frees_of_medium_blocks_are_refused() {
    let pages = SimPages::new();
    let mut h = heap(&pages);
    let size = h.geometry().max_slab_size() + 200;
    let a = h.alloc(size, 16);
    let b = h.alloc(size, 16);
    assert!(!a.is_null() && !b.is_null());
    let before = h.stats();
    // SAFETY: `a` and `b` are live; the bad pointers are refused before
    // anything is written.
    unsafe {
        assert_eq!(
            h.dealloc(a.add(16)).unwrap_err().kind,
            FreeErrorKind::Interior
        );
        assert_eq!(
            h.dealloc(a.add(8)).unwrap_err().kind,
            FreeErrorKind::NotAllocated
        );
        assert_eq!(h.stats(), before);
        h.dealloc(a).unwrap();
        // `a` is a free block's start now (its neighbour `b` is held).
        assert_eq!(h.dealloc(a).unwrap_err().kind, FreeErrorKind::DoubleFree);
        assert_eq!(
            h.usable_size(a).unwrap_err().kind,
            FreeErrorKind::DoubleFree
        );
        // Inside the free space after `b`: no block.
        let e = h
            .dealloc(b.add(size.next_multiple_of(16) + 64))
            .unwrap_err();
        assert_eq!(e.kind, FreeErrorKind::NotAllocated);
        h.check().unwrap();
        h.dealloc(b).unwrap();
    }
    h.check().unwrap();
}

#[test]
fn medium_realloc_stays_in_place() {
    let pages = SimPages::new();
    let mut h = heap(&pages);
    let size = h.geometry().max_slab_size() + 16;
    let a = h.alloc(size, 16);
    assert!(!a.is_null());
    // SAFETY: `a` is live and replaced by each realloc's result.
    unsafe {
        a.write_bytes(7, size);
        // Growth into the free rest of the arena.
        let g = h.realloc(a, 3 * size, 16).unwrap();
        assert_eq!(g, a);
        assert_eq!(h.usable_size(g).unwrap(), (3 * size).next_multiple_of(16));
        assert!(std::slice::from_raw_parts(g, size).iter().all(|&x| x == 7));
        // A block after it stops the next growth in place...
        let b = h.alloc(64, 16);
        let s = h.realloc(g, size, 16).unwrap();
        assert_eq!(s, a, "shrinks in place");
        let c = h.alloc(size, 16);
        h.check().unwrap();
        // ...and the freed tail served `c` right behind it.
        assert_eq!(c as usize, a as usize + size.next_multiple_of(16));
        let m = h.realloc(s, 2 * size, 16).unwrap();
        assert_ne!(m, a, "no room next to it: moved");
        assert!(std::slice::from_raw_parts(m, size).iter().all(|&x| x == 7));
        h.check().unwrap();
        for p in [m, b, c] {
            h.dealloc(p).unwrap();
        }
    }
    h.check().unwrap();
    assert_eq!(h.stats().held_blocks, 0);
}

#[test]
fn remote_frees_of_medium_blocks_are_collected() {
    let pages = SimPages::new();
    let mut owner = heap(&pages);
    let mut other = heap(&pages);
    let size = owner.geometry().max_slab_size() + 300;
    let v: Vec<*mut u8> = (0..6).map(|_| owner.alloc(size, 16)).collect();
    assert!(v.iter().all(|p| !p.is_null()));
    let geo = *owner.geometry();
    // SAFETY: live blocks of `owner`, given up here.
    unsafe {
        other.dealloc(v[0]).unwrap();
        free_remote(&pages, &geo, v[1]).unwrap();
        assert_eq!(
            free_remote(&pages, &geo, v[1]).unwrap_err().kind,
            FreeErrorKind::DoubleFree
        );
    }
    other.collect();
    owner.check().unwrap();
    assert_eq!(owner.stats().pending_remote, 2);
    assert_eq!(owner.stats().held_blocks, 4);
    assert_eq!(owner.collect(), 2);
    owner.check().unwrap();
    assert_eq!(owner.stats().medium_blocks, 4);
    for p in &v[2..] {
        // SAFETY: live blocks of `owner`.
        unsafe { owner.dealloc(*p).unwrap() };
    }
    owner.check().unwrap();
    assert_eq!(owner.stats().held_blocks, 0);
}

#[test]
fn geometries_for_heap_sizes_are_valid() {
    for shift in 10..=30 {
        let bytes = 1usize << shift;
        for b in [bytes, bytes + bytes / 2] {
            let cfg = Config::for_heap(b);
            let geo = cfg.geometry().unwrap_or_else(|e| panic!("{b}: {e}"));
            assert!(geo.medium_max > 0);
            assert!(geo.superslab_size() <= b.max(16 << 10), "{b}");
        }
    }
}

#[test]
fn medium_over_aligned_and_zeroed() {
    let pages = SimPages::new();
    let mut h = Heap::new(&pages, Config::for_heap(64 << 10)).unwrap();
    assert_eq!(h.geometry().slab_classes, 0, "every request is medium");
    let mut v = Vec::new();
    for (i, align) in [16usize, 32, 64, 256, 1024, 4096].into_iter().enumerate() {
        let p = h.alloc_zeroed(100 + i * 37, align);
        assert!(!p.is_null());
        assert_eq!(p as usize % align, 0);
        // SAFETY: a fresh block of that many bytes.
        assert!(unsafe { std::slice::from_raw_parts(p, 100 + i * 37) }
            .iter()
            .all(|&x| x == 0));
        // SAFETY: as above.
        unsafe { p.write_bytes(0xAB, 100 + i * 37) };
        v.push(p);
        h.check().unwrap();
    }
    for p in v {
        // SAFETY: live blocks of this heap.
        unsafe { h.dealloc(p).unwrap() };
        h.check().unwrap();
    }
    assert_eq!(h.stats().held_blocks, 0);
}

#[test]
fn the_medium_tier_off_makes_no_medium_slab() {
    let pages = SimPages::new();
    let cfg = Config {
        medium: false,
        ..Config::SMALL
    };
    let mut h = Heap::new(&pages, cfg).unwrap();
    assert_eq!(h.geometry().medium_max, 0);
    let v: Vec<*mut u8> = [(0, 1024), (0, 16), (2000, 16), (100, 4096), (20_000, 16)]
        .into_iter()
        .map(|(s, a)| h.alloc(s, a))
        .collect();
    assert!(v.iter().all(|p| !p.is_null()));
    let s = h.stats();
    assert_eq!((s.medium_slabs, s.medium_blocks), (0, 0), "{s}");
    for p in v {
        // SAFETY: live blocks of this heap.
        unsafe { h.dealloc(p).unwrap() };
    }
    h.check().unwrap();
}
