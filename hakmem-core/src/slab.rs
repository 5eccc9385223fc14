//! A slab: a run of slab units inside one SuperSlab that serves one size
//! class at a time; the intrusive block lists it threads through freed
//! blocks; and the slab's life cycle in the heap (made from free units,
//! linked in its class's partial list, its units given back).
//!
//! A slab's memory is carved lazily: `bump` moves forward past the block
//! handed out and the rest of the page it ends in (those blocks onto the
//! free list, `Heap::carve_batch`; one block at a time for zeroed requests
//! and in the hardened build), so memory past it is never written before a
//! block there is handed out. Freed
//! blocks go on the slab's own free list — it is the only cache — and blocks
//! freed by other threads on its `remote` list until the owner collects them.
//! A slab whose `used` reaches zero stays assigned to its class (so a
//! program that frees and allocates in a loop does not remake it) until its
//! units are wanted by another class, its SuperSlab is released, or the heap
//! is flushed.
//!
//! Invariants (per assigned slab; checked by `check.rs`):
//! - `used + (length of free) == carved`, where `carved = (bump - start) /
//!   size` and `used` counts the blocks off the free list: held by the
//!   application or pending (on `remote`, or batched in a freeing heap);
//! - `start <= bump <= end`, `end - start == capacity * size`;
//! - `IN_PARTIAL` is set iff the slab is in its class's partial list; every
//!   slab with room is (a slab the fast path just exhausted may stay there
//!   until the next allocation finds it so);
//! - a small slab is `PINNED` iff it heads its class's partial list;
//! - its units are in the SuperSlab's `empty_units` iff `used == 0` and it
//!   is not `PINNED`.

use core::ptr;
use core::sync::atomic::{AtomicU32, Ordering};

use crate::error::{fault, FaultKind};
use crate::heap::Heap;
use crate::medium::MEDIUM_CLASS;
use crate::page_source::PageSource;
use crate::remote::RemoteList;
use crate::size_class::{class_size, natural_align};
use crate::superslab::{find_run, run_mask, SuperSlab};

/// A free block, as seen through its first two words.
#[repr(C)]
pub(crate) struct Block {
    /// Next block in whatever list holds this one.
    pub next: *mut Block,
    /// [`free_tag`] of the block's address while it is not held.
    pub tag: usize,
}

/// Salt of the double-free tag.
const FREE_SALT: usize = (0x5afe_f4ee_u32 as usize).rotate_left(usize::BITS / 2 - 3) ^ 0x00dd_5eed;

/// The word written into the second word of every block that is freed, so
/// that a second free of it is recognised cheaply.
#[inline(always)]
pub(crate) fn free_tag(block: *mut u8) -> usize {
    (block as usize) ^ FREE_SALT
}

/// Stops on a free block that was written after it was freed (its free tag is
/// gone, so the link beside it cannot be trusted): a use after free, or a
/// double free after such a write. Reported as
/// [`FaultKind::FreeBlockOverwritten`] through the platform's fault handler
/// ([`set_fault_handler`](crate::set_fault_handler)). Never returns.
#[cold]
#[inline(never)]
pub(crate) fn corrupted(block: *mut u8) -> ! {
    fault(FaultKind::FreeBlockOverwritten, block as usize)
}

/// Slab flag: linked into its class's partial list.
pub(crate) const IN_PARTIAL: u8 = 1;
/// Slab flag: memory past `bump` has never been written since it was mapped
/// (or decommitted), so it reads as zero when the source maps zeroed pages.
pub(crate) const FRESH: u8 = 2;
/// Slab flag: the current slab of its small class (the head of its partial
/// list), counted live whatever its `used` (`account.rs`).
pub(crate) const PINNED: u8 = 4;
/// `class` of a unit that begins no slab.
pub(crate) const NO_CLASS: u8 = u8::MAX;

/// Metadata of one slab unit; for the first unit of a slab, the slab's.
/// Exactly one cache line, so the free path touches one line of metadata.
#[repr(C, align(64))]
pub(crate) struct Slab {
    /// Local free list: blocks of this slab that are not held (the slab's
    /// own cache; there is no other).
    pub free: *mut Block,
    /// `ceil(2^64 / size)` ([`reciprocal`]): divides and tests divisibility
    /// of 32-bit offsets by the block size with one multiplication.
    pub inv: u64,
    /// Blocks freed by other threads, not yet collected (a lock-free stack
    /// pushed by any thread, taken whole by the owner).
    pub remote: RemoteList,
    /// Partial-list links.
    pub next: *mut Slab,
    /// Partial-list links.
    pub prev: *mut Slab,
    /// Blocks off the free list: held by the application, or pending (on
    /// `remote`, or on their way there in a freeing heap's batch). Changed
    /// only by `account.rs`.
    pub used: u32,
    /// Offset of the first uncarved block. Written by the owner only;
    /// atomic (relaxed) because remote frees read it to refuse uncarved
    /// memory.
    pub bump: AtomicU32,
    /// Offset of block 0 from the SuperSlab start.
    pub start: u32,
    /// Offset just past the last block.
    pub end: u32,
    /// Block size.
    pub size: u32,
    /// Size class, or [`NO_CLASS`].
    pub class: u8,
    /// Units this slab spans.
    pub span: u8,
    /// Index of the unit that begins the slab this unit belongs to (its own
    /// index when it begins one or is free).
    pub head: u8,
    /// `IN_PARTIAL` | `FRESH` | `PINNED`.
    pub flags: u8,
}

const _: () = assert!(
    core::mem::size_of::<Slab>() == 64,
    "a slab record is one cache line"
);

impl Slab {
    /// A free unit's metadata.
    pub const fn unassigned(index: u8) -> Slab {
        Slab {
            free: ptr::null_mut(),
            inv: 0,
            remote: RemoteList::new(),
            next: ptr::null_mut(),
            prev: ptr::null_mut(),
            used: 0,
            bump: AtomicU32::new(0),
            start: 0,
            end: 0,
            size: 0,
            class: NO_CLASS,
            span: 0,
            head: index,
            flags: 0,
        }
    }

    /// Blocks carved so far.
    #[inline]
    pub fn carved(&self) -> u32 {
        (self.bump.load(Ordering::Relaxed) - self.start) / self.size
    }

    /// Index of the block at `off` (an offset from the SuperSlab start inside
    /// `[start, end)`), and whether `off` is exactly a block's start.
    #[inline(always)]
    pub fn block_index(&self, off: usize) -> (usize, bool) {
        let rel = (off - self.start as usize) as u64;
        let idx = ((rel as u128 * self.inv as u128) >> 64) as usize;
        (idx, divides(rel, self.inv))
    }

    /// Whether the slab has a free or uncarved block.
    #[inline(always)]
    pub fn has_room(&self) -> bool {
        !self.free.is_null() || self.bump.load(Ordering::Relaxed) < self.end
    }
}

/// The reciprocal stored in [`Slab::inv`] for blocks of `size` bytes (at
/// least 2): `c = ceil(2^64 / size)`. For every `n < 2^32`, `n / size` is the
/// high word of `n × c` and `size` divides `n` iff `n × c mod 2^64 < c`
/// (Lemire, Kaser and Kurz, "Faster remainder by direct computation", 2019).
pub(crate) const fn reciprocal(size: u32) -> u64 {
    u64::MAX / size as u64 + 1
}

/// Whether the block size whose [`reciprocal`] is `inv` divides `rel`
/// (`rel < 2^32`): one multiplication, no division.
#[inline(always)]
pub(crate) fn divides(rel: u64, inv: u64) -> bool {
    rel.wrapping_mul(inv) < inv
}

impl<P: PageSource> Heap<P> {
    /// Finds or makes a slab for class `c` (linked at the head of its
    /// partial list); null when out of memory.
    #[cold]
    pub(crate) fn new_slab_slow(&mut self, c: usize) -> *mut Slab {
        // Remote frees may have refilled this class: collect them first
        // (and hand over our own batches, so no SuperSlab waits on us).
        self.collect_for_room();
        if !self.partial[c].is_null() {
            return self.partial[c];
        }
        // Empty current slabs of other classes hold units that could serve:
        // retire them first (their SuperSlabs may go, per the retain policy),
        // as their last frees would have without the pin (`account.rs`).
        self.retire_current();
        if let Some(slab) = self.carve_owned(c) {
            return slab;
        }
        match self.map_superslab() {
            // SAFETY: a fresh SuperSlab has every unit free, and every slab
            // class fits (geometry invariant).
            Some(ss) => unsafe { self.carve_slab(ss, c).unwrap_or(ptr::null_mut()) },
            None => ptr::null_mut(),
        }
    }

    /// A new slab of class `c` from the owned SuperSlabs' free (or empty
    /// slabs') units, if any has room.
    fn carve_owned(&mut self, c: usize) -> Option<*mut Slab> {
        let mut ss = self.superslabs;
        while !ss.is_null() {
            // SAFETY: list members are live owned SuperSlabs.
            if let Some(slab) = unsafe { self.carve_slab(ss, c) } {
                return Some(slab);
            }
            // SAFETY: as above.
            ss = unsafe { (*ss).next };
        }
        None
    }

    /// Takes the free units `first .. first + span` of `ss` for a new slab
    /// (small or medium) that starts at `first`: gives decommitted units
    /// their pages back, marks the run used and empty (no block held yet)
    /// and points each unit's record at `first`. Returns whether every unit
    /// was fresh (never written since mapped), or `None`, with nothing
    /// changed, when the pages could not be recommitted.
    ///
    /// # Safety
    /// `ss` is a live owned SuperSlab and the units are free.
    pub(crate) unsafe fn claim_units(
        &mut self,
        ss: *mut SuperSlab,
        first: u32,
        span: u32,
    ) -> Option<bool> {
        let mask = run_mask(first, span);
        // SAFETY: `ss` is live and ours, the units free (caller).
        unsafe {
            if (*ss).clean_units & mask != 0 {
                // Decommitted units may need their pages back first.
                if !self.recommit_units(ss, first, span) {
                    return None;
                }
                (*ss).clean_units &= !mask;
            }
            let fresh = (*ss).fresh_units & mask == mask;
            (*ss).free_units &= !mask;
            (*ss).fresh_units &= !mask;
            (*ss).empty_units |= mask; // used == 0 until its first block
            for u in first..first + span {
                (*SuperSlab::slab(ss, u as usize)).head = first as u8;
            }
            Some(fresh)
        }
    }

    /// Assigns a free run of units of `ss` to a new slab of class `c` and
    /// links it at the head of its partial list. When no run is free, the
    /// SuperSlab's empty slabs give their units back first.
    ///
    /// # Safety
    /// `ss` is a live owned SuperSlab.
    pub(crate) unsafe fn carve_slab(&mut self, ss: *mut SuperSlab, c: usize) -> Option<*mut Slab> {
        let span = self.geo.spans[c] as u32;
        let size = class_size(c);
        let unit = self.geo.unit_size();
        // SAFETY: `ss` is live and ours (caller).
        unsafe {
            let mut candidates = (*ss).free_units;
            let mut reclaimed = false;
            let (first, start, capacity) = loop {
                let Some(first) = find_run(candidates, span) else {
                    if reclaimed || (*ss).empty_units == 0 {
                        return None;
                    }
                    self.release_empty_slabs(ss);
                    reclaimed = true;
                    candidates = (*ss).free_units;
                    continue;
                };
                let lo = (first as usize * unit).max(self.geo.header_bytes as usize);
                let start = lo.next_multiple_of(natural_align(c).min(unit));
                let limit = (first + span) as usize * unit;
                let capacity = limit.saturating_sub(start) / size;
                if capacity == 0 {
                    // A run that starts in the header's last unit may be too
                    // short for this class.
                    candidates &= !(1u64 << first);
                    continue;
                }
                break (first, start, capacity);
            };
            let fresh = self.claim_units(ss, first, span)?;
            let slab = SuperSlab::slab(ss, first as usize);
            slab.write(Slab {
                free: ptr::null_mut(),
                inv: reciprocal(size as u32),
                remote: RemoteList::new(),
                next: ptr::null_mut(),
                prev: ptr::null_mut(),
                used: 0,
                bump: AtomicU32::new(start as u32),
                start: start as u32,
                end: (start + capacity * size) as u32,
                size: size as u32,
                class: c as u8,
                span: span as u8,
                head: first as u8,
                flags: if fresh { FRESH } else { 0 },
            });
            self.link_partial_head(slab);
            Some(slab)
        }
    }

    /// Returns the units of every empty slab of `ss` to its free units.
    ///
    /// # Safety
    /// `ss` is a live owned SuperSlab.
    pub(crate) unsafe fn release_empty_slabs(&mut self, ss: *mut SuperSlab) {
        // SAFETY: per the caller; `empty_units` marks exactly the units of
        // assigned slabs with `used == 0`, whose first unit is the lowest
        // bit of each run.
        unsafe {
            loop {
                let empty = (*ss).empty_units;
                if empty == 0 {
                    break;
                }
                let first = empty.trailing_zeros() as usize;
                let slab = SuperSlab::slab(ss, first);
                debug_assert!((*slab).used == 0 && (*slab).head as usize == first);
                self.release_slab(ss, slab);
            }
        }
    }

    /// Returns an empty slab's units to its SuperSlab.
    ///
    /// # Safety
    /// `slab` is an assigned slab of the live owned SuperSlab `ss` with
    /// `used == 0` (so nothing is pending on its remote list either).
    pub(crate) unsafe fn release_slab(&mut self, ss: *mut SuperSlab, slab: *mut Slab) {
        // SAFETY: per the caller.
        unsafe {
            if (*slab).class == MEDIUM_CLASS {
                self.medium_unindex(slab);
            }
            if (*slab).flags & IN_PARTIAL != 0 {
                self.unlink_partial(slab);
            }
            let first = SuperSlab::unit_index(ss, slab) as u32;
            let span = (*slab).span as u32;
            for u in first..first + span {
                SuperSlab::slab(ss, u as usize).write(Slab::unassigned(u as u8));
            }
            let mask = run_mask(first, span);
            (*ss).free_units |= mask;
            (*ss).empty_units &= !mask;
        }
    }

    /// Links a new slab at the head of its class's partial list, where
    /// allocations come from.
    ///
    /// # Safety
    /// `slab` is an assigned slab not in its partial list.
    pub(crate) unsafe fn link_partial_head(&mut self, slab: *mut Slab) {
        // SAFETY: per the caller; list members are assigned slabs.
        unsafe {
            let c = (*slab).class as usize;
            let head = self.partial[c];
            (*slab).prev = ptr::null_mut();
            (*slab).next = head;
            if head.is_null() {
                self.partial_tail[c] = slab;
            } else {
                (*head).prev = slab;
            }
            self.partial[c] = slab;
            (*slab).flags |= IN_PARTIAL;
            if c != MEDIUM_CLASS as usize {
                // The new slab first: pinned, it keeps its SuperSlab live
                // should the displaced one's retire empty another.
                self.pin(slab);
                if !head.is_null() {
                    self.unpin(head);
                }
            }
        }
    }

    /// Links a slab that regained room at the tail of its class's partial
    /// list, so the slab being allocated from stays current.
    ///
    /// # Safety
    /// `slab` is an assigned slab not in its partial list.
    #[cold]
    pub(crate) unsafe fn link_partial_tail(&mut self, slab: *mut Slab) {
        // SAFETY: per the caller; list members are assigned slabs.
        unsafe {
            let c = (*slab).class as usize;
            let tail = self.partial_tail[c];
            (*slab).next = ptr::null_mut();
            (*slab).prev = tail;
            if tail.is_null() {
                self.partial[c] = slab;
            } else {
                (*tail).next = slab;
            }
            self.partial_tail[c] = slab;
            (*slab).flags |= IN_PARTIAL;
            if tail.is_null() && c != MEDIUM_CLASS as usize {
                self.pin(slab);
            }
        }
    }

    /// # Safety
    /// `slab` is in its class's partial list.
    pub(crate) unsafe fn unlink_partial(&mut self, slab: *mut Slab) {
        // SAFETY: per the caller; neighbours are list members.
        unsafe {
            let c = (*slab).class as usize;
            let (prev, next) = ((*slab).prev, (*slab).next);
            if prev.is_null() {
                self.partial[c] = next;
            } else {
                (*prev).next = next;
            }
            if next.is_null() {
                self.partial_tail[c] = prev;
            } else {
                (*next).prev = prev;
            }
            (*slab).next = ptr::null_mut();
            (*slab).prev = ptr::null_mut();
            (*slab).flags &= !IN_PARTIAL;
            if prev.is_null() && c != MEDIUM_CLASS as usize {
                // The head went: the next slab is current now (pinned
                // first, see `link_partial_head`).
                if !next.is_null() {
                    self.pin(next);
                }
                self.unpin(slab);
            }
        }
    }

    /// `slab` stopped being its class's current slab: unpinned, and counted
    /// empty if it holds nothing (its SuperSlab may then be released).
    ///
    /// # Safety
    /// `slab` is a pinned slab of a live owned SuperSlab.
    unsafe fn unpin(&mut self, slab: *mut Slab) {
        // SAFETY: per the caller.
        unsafe {
            (*slab).flags &= !PINNED;
            if (*slab).used == 0 {
                self.slab_now_empty(slab);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::size_class::{class_size, NUM_CLASSES};

    #[test]
    fn reciprocal_division_is_exact_below_8_mib_and_beyond() {
        for c in 0..NUM_CLASSES {
            let size = class_size(c) as u32;
            let mut s = Slab::unassigned(0);
            s.size = size;
            s.inv = reciprocal(size);
            s.start = 0;
            // Probe block starts, their neighbours and the top of the range.
            let step = if cfg!(miri) { 4099 } else { 97 };
            let mut off = 0usize;
            while off < (1 << 23) {
                let (idx, exact) = s.block_index(off);
                assert_eq!(idx, off / size as usize, "size {size} off {off}");
                assert_eq!(exact, off % size as usize == 0);
                off += step;
            }
            for k in [1usize, 2, 1000] {
                let b = k * size as usize;
                if b + 1 < (1 << 23) {
                    assert_eq!(s.block_index(b), (k, true));
                    assert_eq!(s.block_index(b - 1), (k - 1, size == 1));
                    assert!(!s.block_index(b + 1).1);
                }
            }
        }
    }

    #[test]
    fn tags_differ_per_address() {
        let a = 0x1000 as *mut u8;
        let b = 0x1010 as *mut u8;
        assert_ne!(free_tag(a), free_tag(b));
        assert_ne!(free_tag(a), 0);
    }
}
