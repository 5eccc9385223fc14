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
//! | `SuperSlab::live` | its slabs with `used > 0` | `slab_now_used` +1, `slab_now_empty` −1 |
//! | `SuperSlab::empty_units` | units of its slabs with `used == 0` | the same two, and the slab life cycle |
//! | `SuperSlab::remote_count` | blocks freed by other threads, not yet collected | `remote.rs` |
//! | `Counters::empty` | SuperSlabs with `live == 0` | the same two, `map_superslab`, `release_superslab` |
//!
//! Invariants: per SuperSlab, exactly held = `Σ slab.used − remote_count`;
//! `live == 0` ⇔ held + pending = 0, which is when `on_empty` runs.

use crate::heap::Heap;
use crate::page_source::PageSource;
use crate::slab::Slab;
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
            if (*slab).used == 0 {
                self.slab_now_empty(slab);
            }
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

    /// `slab` holds nothing any more; its SuperSlab may have emptied.
    ///
    /// # Safety
    /// As [`count_free`](Self::count_free).
    #[cold]
    unsafe fn slab_now_empty(&mut self, slab: *mut Slab) {
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
