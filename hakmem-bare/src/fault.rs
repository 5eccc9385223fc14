//! Faults on bare metal: what happens when the core finds heap corruption,
//! or a `GlobalAlloc` front end is handed a pointer that is not a live
//! block.
//!
//! The core stops on corruption from inside the heap operation that found
//! it, while [`BareHeap`](crate::BareHeap) or a
//! [`PerCoreHeap`](crate::PerCoreHeap) core holds its lock. hakmem-bare's
//! core handler ([`hakmem_core::set_fault_handler`], installed when any
//! bare heap is built) first **poisons** every bare heap, then calls the
//! handler set with [`set_fault_handler`] (default: a panic with the
//! fault's message). Poisoned, the locked front ends never wait for a lock
//! again: every later call — from the handler, from the panic handler, from
//! an interrupt, from other cores, including those already spinning on the
//! held lock — returns at once (allocations null, frees ignored, `with`
//! `None`), so nothing deadlocks on the lock the faulting call still holds,
//! and no core walks the corrupted lists it protects. The lock itself is
//! not released: the heap behind it is not trustworthy any more.
//!
//! Invalid frees through a `GlobalAlloc` front end change nothing in the
//! heap; they are reported to the same handler after the lock is released,
//! without poisoning.
//!
//! The handler must not return. It may halt, reset, log and spin, or
//! (on a hosted test) unwind — except when the heap serves as the global
//! allocator: a global allocator must not unwind, so there a handler that
//! panics with `panic = "unwind"` aborts.
//!
//! Invariants:
//! - `POISONED` goes from false to true once, before the user's handler
//!   runs, and never back;
//! - a locked front end takes its lock only while `POISONED` is false
//!   (checked again after taking it).

use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicPtr, Ordering};

use hakmem_core::{Fault, FaultHandler};

static POISONED: AtomicBool = AtomicBool::new(false);

/// The user's handler; null: panic.
static USER_HANDLER: AtomicPtr<()> = AtomicPtr::new(ptr::null_mut());

/// Sets the function called on a fault (for every bare heap of the
/// program): heap corruption found by the core — the heaps are poisoned
/// before it runs — or an invalid free through `BareHeap`'s or
/// `PerCoreHeap`'s `GlobalAlloc`. It must not return; without one, hakmem
/// panics with the fault's message (`hakmem: heap corruption at 0x…: …`).
pub fn set_fault_handler(handler: FaultHandler) {
    USER_HANDLER.store(handler as *mut (), Ordering::Release);
}

/// Whether a fault stopped the heaps (see the module documentation).
pub fn is_poisoned() -> bool {
    POISONED.load(Ordering::Acquire)
}

/// Makes this crate's handler the core's.
pub(crate) fn install() {
    hakmem_core::set_fault_handler(on_core_fault);
}

/// The core's handler: poison, then report.
fn on_core_fault(f: &Fault) -> ! {
    POISONED.store(true, Ordering::Release);
    report(f)
}

/// Calls the user's handler, or panics.
pub(crate) fn report(f: &Fault) -> ! {
    let h = USER_HANDLER.load(Ordering::Acquire);
    if !h.is_null() {
        // SAFETY: only `set_fault_handler` stores here, from a
        // `FaultHandler`.
        let handler = unsafe { core::mem::transmute::<*mut (), FaultHandler>(h) };
        handler(f);
    }
    panic!("{f}")
}
