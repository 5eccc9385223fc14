//! The counts: the only functions that change how many blocks a slab, a
//! SuperSlab and the heap consider used.
//!
//! Exactness is paid once, at the slab: every allocation and free changes
//! one counter, `Slab::used`, on the cache line the operation touches
//! anyway. The SuperSlab's count of live slabs (`SuperSlab::live`) and the
//! heap's count of empty SuperSlabs (`Counters::empty`) change only when a
//! slab turns used or empty — the two `#[cold]` functions below — and
//! whatever is asked of the heap as a whole (held blocks per class, per
//! SuperSlab) is summed from the slabs when read (`stats.rs`).
//!
//! | counter | counts | changed by |
//! |---|---|---|
//! | `Slab::used` | blocks off its free list: held, or pending remote | [`Heap::count_alloc`] +1, [`Heap::count_free`] −n |
//! | `SuperSlab::live` | its slabs with `used > 0` or [`PINNED`] | `slab_now_used` +1, `slab_now_empty` −1 |
//! | `SuperSlab::empty_units` | units of its slabs with `used == 0`, not pinned | the same two, and the slab life cycle |
//! | `SuperSlab::remote_count` | blocks freed by other threads, not yet collected | `remote.rs` |
//! | `Counters::empty` | SuperSlabs with `live == 0` | the same two, `map_superslab`, `release_superslab` |
//!
//! The current slab of each small class (the head of its partial list) is
//! *pinned* ([`PINNED`]): counted live whatever its `used`. So the
//! allocation fast path, which only ever takes from a current slab, counts
//! with one increment and no test ([`Heap::count_alloc_current`]), and a
//! program that allocates and frees one block in a loop does not turn its
//! slab (and SuperSlab) empty and used again on every pair (as mimalloc
//! delays retiring a page): the free that empties a pinned slab only finds
//! the flag. A slab is pinned when it becomes the head of its list and
//! unpinned when it stops being it (`slab.rs`); [`Heap::flush`] (so `trim`,
//! `decommit_free` and the background purge) first retires every empty
//! current slab ([`Heap::retire_current`]), so the memory promise is kept.
//! The counts of blocks stay exact all along.
//!
//! Invariants: per SuperSlab, exactly held = `Σ slab.used − remote_count`;
//! `live == 0` ⇔ held + pending = 0 and no slab of it is current, which is
//! when `on_empty` runs; a small slab is pinned iff it heads its partial
//! list.

use crate::heap::Heap;
use crate::medium::MEDIUM_CLASS;
use crate::page_source::PageSource;
use crate::size_class::NUM_CLASSES;
use crate::slab::{Slab, PINNED};
use crate::superslab::{run_mask, SuperSlab};

impl<P: PageSource> Heap<P> {
    /// Counts a block of `slab` handed to the application.
    ///
    /// # Safety
    /// `slab` is an assigned slab of a live owned SuperSlab.
    #[inline(always)]
    pub(crate) unsafe fn count_alloc(&mut self, slab: *mut Slab) {
        // SAFETY: per the caller.
        unsafe {
            let used = (*slab).used;
            (*slab).used = used + 1;
            if used == 0 {
                self.slab_now_used(slab);
            }
        }
    }

    /// Counts a block of `slab`, the current (pinned, so live) slab of its
    /// class, handed to the application: one increment, no transition.
    ///
    /// # Safety
    /// `slab` is a pinned slab of a live owned SuperSlab.
    #[inline(always)]
    pub(crate) unsafe fn count_alloc_current(&mut self, slab: *mut Slab) {
        // SAFETY: per the caller.
        unsafe {
            debug_assert!((*slab).flags & PINNED != 0);
            (*slab).used += 1;
        }
    }

    /// `slab` just became the head of its class's partial list: pins it
    /// (it counts live from now on, if it did not already).
    ///
    /// # Safety
    /// `slab` is an assigned small slab of a live owned SuperSlab, not
    /// pinned.
    pub(crate) unsafe fn pin(&mut self, slab: *mut Slab) {
        // SAFETY: per the caller.
        unsafe {
            debug_assert!((*slab).flags & PINNED == 0 && (*slab).class != MEDIUM_CLASS);
            (*slab).flags |= PINNED;
            if (*slab).used == 0 {
                self.slab_now_used(slab);
            }
        }
    }

    /// Retires every empty current slab: each is unlinked from its partial
    /// list (the next one becomes current), counted empty and its units
    /// given back, its SuperSlab retained or released if that was its last
    /// live slab. Afterwards no current slab is empty.
    pub(crate) fn retire_current(&mut self) {
        for c in 0..NUM_CLASSES {
            loop {
                let slab = self.partial[c];
                // SAFETY: partial slabs are assigned slabs of live owned
                // SuperSlabs; unlinking the (pinned) head unpins it and
                // counts it empty, which may release its SuperSlab (seen by
                // the release count); if not, its units go back, as a slab
                // with room must be in its partial list.
                unsafe {
                    if slab.is_null() || (*slab).used != 0 {
                        break;
                    }
                    let ss = self.superslab_of(slab.cast());
                    let released = self.n.released;
                    self.unlink_partial(slab);
                    if self.n.released == released {
                        self.release_slab(ss, slab);
                    }
                }
            }
        }
    }

    /// Whether some current slab is empty (what
    /// [`retire_current`](Self::retire_current) would retire).
    pub(crate) fn has_empty_current(&self) -> bool {
        self.partial[..NUM_CLASSES].iter().any(|&slab| {
            // SAFETY: partial slabs are assigned slabs of live owned SuperSlabs.
            !slab.is_null() && unsafe { (*slab).used } == 0
        })
    }

    /// Whether an empty current slab lies in `ss`.
    pub(crate) fn has_empty_current_in(&self, ss: *mut SuperSlab) -> bool {
        self.partial[..NUM_CLASSES].iter().any(|&slab| {
            // SAFETY: partial slabs are assigned slabs of live owned SuperSlabs.
            !slab.is_null() && self.superslab_of(slab.cast()) == ss && unsafe { (*slab).used } == 0
        })
    }

    /// Counts `n` blocks of `slab` back on its free list (freed by the
    /// owner, or collected from the remote list). May release the SuperSlab:
    /// the caller touches neither afterwards.
    ///
    /// # Safety
    /// `slab` is an assigned slab of a live owned SuperSlab with
    /// `used >= n`, and the blocks are already on its free list.
    #[inline(always)]
    pub(crate) unsafe fn count_free(&mut self, slab: *mut Slab, n: u32) {
        // SAFETY: per the caller.
        unsafe {
            (*slab).used -= n;
            if (*slab).used == 0 && (*slab).flags & PINNED == 0 {
                self.slab_now_empty(slab);
            }
        }
    }

    /// Whether freeing one block of `slab` keeps its counts where they are
    /// above the slab (it stays live: held blocks remain, or it is pinned),
    /// so [`count_free_kept`](Self::count_free_kept) may count it.
    ///
    /// # Safety
    /// `slab` is an assigned slab of a live owned SuperSlab.
    #[inline(always)]
    pub(crate) unsafe fn free_keeps_live(slab: *const Slab) -> bool {
        // SAFETY: per the caller.
        unsafe { (*slab).used > 1 || (*slab).flags & PINNED != 0 }
    }

    /// [`count_free`](Self::count_free) of one block, where
    /// [`free_keeps_live`](Self::free_keeps_live) said the slab stays live.
    ///
    /// # Safety
    /// As `count_free`, and `free_keeps_live(slab)` holds.
    #[inline(always)]
    pub(crate) unsafe fn count_free_kept(&mut self, slab: *mut Slab) {
        // SAFETY: per the caller.
        unsafe {
            debug_assert!(Self::free_keeps_live(slab) && (*slab).used >= 1);
            (*slab).used -= 1;
        }
    }

    /// `slab` holds its first block.
    ///
    /// # Safety
    /// As [`count_alloc`](Self::count_alloc).
    #[cold]
    unsafe fn slab_now_used(&mut self, slab: *mut Slab) {
        let ss = self.superslab_of(slab.cast());
        // SAFETY: per the caller.
        unsafe {
            if (*ss).live == 0 {
                self.n.empty -= 1;
            }
            (*ss).live += 1;
            (*ss).empty_units &= !slab_units(ss, slab);
        }
    }

    /// `slab` holds nothing any more and is not pinned; its SuperSlab may
    /// have emptied.
    ///
    /// # Safety
    /// As [`count_free`](Self::count_free).
    #[cold]
    pub(crate) unsafe fn slab_now_empty(&mut self, slab: *mut Slab) {
        let ss = self.superslab_of(slab.cast());
        // SAFETY: per the caller.
        unsafe {
            (*ss).empty_units |= slab_units(ss, slab);
            (*ss).live -= 1;
            if (*ss).live == 0 {
                self.on_empty(ss);
            }
        }
    }
}

/// The units mask of an assigned slab.
///
/// # Safety
/// `slab` is an assigned slab of the live SuperSlab `ss`.
unsafe fn slab_units(ss: *mut SuperSlab, slab: *mut Slab) -> u64 {
    // SAFETY: per the caller.
    let span = unsafe { (*slab).span } as u32;
    run_mask(SuperSlab::unit_index(ss, slab) as u32, span)
}
