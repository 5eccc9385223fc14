//! [`HeapCell`]: one core [`Heap`] shared by `&` references, so that it can
//! serve as an [`Allocator`] (feature `allocator-api2`) for
//! `allocator_api2::vec::Vec::new_in(&cell)`, `Box::new_in(x, &cell)` and
//! hashbrown's maps.
//!
//! The heap needs `&mut self`; the `Allocator` trait gives `&self`. A
//! `HeapCell` bridges them the way `RefCell` does, and for the same reason
//! it is sound: it is not `Sync` (one thread at a time uses a given cell;
//! it may be sent to another thread with the heap, if the page source is
//! `Send`), no heap method calls back into the allocator, so each call
//! borrows the heap for its own duration only, and a borrow that is
//! already taken (a call from inside [`HeapCell::with`]) fails cleanly:
//! allocation answers `AllocError`, a free panics with a message.
//!
//! The shape every hakmem `Allocator` shares (zero-size layouts, growth
//! through `realloc`, zeroing a grown tail) is written once here, over
//! [`RawHeap`]: `HeapCell` and hakmem-bare's `BareHeap` each say how to
//! allocate, free and resize, and forward the trait's methods to
//! [`allocate`], [`deallocate`] and [`resize`]. Zero-size layouts never
//! reach the heap: they get a dangling pointer aligned to the layout, as
//! the standard library's allocator gives, and freeing one does nothing
//! (allocator-api2's `Box` frees zero-size values it never allocated).
//!
//! Invariants:
//! - the heap is borrowed mutably only inside one method of this module (or
//!   the closure given to [`HeapCell::with`]), never across a return to
//!   the caller;
//! - every block handed out is a live block of the heap with at least the
//!   layout's size and alignment; it stays valid until deallocated or the
//!   cell is dropped (dropping the heap returns its memory; blocks still
//!   held then must not be used, as with any allocator).

use core::alloc::Layout;
use core::cell::RefCell;
use core::ptr::{self, NonNull};

pub use allocator_api2::alloc::{AllocError, Allocator};

use crate::heap::Heap;
use crate::page_source::PageSource;
use crate::stats::Stats;

/// A core heap behind a `RefCell`-style borrow flag: usable through `&self`
/// by one thread at a time, as an [`Allocator`].
///
/// ```
/// use allocator_api2::vec::Vec;
/// use hakmem_core::{allocator::HeapCell, sim::SimPages, Config, Heap};
///
/// let pages = SimPages::new();
/// let cell = HeapCell::new(Heap::new(&pages, Config::SMALL).unwrap());
/// let mut v = Vec::new_in(&cell);
/// v.extend(0..1000u32);
/// assert!(cell.stats().held_bytes >= 4000);
/// drop(v);
/// assert_eq!(cell.stats().held_blocks, 0);
/// ```
pub struct HeapCell<P: PageSource> {
    heap: RefCell<Heap<P>>,
}

impl<P: PageSource> HeapCell<P> {
    /// Wraps a heap.
    pub const fn new(heap: Heap<P>) -> Self {
        HeapCell {
            heap: RefCell::new(heap),
        }
    }

    /// The heap back (every block still held stays valid: the heap is the
    /// same).
    pub fn into_inner(self) -> Heap<P> {
        self.heap.into_inner()
    }

    /// Runs `f` on the heap. Allocating through this cell from inside `f`
    /// fails (`AllocError`), and freeing panics.
    ///
    /// # Panics
    /// When called from inside another `with` on the same cell.
    pub fn with<R>(&self, f: impl FnOnce(&mut Heap<P>) -> R) -> R {
        f(&mut self.heap.borrow_mut())
    }

    /// The heap's exact figures ([`Heap::stats`]).
    ///
    /// # Panics
    /// When called from inside [`with`](Self::with).
    pub fn stats(&self) -> Stats {
        self.heap.borrow().stats()
    }

    /// Returns cached and empty memory to the page source ([`Heap::trim`]);
    /// the number of SuperSlabs released.
    ///
    /// # Panics
    /// When called from inside [`with`](Self::with).
    pub fn trim(&self) -> usize {
        self.with(|h| h.trim())
    }

    /// `f` on the heap, or `None` when it is borrowed already.
    fn try_with<R>(&self, f: impl FnOnce(&mut Heap<P>) -> R) -> Option<R> {
        self.heap.try_borrow_mut().ok().map(|mut h| f(&mut h))
    }
}

/// A heap that an `Allocator` impl forwards to: allocation, free and
/// resize of non-zero sizes. The functions of this module add the rest.
///
/// # Safety
/// `alloc_raw` returns null or a block of at least `layout.size()` bytes
/// aligned to `layout.align()`, valid until freed; `realloc_raw` returns
/// null (the old block live and untouched) or such a block for `new` with
/// the old contents up to the smaller size, the old block then gone.
pub unsafe trait RawHeap {
    /// A block for `layout` (size > 0), zeroed if asked; null when out of
    /// memory.
    fn alloc_raw(&self, layout: Layout, zeroed: bool) -> *mut u8;

    /// Frees a block.
    ///
    /// # Safety
    /// `ptr` is a live block from this heap for `layout` (size > 0).
    unsafe fn dealloc_raw(&self, ptr: NonNull<u8>, layout: Layout);

    /// Resizes a block from `old` to `new` (both sizes > 0).
    ///
    /// # Safety
    /// As [`dealloc_raw`](Self::dealloc_raw) for `old`.
    unsafe fn realloc_raw(&self, ptr: NonNull<u8>, old: Layout, new: Layout) -> *mut u8;
}

/// A block of `len` bytes at `p`, or `AllocError` for null.
fn block(p: *mut u8, len: usize) -> Result<NonNull<[u8]>, AllocError> {
    NonNull::new(p)
        .map(|p| NonNull::slice_from_raw_parts(p, len))
        .ok_or(AllocError)
}

/// The empty block of a zero-size layout: dangling, aligned.
fn dangling(layout: Layout) -> NonNull<[u8]> {
    let p = NonNull::new(ptr::without_provenance_mut::<u8>(layout.align()))
        .unwrap_or(NonNull::dangling());
    NonNull::slice_from_raw_parts(p, 0)
}

/// `Allocator::allocate` / `allocate_zeroed` over `h`.
pub fn allocate<H: RawHeap>(
    h: &H,
    layout: Layout,
    zeroed: bool,
) -> Result<NonNull<[u8]>, AllocError> {
    if layout.size() == 0 {
        return Ok(dangling(layout));
    }
    block(h.alloc_raw(layout, zeroed), layout.size())
}

/// `Allocator::deallocate` over `h`.
///
/// # Safety
/// The trait's: `ptr` came from [`allocate`] or [`resize`] on `h` for
/// `layout` and is not used afterwards.
pub unsafe fn deallocate<H: RawHeap>(h: &H, ptr: NonNull<u8>, layout: Layout) {
    if layout.size() != 0 {
        // SAFETY: per the caller; a non-zero size means a real block.
        unsafe { h.dealloc_raw(ptr, layout) }
    }
}

/// `Allocator::grow`, `grow_zeroed` (`zero_tail`) and `shrink` over `h`:
/// `realloc` in place where the heap can, else a copy.
///
/// # Safety
/// The trait's: `ptr` came from `h` for `old`; on success it is replaced by
/// the result, on failure it stays live and untouched.
pub unsafe fn resize<H: RawHeap>(
    h: &H,
    ptr: NonNull<u8>,
    old: Layout,
    new: Layout,
    zero_tail: bool,
) -> Result<NonNull<[u8]>, AllocError> {
    if old.size() == 0 {
        return allocate(h, new, zero_tail);
    }
    if new.size() == 0 {
        // SAFETY: per the caller, a real block (non-zero size).
        unsafe { h.dealloc_raw(ptr, old) };
        return Ok(dangling(new));
    }
    // SAFETY: per the caller.
    let b = block(unsafe { h.realloc_raw(ptr, old, new) }, new.size())?;
    if zero_tail && new.size() > old.size() {
        // SAFETY: the block has `new.size()` bytes; the tail beyond the old
        // size is ours to clear.
        unsafe {
            b.cast::<u8>()
                .as_ptr()
                .add(old.size())
                .write_bytes(0, new.size() - old.size())
        };
    }
    Ok(b)
}

// SAFETY: the heap honours size and alignment and keeps blocks valid until
// freed; `realloc` keeps the old block on failure. A borrowed cell answers
// null (allocation) or panics (free) instead of aliasing the heap.
unsafe impl<P: PageSource> RawHeap for HeapCell<P> {
    fn alloc_raw(&self, layout: Layout, zeroed: bool) -> *mut u8 {
        let (size, align) = (layout.size(), layout.align());
        self.try_with(|h| {
            if zeroed {
                h.alloc_zeroed(size, align)
            } else {
                h.alloc(size, align)
            }
        })
        .unwrap_or(ptr::null_mut())
    }

    unsafe fn dealloc_raw(&self, ptr: NonNull<u8>, _layout: Layout) {
        // SAFETY: per the caller; a wrong pointer is detected and reported.
        match self.try_with(|h| unsafe { h.dealloc(ptr.as_ptr()) }) {
            Some(Ok(())) => {}
            Some(Err(e)) => panic!("{e}"),
            None => panic!("hakmem: HeapCell freed from inside HeapCell::with"),
        }
    }

    unsafe fn realloc_raw(&self, ptr: NonNull<u8>, _old: Layout, new: Layout) -> *mut u8 {
        // SAFETY: per the caller.
        match self.try_with(|h| unsafe { h.realloc(ptr.as_ptr(), new.size(), new.align()) }) {
            Some(Ok(p)) => p,
            Some(Err(e)) => panic!("{e}"),
            None => ptr::null_mut(),
        }
    }
}

/// Implements `allocator_api2::alloc::Allocator` for a type that implements
/// [`RawHeap`], by forwarding every method to [`allocate`], [`deallocate`]
/// and [`resize`] — the one copy of that forwarding, for `HeapCell` here and
/// hakmem-bare's `BareHeap`. `forward_allocator!([generics] Type)`.
///
/// The impl is sound when the `RawHeap` impl is: its blocks honour size and
/// alignment and stay valid until freed, and the type is not `Clone` (an
/// `Allocator` copy would have to free the same blocks).
#[macro_export]
macro_rules! forward_allocator {
    ([$($gen:tt)*] $ty:ty) => {
        // SAFETY: every method forwards to `hakmem_core::allocator` over the
        // type's `RawHeap` impl, whose blocks honour size and alignment and
        // stay valid until freed; the type is used through `&` and is not
        // `Clone`.
        unsafe impl<$($gen)*> $crate::allocator::Allocator for $ty {
            fn allocate(
                &self,
                layout: core::alloc::Layout,
            ) -> Result<core::ptr::NonNull<[u8]>, $crate::allocator::AllocError> {
                $crate::allocator::allocate(self, layout, false)
            }

            fn allocate_zeroed(
                &self,
                layout: core::alloc::Layout,
            ) -> Result<core::ptr::NonNull<[u8]>, $crate::allocator::AllocError> {
                $crate::allocator::allocate(self, layout, true)
            }

            unsafe fn deallocate(&self, ptr: core::ptr::NonNull<u8>, layout: core::alloc::Layout) {
                // SAFETY: the trait's contract, forwarded.
                unsafe { $crate::allocator::deallocate(self, ptr, layout) }
            }

            unsafe fn grow(
                &self,
                ptr: core::ptr::NonNull<u8>,
                old: core::alloc::Layout,
                new: core::alloc::Layout,
            ) -> Result<core::ptr::NonNull<[u8]>, $crate::allocator::AllocError> {
                // SAFETY: the trait's contract, forwarded.
                unsafe { $crate::allocator::resize(self, ptr, old, new, false) }
            }

            unsafe fn grow_zeroed(
                &self,
                ptr: core::ptr::NonNull<u8>,
                old: core::alloc::Layout,
                new: core::alloc::Layout,
            ) -> Result<core::ptr::NonNull<[u8]>, $crate::allocator::AllocError> {
                // SAFETY: the trait's contract, forwarded.
                unsafe { $crate::allocator::resize(self, ptr, old, new, true) }
            }

            unsafe fn shrink(
                &self,
                ptr: core::ptr::NonNull<u8>,
                old: core::alloc::Layout,
                new: core::alloc::Layout,
            ) -> Result<core::ptr::NonNull<[u8]>, $crate::allocator::AllocError> {
                // SAFETY: the trait's contract, forwarded.
                unsafe { $crate::allocator::resize(self, ptr, old, new, false) }
            }
        }
    };
}

crate::forward_allocator!([P: PageSource] HeapCell<P>);
