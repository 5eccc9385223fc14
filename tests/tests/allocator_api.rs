//! The `Allocator` API (crate `allocator-api2`, feature `allocator-api2`):
//! `HeapCell` over `SimPages` and `BareHeap` over a host buffer serve
//! `Vec::new_in` / `Box::new_in`; growth goes through `Heap::realloc`
//! (`grow`, `shrink`, `grow_zeroed`), alignment changes on a resize are
//! honoured, everything is returned when the collections drop, a borrowed
//! cell refuses to allocate, and a bad free panics with hakmem's message.

use core::alloc::Layout;

use allocator_api2::alloc::{AllocError, Allocator};
use allocator_api2::boxed::Box;
use allocator_api2::vec::Vec;
use hakmem_bare::BareHeap;
use hakmem_core::allocator::HeapCell;
use hakmem_core::sim::SimPages;
use hakmem_core::{Config, Heap};

fn cell(pages: &SimPages) -> HeapCell<&SimPages> {
    HeapCell::new(Heap::new(pages, Config::SMALL).expect("valid configuration"))
}

#[test]
fn vec_and_box_in_a_heap_cell() {
    let pages = SimPages::new();
    let heap = cell(&pages);
    {
        let mut v: Vec<u64, _> = Vec::new_in(&heap);
        for i in 0..100_000u64 {
            v.push(i);
        }
        assert!(heap.stats().held_bytes >= 800_000);
        v.truncate(10);
        v.shrink_to_fit();
        assert_eq!(v.iter().sum::<u64>(), 45);
        let b = Box::new_in([7u8; 3000], &heap);
        assert!(b.iter().all(|&x| x == 7));
        let nested: Vec<Vec<u32, _>, _> = {
            let mut outer = Vec::new_in(&heap);
            for i in 0..50 {
                let mut inner = Vec::new_in(&heap);
                inner.extend(0..i);
                outer.push(inner);
            }
            outer
        };
        assert_eq!(nested[49].len(), 49);
        heap.with(|h| h.check()).expect("invariants");
    }
    assert_eq!(heap.stats().held_blocks, 0, "a block survived its owner");
    heap.trim();
    assert_eq!(pages.mapped_bytes(), 0);
}

#[test]
fn over_aligned_and_zero_sized_values() {
    #[repr(align(4096))]
    struct Page([u8; 4096]);
    let pages = SimPages::new();
    let heap = cell(&pages);
    let p = Box::new_in(Page([1; 4096]), &heap);
    assert_eq!(&*p as *const Page as usize % 4096, 0);
    assert_eq!(p.0[4095], 1);
    // allocator-api2's Box frees a zero-size value it never allocated: the
    // dangling pointer must be accepted and never reach the heap.
    let z = Box::new_in((), &heap);
    let held = heap.stats().held_blocks;
    assert_eq!(held, 1, "a zero-size value took a block");
    drop((p, z));
    let zero = Layout::from_size_align(0, 64).unwrap();
    let b = heap.allocate(zero).expect("zero size never fails");
    assert_eq!(b.cast::<u8>().as_ptr() as usize % 64, 0);
    // SAFETY: from `allocate` for `zero`.
    unsafe { heap.deallocate(b.cast(), zero) };
    assert_eq!(heap.stats().held_blocks, 0);
}

#[test]
fn resize_keeps_data_and_honours_the_new_alignment() {
    let pages = SimPages::new();
    let heap = cell(&pages);
    let old = Layout::from_size_align(100, 8).unwrap();
    let b = heap.allocate(old).expect("memory");
    let p = b.cast::<u8>();
    // SAFETY: 100 fresh bytes.
    unsafe { p.as_ptr().write_bytes(0x5A, 100) };
    let new = Layout::from_size_align(20_000, 4096).unwrap();
    // SAFETY: `p` is live for `old`; replaced by the result.
    let g = unsafe { heap.grow_zeroed(p, old, new) }.expect("memory");
    let q = g.cast::<u8>().as_ptr();
    assert_eq!(q as usize % 4096, 0);
    assert_eq!(g.len(), 20_000);
    // SAFETY: `q` is live with 20 000 bytes.
    unsafe {
        assert!((0..100).all(|i| q.add(i).read() == 0x5A));
        assert!((100..20_000).all(|i| q.add(i).read() == 0));
    }
    let small = Layout::from_size_align(10, 4096).unwrap();
    // SAFETY: live for `new`; replaced by the result.
    let s = unsafe { heap.shrink(g.cast(), new, small) }.expect("memory");
    // SAFETY: live for `small`, freed once.
    unsafe {
        assert!((0..10).all(|i| s.cast::<u8>().as_ptr().add(i).read() == 0x5A));
        heap.deallocate(s.cast(), small);
    }
    assert_eq!(heap.stats().held_blocks, 0);
}

#[test]
fn a_borrowed_cell_refuses_to_allocate() {
    let pages = SimPages::new();
    let heap = cell(&pages);
    let layout = Layout::new::<u64>();
    let r = heap.with(|_| heap.allocate(layout));
    assert_eq!(r, Err(AllocError));
}

#[test]
fn exhaustion_is_an_alloc_error_then_recovers() {
    let pages = SimPages::new();
    let heap = cell(&pages);
    pages.set_byte_budget(Some(64 * 1024));
    let mut v: Vec<u8, _> = Vec::new_in(&heap);
    assert!(
        v.try_reserve(1 << 20).is_err(),
        "1 MiB within a 64 KiB budget"
    );
    v.try_reserve(1000).expect("a small buffer fits");
    v.extend_from_slice(&[1; 1000]);
    drop(v);
    pages.set_byte_budget(None);
    heap.trim();
    assert_eq!(pages.mapped_bytes(), 0);
}

#[test]
#[should_panic(expected = "double free")]
fn a_double_free_panics_with_the_message() {
    let pages = SimPages::new();
    let heap = cell(&pages);
    let layout = Layout::new::<[u8; 64]>();
    let _keep = heap.allocate(layout).expect("memory");
    let p = heap.allocate(layout).expect("memory").cast::<u8>();
    // SAFETY: the first free is valid; the second is the bad input under
    // test, which the heap detects (`keep` keeps its SuperSlab mapped).
    unsafe {
        heap.deallocate(p, layout);
        heap.deallocate(p, layout);
    }
}

#[repr(C, align(16384))]
struct Arena([u8; 256 * 1024]);

#[test]
fn vec_and_box_in_a_bare_heap() {
    let heap = BareHeap::empty();
    let layout = Layout::new::<u32>();
    assert_eq!(heap.allocate(layout), Err(AllocError), "before init");
    let arena = std::boxed::Box::leak(std::boxed::Box::new(Arena([0; 256 * 1024])));
    // SAFETY: the arena is leaked to the heap and used by nothing else.
    unsafe { heap.init(arena.0.as_mut_ptr(), arena.0.len()) }.expect("init");
    {
        let mut v: Vec<u32, _> = Vec::new_in(&heap);
        v.extend(0..20_000u32);
        assert_eq!(v[19_999], 19_999);
        let b = Box::new_in(String::from("hakmem"), &heap);
        assert_eq!(heap.stats().unwrap().live_bytes, 80_000 + 24);
        v.truncate(5);
        v.shrink_to_fit();
        assert_eq!(heap.stats().unwrap().live_bytes, 20 + 24);
        drop(b);
    }
    let st = heap.stats().unwrap();
    assert_eq!(st.live_bytes, 0);
    assert_eq!(st.heap.held_blocks, 0);
    // Exhaustion is an error, not a panic; the heap works afterwards.
    let mut v: Vec<u8, _> = Vec::new_in(&heap);
    assert!(v.try_reserve(1 << 20).is_err());
    v.try_reserve(100).expect("room for 100 bytes");
}
