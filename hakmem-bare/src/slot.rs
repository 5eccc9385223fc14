//! `Slot`: where a locked heap lives, built in place by `init`; and the
//! `GlobalAlloc` steps that [`BareHeap`](crate::BareHeap) and
//! [`PerCoreHeap`](crate::PerCoreHeap) share once they hold a heap.
//!
//! Invariants:
//! - the slot's heap is initialised exactly when `ready`;
//! - the heap is built in the slot by `LocalHeap::new_in_with`, never as a
//!   whole value on the stack and moved in;
//! - no panic happens while a heap's lock is held: invalid frees are
//!   reported by the callers after their guard is dropped (faults the core
//!   finds inside a heap call poison the heaps first: see `fault.rs`).

use core::mem::MaybeUninit;

use hakmem_core::{Config, Fault, FreeError, FreeErrorKind, PageSource};

use crate::error::BareError;
use crate::local::{LocalHeap, OomHook};
use crate::shared::RegionSource;

/// A heap's place in a static.
pub(crate) struct Slot<S: PageSource + RegionSource> {
    ready: bool,
    heap: MaybeUninit<LocalHeap<S>>,
}

impl<S: PageSource + RegionSource> Slot<S> {
    /// An empty slot.
    pub const EMPTY: Slot<S> = Slot {
        ready: false,
        heap: MaybeUninit::uninit(),
    };

    /// The heap, once built.
    #[inline]
    pub fn get(&mut self) -> Option<&mut LocalHeap<S>> {
        // SAFETY: `heap` is initialised when `ready` (invariant).
        self.ready.then(|| unsafe { self.heap.assume_init_mut() })
    }

    /// Whether the heap is built.
    pub fn is_ready(&self) -> bool {
        self.ready
    }

    /// Builds the heap over `source` in place, with `hook`.
    pub fn build(
        &mut self,
        source: S,
        cfg: Config,
        hook: Option<OomHook>,
    ) -> Result<&mut LocalHeap<S>, BareError> {
        if self.ready {
            return Err(BareError::AlreadyInitialized);
        }
        LocalHeap::new_in_with(&mut self.heap, source, cfg)?;
        self.ready = true;
        let h = self.get().expect("just built");
        h.set_oom_hook(hook);
        Ok(h)
    }

    /// Drops the heap (the slot is empty again).
    pub fn clear(&mut self) {
        if self.ready {
            self.ready = false;
            // SAFETY: initialised (invariant); `ready` is false now, so it
            // is dropped once.
            unsafe { self.heap.assume_init_drop() }
        }
    }
}

impl<S: PageSource + RegionSource> Drop for Slot<S> {
    fn drop(&mut self) {
        self.clear();
    }
}

/// Reports an invalid free to the fault handler (`fault.rs`; default: a
/// panic with hakmem's message). `extern "C"` so nothing unwinds out of the
/// allocator: where panics unwind, a handler that panics aborts after its
/// message; on bare metal the panic handler gets it.
#[cold]
#[inline(never)]
#[allow(improper_ctypes_definitions)] // called from Rust only
extern "C" fn invalid_free(e: FreeError) -> ! {
    crate::fault::report(&Fault::from(e))
}

/// The outcome of a free or realloc through a locked heap, taken after the
/// lock is released: the value, or the invalid-free report (`None`: no
/// heap, so the pointer cannot be ours).
#[inline]
pub(crate) fn freed<T>(r: Option<Result<T, FreeError>>, ptr: *mut u8) -> T {
    match r {
        Some(Ok(v)) => v,
        Some(Err(e)) => invalid_free(e),
        None => invalid_free(FreeError {
            ptr: ptr.addr(),
            kind: FreeErrorKind::NotOurs,
        }),
    }
}
