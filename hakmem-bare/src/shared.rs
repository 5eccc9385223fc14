//! Region sources: what a [`LocalHeap`](crate::LocalHeap) needs of its page
//! source beyond [`PageSource`], and [`SharedRegion`], one [`FixedRegion`]
//! behind a lock that several heaps (one per core) map from.
//!
//! With a shared source, memory a core's heap gives back (an empty
//! SuperSlab, a freed large block) serves any core's next map; and a heap
//! finds the owner of a block another core allocated, since `contains`
//! answers for every heap's ranges.
//!
//! Invariants:
//! - every `FixedRegion` method runs with the lock held; nothing called
//!   under it takes a heap's lock (heap locks come first, then this one).

use core::ptr::NonNull;

use hakmem_core::PageSource;

use crate::error::BareError;
use crate::lock::{Locked, RawLock};
use crate::region::{FixedRegion, RegionStats};

/// What a heap of this crate needs of its [`PageSource`] beyond mapping:
/// taking more regions, and figures. [`FixedRegion`] and `&`[`SharedRegion`]
/// implement it. (Object-safe: the out-of-memory hook sees it as `dyn`.)
///
/// # Safety
/// `claim` keeps [`FixedRegion::claim`]'s promises (a refused region is
/// not written; an accepted one is handed out by `map` only) and `stats`
/// answers about the same memory `map` hands out.
pub unsafe trait RegionSource {
    /// Hands a region to the source, as [`FixedRegion::claim`].
    ///
    /// # Safety
    /// As [`FixedRegion::claim`].
    unsafe fn claim(&self, start: *mut u8, len: usize) -> Result<usize, BareError>;
    /// The source's figures.
    fn stats(&self) -> RegionStats;
}

// SAFETY: forwards to `FixedRegion`'s own methods.
unsafe impl RegionSource for FixedRegion {
    unsafe fn claim(&self, start: *mut u8, len: usize) -> Result<usize, BareError> {
        // SAFETY: forwarded caller contract.
        unsafe { FixedRegion::claim(self, start, len) }
    }
    fn stats(&self) -> RegionStats {
        FixedRegion::stats(self)
    }
}

/// A [`FixedRegion`] behind a lock `L`: `Sync`, so heaps on several cores
/// map from (and unmap to) the same regions through `&SharedRegion`.
pub struct SharedRegion<L: RawLock> {
    inner: Locked<L, FixedRegion>,
}

impl<L: RawLock> SharedRegion<L> {
    /// `region`, shared (`const`, for a static).
    pub const fn new(region: FixedRegion) -> Self {
        SharedRegion {
            inner: Locked::new(region),
        }
    }

    /// The region, locked, for whatever `f` reads or does.
    pub fn with<R>(&self, f: impl FnOnce(&FixedRegion) -> R) -> R {
        f(&self.inner.lock())
    }

    /// The region, locked, to replace (before any heap maps from it).
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(&mut FixedRegion) -> R) -> R {
        f(&mut self.inner.lock())
    }
}

// SAFETY: every method forwards to the `FixedRegion` under the lock, so
// its promises hold, and calls from several cores are serialised (which
// makes `&self` use from any thread sound: the type is `Sync` through
// `Locked`). Nothing under the lock calls back into a heap.
unsafe impl<L: RawLock> PageSource for SharedRegion<L> {
    const MAPS_ZEROED: bool = FixedRegion::MAPS_ZEROED;
    const CAN_DECOMMIT: bool = FixedRegion::CAN_DECOMMIT;
    const CAN_REMAP: bool = FixedRegion::CAN_REMAP;

    fn page_size(&self) -> usize {
        self.with(|r| r.page_size())
    }
    fn map(&self, size: usize, align: usize) -> Option<NonNull<u8>> {
        self.with(|r| r.map(size, align))
    }
    unsafe fn unmap(&self, ptr: NonNull<u8>, size: usize) {
        // SAFETY: forwarded caller contract.
        self.with(|r| unsafe { r.unmap(ptr, size) })
    }
    unsafe fn remap(
        &self,
        ptr: NonNull<u8>,
        old_size: usize,
        new_size: usize,
        align: usize,
    ) -> Option<NonNull<u8>> {
        // SAFETY: forwarded caller contract.
        self.with(|r| unsafe { r.remap(ptr, old_size, new_size, align) })
    }
    unsafe fn shrink(&self, ptr: NonNull<u8>, old_size: usize, new_size: usize) -> bool {
        // SAFETY: forwarded caller contract.
        self.with(|r| unsafe { r.shrink(ptr, old_size, new_size) })
    }
    fn contains(&self, addr: usize) -> bool {
        self.with(|r| r.contains(addr))
    }
    fn region_start(&self, addr: usize) -> Option<usize> {
        self.with(|r| r.region_start(addr))
    }
}

// SAFETY: forwards to `FixedRegion` under the lock.
unsafe impl<L: RawLock> RegionSource for &SharedRegion<L> {
    unsafe fn claim(&self, start: *mut u8, len: usize) -> Result<usize, BareError> {
        // SAFETY: forwarded caller contract.
        self.with(|r| unsafe { r.claim(start, len) })
    }
    fn stats(&self) -> RegionStats {
        self.with(|r| r.stats())
    }
}
