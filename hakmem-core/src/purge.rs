//! Giving memory back: flushing, trimming, and decommitting free pages
//! while keeping their address ranges.
//!
//! Policy (when) belongs to the backends; this file is the mechanism (how):
//! - [`Heap::flush`]: batches handed over, remote frees collected, pinned
//!   empty current slabs retired (`account.rs`), every empty slab's units
//!   back to its SuperSlab;
//! - [`Heap::trim`]: flush, then every empty SuperSlab and cached large
//!   region unmapped;
//! - [`Heap::decommit_free`]: flush, then the pages of free units (retained
//!   SuperSlabs' included) and of cached large regions decommitted.
//!
//! Invariants: a unit in `clean_units` is free and its pages past the header
//! are decommitted; a unit in `fresh_units` reads as zero (where the source
//! maps zeroed pages) and has not been written since.

use core::ptr::NonNull;

use crate::heap::Heap;
use crate::page_source::PageSource;
use crate::superslab::{run_mask, SuperSlab};

impl<P: PageSource> Heap<P> {
    /// Hands batched remote frees to their owners, collects the frees other
    /// threads made into this heap, and returns every empty slab's units to
    /// its SuperSlab. Afterwards every empty SuperSlab beyond the retain
    /// policy has been released.
    pub fn flush(&mut self) {
        self.collect();
        self.retire_current();
        let mut ss = self.superslabs;
        while !ss.is_null() {
            // SAFETY: list members are live owned SuperSlabs.
            unsafe {
                self.release_empty_slabs(ss);
                ss = (*ss).next;
            }
        }
    }

    /// Flushes, then returns every empty SuperSlab to the page source,
    /// whatever the retain policy. Returns how many were released.
    pub fn trim(&mut self) -> usize {
        self.flush();
        self.release_cached_regions();
        self.release_empty(0)
    }

    /// Gives free memory's pages back to the page source while keeping the
    /// address ranges: flushes (so empty slabs, retained SuperSlabs' all
    /// included, give their units back), and decommits every free slab unit
    /// not already decommitted, in retained and in-use SuperSlabs
    /// alike. A no-op where the source cannot decommit. Returns the bytes
    /// decommitted.
    pub fn decommit_free(&mut self) -> usize {
        if !P::CAN_DECOMMIT {
            return 0;
        }
        self.flush();
        let mut bytes = self.decommit_cached_regions();
        let mut ss = self.superslabs;
        while !ss.is_null() {
            // SAFETY: list members are live owned SuperSlabs.
            unsafe {
                bytes += self.decommit_units(ss);
                ss = (*ss).next;
            }
        }
        bytes
    }
    /// Decommits the free, not yet clean units of `ss`, run by run.
    ///
    /// # Safety
    /// `ss` is a live owned SuperSlab.
    unsafe fn decommit_units(&mut self, ss: *mut SuperSlab) -> usize {
        let page = self.source.page_size();
        let unit = self.geo.unit_size();
        let header_end = (self.geo.header_bytes as usize).next_multiple_of(page);
        let mut bytes = 0;
        // SAFETY: per the caller.
        unsafe {
            let mut dirty = (*ss).free_units & !(*ss).clean_units;
            while dirty != 0 {
                let first = dirty.trailing_zeros();
                let run = (dirty >> first).trailing_ones();
                let mask = run_mask(first, run);
                dirty &= !mask;
                // Whole pages only (units may be smaller than a page).
                let lo = (first as usize * unit)
                    .max(header_end)
                    .next_multiple_of(page);
                let hi = ((first + run) as usize * unit) & !(page - 1);
                if lo < hi {
                    // SAFETY: free units hold no block, and no metadata
                    // past the header.
                    self.source
                        .decommit(NonNull::new_unchecked(ss.cast::<u8>().add(lo)), hi - lo);
                    bytes += hi - lo;
                    // Units wholly decommitted read as zero again.
                    for u in first..first + run {
                        if u as usize * unit >= lo && (u as usize + 1) * unit <= hi {
                            (*ss).fresh_units |= 1u64 << u;
                        }
                    }
                }
                (*ss).clean_units |= mask;
            }
        }
        bytes
    }

    /// SuperSlabs with free memory still committed: free units not yet
    /// decommitted, or slabs that hold nothing (empty SuperSlabs' included,
    /// and an empty current slab, `account.rs`); plus one if a cached large
    /// region has committed pages. What
    /// [`decommit_free`](Self::decommit_free) would give back.
    pub fn committed_free(&self) -> usize {
        let mut n = usize::from(self.has_dirty_cached_region());
        let mut ss = self.superslabs;
        while !ss.is_null() {
            // SAFETY: list members are live owned SuperSlabs.
            unsafe {
                if (*ss).free_units & !(*ss).clean_units != 0
                    || (*ss).empty_units != 0
                    || self.has_empty_current_in(ss)
                {
                    n += 1;
                }
                ss = (*ss).next;
            }
        }
        n
    }

    /// Recommits units `first .. first + span` of `ss` (past its header).
    ///
    /// # Safety
    /// `ss` is a live owned SuperSlab and the units are free.
    pub(crate) unsafe fn recommit_units(
        &mut self,
        ss: *mut SuperSlab,
        first: u32,
        span: u32,
    ) -> bool {
        let page = self.source.page_size();
        let unit = self.geo.unit_size();
        // Outward to whole pages (a decommit may have covered a page shared
        // with neighbouring units), never into the header.
        let header_end = (self.geo.header_bytes as usize).next_multiple_of(page);
        let lo = ((first as usize * unit) & !(page - 1)).max(header_end);
        let hi = ((first + span) as usize * unit)
            .next_multiple_of(page)
            .min(self.geo.superslab_size());
        if lo >= hi {
            return true;
        }
        // SAFETY: the range lies inside the live SuperSlab, past its header.
        unsafe {
            self.source
                .recommit(NonNull::new_unchecked(ss.cast::<u8>().add(lo)), hi - lo)
        }
    }
}
