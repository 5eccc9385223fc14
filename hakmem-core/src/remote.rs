//! Remote frees: how a thread frees a block that another heap owns.
//!
//! The freeing thread never touches the owner's lists. It pushes the block
//! onto its SuperSlab's lock-free remote list (one compare-and-swap), after
//! raising the SuperSlab's `remote_count`; the owner takes the whole list with
//! one swap in [`Heap::collect`](crate::Heap::collect). A pending block stays
//! counted in the owner's `held` until collected, so the SuperSlab cannot be
//! released under the pusher; the exact number the application holds is
//! `held - remote_count`. A large block freed remotely is marked freed and its
//! pages decommitted at once; the owner unmaps it when it collects.
//!
//! Invariants:
//! - `remote_count >= ` the length of `remote_head`'s list at every instant;
//! - after a successful push the pusher touches neither block nor SuperSlab.

use core::sync::atomic::Ordering;

use crate::config::Geometry;
use crate::error::{FreeError, FreeErrorKind};
use crate::large::{LargeBlock, LARGE_FREED, LARGE_FREEING, LARGE_LIVE};
use crate::locate::{self, Found};
use crate::page_source::PageSource;
use crate::slab::{free_tag, Block, Slab};
use crate::superslab::SuperSlab;

/// Frees a block on behalf of a thread that does not own it (or has no
/// heap at all): the block goes to its owner's remote list. `geo` must be
/// the owning heap's geometry.
///
/// # Safety
/// If `ptr` is a live block, nothing uses it afterwards; the same pointer
/// rules as [`Heap::dealloc`](crate::Heap::dealloc) apply.
pub unsafe fn free_remote<P: PageSource>(
    source: &P,
    geo: &Geometry,
    ptr: *mut u8,
) -> Result<(), FreeError> {
    if ptr.is_null() {
        return Ok(());
    }
    // SAFETY: `locate` reads only headers that `contains` vouched for.
    match unsafe { locate::locate(source, geo, ptr) } {
        Err(kind) => Err(FreeError {
            ptr: ptr as usize,
            kind,
        }),
        // SAFETY: `locate` found a live SuperSlab and slab.
        Ok(Found::Small { ss, slab }) => unsafe { push(ss, slab, ptr, geo.units) },
        // SAFETY: `locate` found a live large block.
        Ok(Found::Large(h)) => unsafe { free_large(source, h) },
    }
}

/// Pushes a block onto its SuperSlab's remote list.
///
/// # Safety
/// `ss` is a live SuperSlab, `slab` its slab holding `ptr`, and `ptr` passed
/// `locate::check_block`.
pub(crate) unsafe fn push(
    ss: *mut SuperSlab,
    slab: *mut Slab,
    ptr: *mut u8,
    units: u8,
) -> Result<(), FreeError> {
    let _ = (slab, units);
    let b = ptr.cast::<Block>();
    // SAFETY: `ptr` is a block start inside the live SuperSlab `ss`; the
    // block is the application's to give (caller), so nobody else writes it.
    unsafe {
        #[cfg(feature = "hardened")]
        if !SuperSlab::mark_free(ss, units, ptr as usize - ss as usize) {
            return Err(FreeError {
                ptr: ptr as usize,
                kind: FreeErrorKind::DoubleFree,
            });
        }
        #[cfg(not(feature = "hardened"))]
        if (*b).tag == free_tag(ptr) {
            return Err(FreeError {
                ptr: ptr as usize,
                kind: FreeErrorKind::DoubleFree,
            });
        }
        (*b).tag = free_tag(ptr);
        // Count first: the owner must never see a block it has not counted.
        (*ss).remote_count.fetch_add(1, Ordering::Relaxed);
        let mut head = (*ss).remote_head.load(Ordering::Relaxed);
        loop {
            (*b).next = head;
            match (*ss).remote_head.compare_exchange_weak(
                head,
                b,
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(()),
                Err(h) => head = h,
            }
        }
    }
}

/// Frees a large block owned by another heap: marks it freeing (a second
/// mark is a double free), decommits its pages now, then marks it freed so
/// the owner may unmap it (never while the decommit runs).
///
/// # Safety
/// `h` is a live large block header from `locate`.
pub(crate) unsafe fn free_large<P: PageSource>(
    source: &P,
    h: *mut LargeBlock,
) -> Result<(), FreeError> {
    // SAFETY: `h` is live; its state is only changed atomically.
    unsafe {
        if (*h)
            .state
            .compare_exchange(
                LARGE_LIVE,
                LARGE_FREEING,
                Ordering::AcqRel,
                Ordering::Relaxed,
            )
            .is_err()
        {
            return Err(FreeError {
                ptr: (*h).user,
                kind: FreeErrorKind::DoubleFree,
            });
        }
        if P::CAN_DECOMMIT {
            LargeBlock::decommit_body(h, source);
        }
        (*h).state.store(LARGE_FREED, Ordering::Release);
    }
    Ok(())
}
