//! [`BareHeap`] as an `allocator_api2::alloc::Allocator` (feature
//! `allocator-api2`): `Vec::new_in(&HEAP)`, `Box::new_in(x, &HEAP)`, for
//! collections that should live in one heap whoever the global allocator
//! is. Every call takes the heap's lock for its own duration, exactly as
//! the `GlobalAlloc` methods do (`global.rs`), and goes through
//! [`LocalHeap`](crate::LocalHeap): the out-of-memory slow path (trim,
//! then the hook) and the live-byte figures. What every hakmem
//! `Allocator` shares (zero sizes, resizing, zeroed growth) is the core's
//! `hakmem_core::allocator`; this file says only how to reach the heap.
//!
//! Invariants: as `global.rs` — nothing panics with the lock held (an
//! invalid free is reported after the guard is dropped).

use core::alloc::Layout;
use core::ptr::{self, NonNull};

use hakmem_core::allocator::RawHeap;
use hakmem_core::{FreeError, FreeErrorKind};

use crate::global::BareHeap;

/// Panics with hakmem's message for a rejected pointer (`None`: the heap
/// was never initialised, so the pointer cannot be ours).
#[cold]
fn invalid(ptr: NonNull<u8>, e: Option<FreeError>) -> ! {
    let e = e.unwrap_or(FreeError {
        ptr: ptr.as_ptr().addr(),
        kind: FreeErrorKind::NotOurs,
    });
    panic!("{e}")
}

// SAFETY: blocks come from the locked heap with the layout's size and
// alignment and stay valid until freed; `try_realloc` keeps the old block
// on failure; the lock serialises all calls; panics happen after the guard
// is dropped.
unsafe impl RawHeap for BareHeap {
    fn alloc_raw(&self, layout: Layout, zeroed: bool) -> *mut u8 {
        self.with(|h| {
            if zeroed {
                h.alloc_zeroed(layout)
            } else {
                h.alloc(layout)
            }
        })
        .unwrap_or(ptr::null_mut())
    }

    unsafe fn dealloc_raw(&self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: per the caller: a live block of ours for `layout`; a
        // wrong one is detected.
        match self.with(|h| unsafe { h.try_dealloc(ptr.as_ptr(), layout) }) {
            Some(Ok(())) => {}
            Some(Err(e)) => invalid(ptr, Some(e)),
            None => invalid(ptr, None),
        }
    }

    unsafe fn realloc_raw(&self, ptr: NonNull<u8>, old: Layout, new: Layout) -> *mut u8 {
        // `try_realloc` takes the old size (for the live figures) and the
        // new alignment from its layout.
        let Ok(layout) = Layout::from_size_align(old.size(), new.align()) else {
            return ptr::null_mut();
        };
        // SAFETY: per the caller.
        match self.with(|h| unsafe { h.try_realloc(ptr.as_ptr(), layout, new.size()) }) {
            Some(Ok(p)) => p,
            Some(Err(e)) => invalid(ptr, Some(e)),
            None => invalid(ptr, None),
        }
    }
}

hakmem_core::forward_allocator!([] BareHeap);
