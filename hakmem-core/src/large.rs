//! Large blocks: requests beyond the largest slab class (or aligned beyond a
//! slab unit) get a region of their own from the page source and give it
//! straight back when freed.
//!
//! ```text
//! align < SuperSlab:   | LargeBlock | pad | user data ...        |   region aligned to the SuperSlab size
//! align >= SuperSlab:  | ...  | LargeBlock | ... | user data ... |   header at user - SuperSlab size
//! ```
//!
//! Either way the header is found from the user pointer without a search
//! (see `locate.rs`).
//!
//! Invariants:
//! - `magic == LARGE_MAGIC ^ header address` while live;
//! - `user + size <= base + map_size`; `state` goes LIVE → FREEING → FREED
//!   only by a remote free, and the owner unmaps only LIVE (its own free) or
//!   FREED blocks.

use core::mem::size_of;
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicUsize, Ordering};

use crate::heap::Heap;
use crate::page_source::PageSource;
use crate::size_class::MIN_ALIGN;
use crate::superslab::{LARGE_FORWARD_MAGIC, LARGE_MAGIC};

/// State of a live large block.
pub(crate) const LARGE_LIVE: usize = 0;
/// A remote free is decommitting it.
pub(crate) const LARGE_FREEING: usize = 1;
/// Freed remotely; the owner unmaps it at its next collect.
pub(crate) const LARGE_FREED: usize = 2;

/// The header of a large block.
#[repr(C)]
pub(crate) struct LargeBlock {
    /// `LARGE_MAGIC ^ address of this header` while live.
    pub magic: usize,
    /// Id of the owning heap.
    pub owner: AtomicUsize,
    /// `LARGE_LIVE`, `LARGE_FREEING` or `LARGE_FREED`.
    pub state: AtomicUsize,
    /// Start of the region.
    pub base: *mut u8,
    /// Bytes of the region.
    pub map_size: usize,
    /// Address handed to the application.
    pub user: usize,
    /// Bytes requested (the last resize included).
    pub size: usize,
    /// Heap's large-block list.
    pub next: *mut LargeBlock,
    /// Heap's large-block list.
    pub prev: *mut LargeBlock,
}

impl LargeBlock {
    /// Bytes usable from the user pointer to the end of the region.
    ///
    /// # Safety
    /// `h` is a live header.
    pub unsafe fn usable(h: *mut LargeBlock) -> usize {
        // SAFETY: per the caller.
        unsafe { (*h).base as usize + (*h).map_size - (*h).user }
    }

    /// Decommits the whole pages of the user data after the header.
    ///
    /// # Safety
    /// `h` is a live header whose block nobody uses any more.
    pub unsafe fn decommit_body<P: PageSource>(h: *mut LargeBlock, source: &P) {
        let page = source.page_size();
        // SAFETY: per the caller; the range lies inside the region and after
        // both the header and the page holding it.
        unsafe {
            let header_end = h as usize + size_of::<LargeBlock>();
            let from = header_end.max((*h).user).next_multiple_of(page);
            let end = (*h).base as usize + (*h).map_size;
            if from < end {
                let p = (*h).base.with_addr(from);
                source.decommit(NonNull::new_unchecked(p), end - from);
            }
        }
    }
}

impl<P: PageSource> Heap<P> {
    /// Maps a large block. `align` is a power of two, at least 16.
    #[cold]
    pub(crate) fn alloc_large(&mut self, size: usize, align: usize, zero: bool) -> *mut u8 {
        let ss = self.geo.superslab_size();
        let page = self.source.page_size();
        let (map_align, user_off, header_off) = if align < ss {
            (
                ss,
                size_of::<LargeBlock>().next_multiple_of(align.max(MIN_ALIGN)),
                0,
            )
        } else {
            (align, align, align - ss)
        };
        let Some(total) = user_off
            .checked_add(size)
            .and_then(|t| t.checked_next_multiple_of(page))
        else {
            return ptr::null_mut();
        };
        if total > isize::MAX as usize {
            return ptr::null_mut();
        }
        let Some(base) = self.source.map(total, map_align.max(page)) else {
            return ptr::null_mut();
        };
        let base = base.as_ptr();
        // SAFETY: the region is ours, `total` bytes, and both offsets are
        // inside it (user_off + size <= total; header_off + header < user_off).
        unsafe {
            let h = base.add(header_off).cast::<LargeBlock>();
            let user = base.add(user_off);
            h.write(LargeBlock {
                magic: LARGE_MAGIC ^ h as usize,
                owner: AtomicUsize::new(self.id),
                state: AtomicUsize::new(LARGE_LIVE),
                base,
                map_size: total,
                user: user as usize,
                size,
                next: self.large,
                prev: ptr::null_mut(),
            });
            if header_off != 0 {
                // Tell the hardened lookup where the header is.
                let fwd = base.cast::<usize>();
                fwd.write(LARGE_FORWARD_MAGIC ^ base as usize);
                fwd.add(1).write(h as usize);
            }
            if !self.large.is_null() {
                (*self.large).prev = h;
            }
            self.large = h;
            if zero && !P::MAPS_ZEROED {
                ptr::write_bytes(user, 0, size);
            }
            self.n.large_count += 1;
            self.n.large_bytes += size;
            self.n.large_mapped += total;
            user
        }
    }

    /// Unlinks and unmaps an owned large block.
    ///
    /// # Safety
    /// `h` is a live large block of this heap that nobody uses any more.
    pub(crate) unsafe fn free_large(&mut self, h: *mut LargeBlock) {
        // SAFETY: per the caller; list neighbours are live headers.
        unsafe {
            let (prev, next) = ((*h).prev, (*h).next);
            if prev.is_null() {
                self.large = next;
            } else {
                (*prev).next = next;
            }
            if !next.is_null() {
                (*next).prev = prev;
            }
            self.n.large_count -= 1;
            self.n.large_bytes -= (*h).size;
            self.n.large_mapped -= (*h).map_size;
            let (base, size) = ((*h).base, (*h).map_size);
            (*h).magic = 0;
            self.source.unmap(NonNull::new_unchecked(base), size);
        }
    }

    /// Unmaps the large blocks other threads freed. Returns how many.
    pub(crate) fn collect_large(&mut self) -> usize {
        let mut n = 0;
        let mut h = self.large;
        while !h.is_null() {
            // SAFETY: list members are live headers; `next` is read first.
            unsafe {
                let next = (*h).next;
                if (*h).state.load(Ordering::Acquire) == LARGE_FREED {
                    self.free_large(h);
                    n += 1;
                }
                h = next;
            }
        }
        n
    }

    /// Records a new size for a large block that stays where it is; returns
    /// false (changing nothing) when another heap owns it.
    ///
    /// # Safety
    /// `h` is a live large block header and `new_size` fits its region.
    pub(crate) unsafe fn resize_large_in_place(
        &mut self,
        h: *mut LargeBlock,
        new_size: usize,
    ) -> bool {
        // SAFETY: per the caller, `h` is the block's live header.
        unsafe {
            if (*h).owner.load(Ordering::Relaxed) != self.id {
                return false;
            }
            self.n.large_bytes = self.n.large_bytes - (*h).size + new_size;
            (*h).size = new_size;
        }
        true
    }
}
