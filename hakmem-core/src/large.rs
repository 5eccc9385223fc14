//! Large blocks: requests beyond the largest slab class (or aligned beyond a
//! slab unit) get a region of their own from the page source. A freed
//! region is kept for reuse in a small cache (`Config::large_cache`
//! regions; the oldest goes back when the cache is full), so a program that
//! replaces a big buffer in a loop neither maps nor faults in fresh pages
//! each time; `decommit_free` gives the cached regions' pages back (the
//! backends call it after their purge delay) and `trim` unmaps them.
//!
//! Each region knows how far its pages may be committed (`dirty`: the
//! extents handed out since its pages were last decommitted), so a request
//! takes the cached region that needs the fewest fresh pages, and at most
//! [`LARGE_CACHE_COMMITTED`] bytes of cached regions stay committed. A
//! region committed past twice the request keeps those pages only while
//! the heap's live blocks keep fewer than [`LARGE_CACHE_COMMITTED`] bytes
//! past twice their own (`Counters::large_kept`); the rest goes back first.
//! So a buffer replaced by a smaller one reuses its committed pages (no
//! fresh, zeroed pages each time), and live blocks hold at most twice their
//! pages plus that one bound.
//!
//! The `hardened` build caches too: a cached region keeps its guard page
//! and its body past the first page is made inaccessible (a write after
//! free faults; the header word stays readable for the lookup of a later
//! bad free), see `hardened.rs`.
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
//!   only by a remote free, and the owner unmaps (or caches) only LIVE (its
//!   own free) or FREED blocks;
//! - a cached region holds no header (its first word is 0), is mapped, and
//!   is counted in `Counters::large_cached`; at most `Config::large_cache`
//!   of them;
//! - `Counters::large_kept` is the sum of the live blocks' `kept`, at most
//!   [`LARGE_CACHE_COMMITTED`];
//! - a region's pages past `dirty` (a page multiple once cached) were never
//!   handed out since its last decommit; the cached regions' `dirty` bytes
//!   past a clean first page sum to at most [`LARGE_CACHE_COMMITTED`] after
//!   each free (where the source can decommit);
//! - hardened: a cached region is inaccessible from its `guard` to its end,
//!   and its first page past the first word is `FILL`.

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

/// The size of the region a large block of `n` bytes is mapped (or moved)
/// into while the cache is on: the next power of two. Few distinct sizes,
/// so a freed region fits any later request up to its size (a buffer
/// replaced by one up to twice as big reuses the old one's committed
/// pages), and a buffer grown by `realloc` stays in place to the next
/// power. Pages past the request are never touched: they cost address
/// space, not memory. `n` itself when the power would overflow.
fn region_step(n: usize) -> usize {
    n.checked_next_power_of_two().unwrap_or(n)
}

/// Most freed large regions a heap may keep ([`Config::large_cache`] is
/// capped to this).
///
/// [`Config::large_cache`]: crate::Config::large_cache
pub const LARGE_CACHE_MAX: usize = 8;

/// Bytes of cached large regions that may stay committed (dirty); past
/// this, the oldest cached regions are decommitted as new ones enter, so
/// the cache bounds the memory a program's freed buffers keep before the
/// purge delay, not only their number.
pub const LARGE_CACHE_COMMITTED: usize = 32 << 20;

/// The smallest large request whose region is given huge pages where the
/// source has them (`PageSource::advise_huge`; also at least four huge
/// pages): past the request, at most the huge page its end lies in is
/// committed: under a quarter of the request.
pub const LARGE_HUGE_MIN: usize = 8 << 20;

/// A freed large block's region, kept for reuse.
#[derive(Clone, Copy)]
pub(crate) struct CachedRegion {
    pub base: *mut u8,
    pub size: usize,
    /// Bytes from `base` whose pages may be committed (an estimate from the
    /// extents handed out; at most a page once decommitted: clean).
    pub dirty: usize,
    /// Hardened: offset from which the region's pages are inaccessible
    /// (`size` when none are; unused in the default build).
    pub guard: usize,
}

impl CachedRegion {
    /// Whether its pages past the first are decommitted.
    fn is_clean(&self, page: usize) -> bool {
        self.dirty <= page
    }
}

/// The heap's cache of freed large regions, oldest first.
pub(crate) struct LargeCache {
    pub regions: [CachedRegion; LARGE_CACHE_MAX],
    pub len: usize,
}

impl LargeCache {
    /// No region.
    pub const EMPTY: LargeCache = LargeCache {
        regions: [CachedRegion {
            base: ptr::null_mut(),
            size: 0,
            dirty: 0,
            guard: 0,
        }; LARGE_CACHE_MAX],
        len: 0,
    };
}

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
    /// Committed bytes past twice the request that the block kept when it
    /// took a cached region, counted in `Counters::large_kept` until it is
    /// freed. (Kept away from the words just below the user pointer,
    /// which an underflow overwrites first.)
    pub kept: usize,
    /// Bytes requested (the last resize included).
    pub size: usize,
    /// Heap's large-block list.
    pub next: *mut LargeBlock,
    /// Heap's large-block list.
    pub prev: *mut LargeBlock,
    /// Bytes from `base` whose pages may be committed: the largest extent
    /// handed out since the region's pages were last decommitted (an
    /// estimate: a block written past its request, up to its usable size,
    /// may have touched more; every decommit covers the whole region).
    pub dirty: usize,
}

/// Bytes from a large block's header to its user pointer, before alignment:
/// the header, and in the `hardened` build the canary word below the user
/// pointer.
const HEADER_ROOM: usize = size_of::<LargeBlock>() + if cfg!(feature = "hardened") { 8 } else { 0 };

impl LargeBlock {
    /// Bytes usable from the user pointer to the end of the region.
    ///
    /// # Safety
    /// `h` is a live header.
    #[cfg_attr(feature = "hardened", allow(dead_code))]
    pub unsafe fn usable(h: *mut LargeBlock) -> usize {
        // SAFETY: per the caller.
        unsafe { (*h).base as usize + (*h).map_size - (*h).user }
    }

    /// Offset from the region's base of the first whole page of user data
    /// past the header (what [`decommit_body`](Self::decommit_body) gives
    /// back from).
    ///
    /// # Safety
    /// `h` is a live header.
    unsafe fn body_from(h: *mut LargeBlock, page: usize) -> usize {
        // SAFETY: per the caller.
        unsafe {
            let header_end = h as usize + size_of::<LargeBlock>();
            header_end.max((*h).user).next_multiple_of(page) - (*h).base as usize
        }
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
            let from = (*h).base as usize + Self::body_from(h, page);
            let end = (*h).base as usize + (*h).map_size;
            if from < end {
                let p = (*h).base.with_addr(from);
                source.decommit(NonNull::new_unchecked(p), end - from);
            }
        }
    }
}

impl<P: PageSource> Heap<P> {
    /// Maps a region for a large block: `want` bytes, else `total`; when
    /// the source has neither, retires the empty current slabs (whose
    /// SuperSlabs the frees that emptied them would have released, per the
    /// retain policy, but for the pin; `account.rs`) and tries `total` once
    /// more. Returns the base and the size mapped.
    fn map_large(&mut self, want: usize, total: usize, align: usize) -> Option<(*mut u8, usize)> {
        if let Some(base) = self.source.map(want, align) {
            return Some((base.as_ptr(), want));
        }
        if let Some(base) = self.source.map(total, align) {
            return Some((base.as_ptr(), total));
        }
        if !self.has_empty_current() {
            return None;
        }
        self.retire_current();
        let base = self.source.map(total, align)?;
        Some((base.as_ptr(), total))
    }

    /// Maps a large block. `align` is a power of two, at least 16.
    #[cold]
    pub(crate) fn alloc_large(&mut self, size: usize, align: usize, zero: bool) -> *mut u8 {
        let ss = self.geo.superslab_size();
        let page = self.source.page_size();
        let (map_align, user_off, header_off) = if align < ss {
            (ss, HEADER_ROOM.next_multiple_of(align.max(MIN_ALIGN)), 0)
        } else {
            (align, align, align - ss)
        };
        // Hardened: room for the canary bytes past the request.
        #[cfg(feature = "hardened")]
        let Some(room) = size.checked_add(crate::hardened::LARGE_TAIL) else {
            return ptr::null_mut();
        };
        #[cfg(not(feature = "hardened"))]
        let room = size;
        let Some(total) = user_off
            .checked_add(room)
            .and_then(|t| t.checked_next_multiple_of(page))
        else {
            return ptr::null_mut();
        };
        // Hardened: a guard page past the block, where the source can.
        #[cfg(feature = "hardened")]
        let Some(total) = total.checked_add(crate::hardened::guard_bytes::<P>(page)) else {
            return ptr::null_mut();
        };
        // No object exceeds isize::MAX bytes, nor does the span a source
        // needs to place one at its alignment: such requests are refused
        // here, before any mapping attempt (which on failure would retire
        // the empty current slabs, changing the heap for nothing).
        if total
            .checked_add(map_align)
            .is_none_or(|span| span > isize::MAX as usize)
        {
            return ptr::null_mut();
        }
        let need = total;
        let (base, total, dirty, guard, kept) =
            match self.take_cached_region(need, map_align.max(page)) {
                Some((r, kept)) => (r.base, r.size, r.dirty, r.guard, kept),
                None => {
                    let want = if self.cfg.large_cache != 0 {
                        region_step(need).next_multiple_of(page).max(need)
                    } else {
                        need
                    };
                    match self.map_large(want, need, map_align.max(page)) {
                        Some((base, size)) => {
                            self.advise_huge_large(base, size, need);
                            (base, size, 0, size, 0)
                        }
                        None => return ptr::null_mut(),
                    }
                }
            };
        // Fresh pages only where nothing was handed out since the last
        // decommit (or the map).
        let fresh = dirty == 0;
        // SAFETY: `[base, base + total)` is the region just had, nothing
        // uses it, inaccessible from `guard`; `need <= total`.
        #[cfg(feature = "hardened")]
        let placed = unsafe {
            crate::hardened::guard_large(
                &self.source,
                base,
                crate::hardened::GuardPlan {
                    need,
                    guard,
                    user_off,
                    room,
                    align,
                    movable: header_off == 0,
                },
            )
        };
        #[cfg(feature = "hardened")]
        let Some(user_off) = placed
        else {
            // Its closed pages could not be opened: give the region back
            // and try the next one (each try takes one cached region, and a
            // fresh one opens nothing).
            // SAFETY: the region is ours and unused.
            unsafe { self.source.unmap(NonNull::new_unchecked(base), total) };
            return self.alloc_large(size, align, zero);
        };
        #[cfg(not(feature = "hardened"))]
        let _ = guard;
        let extent = (user_off + room).next_multiple_of(page);
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
                dirty: dirty.max(extent),
                kept,
            });
            if header_off != 0 {
                // Tell the hardened lookup where the header is.
                let fwd = base.cast::<usize>();
                fwd.write(LARGE_FORWARD_MAGIC ^ base as usize);
                fwd.add(1).write(h as usize);
            }
            #[cfg(feature = "hardened")]
            crate::hardened::arm_large(h, size);
            if !self.large.is_null() {
                (*self.large).prev = h;
            }
            self.large = h;
            if zero && !(fresh && P::MAPS_ZEROED) {
                ptr::write_bytes(user, 0, size);
            }
            self.n.large_count += 1;
            self.n.large_bytes += size;
            self.n.large_mapped += total;
            self.n.large_kept += kept;
            user
        }
    }

    /// Asks for huge pages over a fresh large region of `size` bytes for a
    /// request of `need` bytes, at least [`LARGE_HUGE_MIN`], where the
    /// source has them: a block that big is filled with a fault per huge
    /// page instead of one per page, and at most the huge page its end lies
    /// in is committed past it.
    fn advise_huge_large(&self, base: *mut u8, size: usize, need: usize) {
        if P::HUGE_PAGE != 0 && need >= LARGE_HUGE_MIN.max(4 * P::HUGE_PAGE) {
            // SAFETY: the fresh region is ours and whole pages.
            unsafe { self.source.advise_huge(NonNull::new_unchecked(base), size) };
        }
    }

    /// Unlinks an owned large block and keeps its region for reuse (or
    /// unmaps it).
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
            self.n.large_kept -= (*h).kept;
            let page = self.source.page_size();
            // A remotely freed block's body was decommitted already.
            let dirty = if (*h).state.load(Ordering::Relaxed) == LARGE_FREED && P::CAN_DECOMMIT {
                LargeBlock::body_from(h, page)
            } else {
                (*h).dirty
            };
            let region = CachedRegion {
                base: (*h).base,
                size: (*h).map_size,
                dirty: dirty.next_multiple_of(page).min((*h).map_size),
                // Hardened: the body made inaccessible (the guard stays).
                #[cfg(feature = "hardened")]
                guard: crate::hardened::guard_freed(&self.source, h),
                #[cfg(not(feature = "hardened"))]
                guard: (*h).map_size,
            };
            (*h).magic = 0;
            #[cfg(feature = "hardened")]
            crate::hardened::poison_first_page(region.base, region.size, page);
            self.cache_region(region);
        }
    }

    /// Puts a freed large block's region in the cache (the oldest entry goes
    /// back to the page source when the cache is full), or unmaps it when
    /// the cache is off.
    ///
    /// # Safety
    /// `r` is a region of this heap's source that nothing uses, with its
    /// first page accessible.
    unsafe fn cache_region(&mut self, r: CachedRegion) {
        let keep = self.cfg.large_cache.min(LARGE_CACHE_MAX);
        let CachedRegion { base, size, .. } = r;
        if keep == 0 {
            // SAFETY: per the caller.
            unsafe { self.source.unmap(NonNull::new_unchecked(base), size) };
            return;
        }
        if self.large_cache.len == keep {
            self.uncache_region(0);
        }
        // Ensure the header word reads as "no block" (the caller cleared the
        // magic; the forward of a super-aligned block sits at `base` too).
        // SAFETY: `base` starts the region (per the caller).
        unsafe { base.cast::<usize>().write(0) };
        let i = self.large_cache.len;
        self.large_cache.regions[i] = r;
        self.large_cache.len += 1;
        self.n.large_cached += size;
        // Keep at most LARGE_CACHE_COMMITTED bytes of cached regions
        // committed: the oldest give their pages back first (the newest is
        // the likeliest to be reused), but keep their address range.
        let page = self.source.page_size();
        let mut committed: usize = self.large_cache.regions[..self.large_cache.len]
            .iter()
            .filter(|r| !r.is_clean(page))
            .map(|r| r.dirty)
            .sum();
        let mut j = 0;
        while committed > LARGE_CACHE_COMMITTED && j < self.large_cache.len {
            let r = self.large_cache.regions[j];
            if !r.is_clean(page) && P::CAN_DECOMMIT {
                self.decommit_cached_region(j);
                committed -= r.dirty;
            }
            j += 1;
        }
    }

    /// Decommits cache entry `i` past its first page. Returns the bytes.
    fn decommit_cached_region(&mut self, i: usize) -> usize {
        let page = self.source.page_size();
        let r = &mut self.large_cache.regions[i];
        if r.is_clean(page) || !P::CAN_DECOMMIT {
            return 0;
        }
        // The whole region past the first page, not only `dirty` (an
        // estimate); pages never touched cost the source little.
        // SAFETY: a cached region is mapped and unused, and `dirty > page`
        // means it holds more than a page.
        unsafe {
            self.source
                .decommit(NonNull::new_unchecked(r.base.add(page)), r.size - page)
        };
        let bytes = r.dirty - page;
        r.dirty = page;
        bytes
    }

    /// Unmaps cache entry `i`, keeping the others in their order.
    fn uncache_region(&mut self, i: usize) {
        let r = self.large_cache.regions[i];
        self.large_cache
            .regions
            .copy_within(i + 1..self.large_cache.len, i);
        self.large_cache.len -= 1;
        self.n.large_cached -= r.size;
        // SAFETY: a cached region is a mapped region nothing uses.
        unsafe { self.source.unmap(NonNull::new_unchecked(r.base), r.size) };
    }

    /// A cached region of at least `total` bytes aligned to `align` for a
    /// new block: the one with the fewest pages to fault in (committed
    /// pages are reused), then the smallest, then the newest; a clean one
    /// at most twice `total`. Its committed pages past twice `total` stay
    /// while the heap's live blocks keep fewer than
    /// [`LARGE_CACHE_COMMITTED`] such bytes, and are decommitted past that
    /// first; pages are recommitted where they were decommitted. Its
    /// `dirty` says how far it may be committed (at least its first page,
    /// written as a header: it never reads as fresh). Also returns the
    /// bytes kept past twice `total`, for the block's `kept`.
    fn take_cached_region(&mut self, total: usize, align: usize) -> Option<(CachedRegion, usize)> {
        let n = self.large_cache.len;
        let page = self.source.page_size();
        let i = (0..n)
            .filter(|&i| {
                let r = &self.large_cache.regions[i];
                r.size >= total
                    && (r.size / 2 <= total || !r.is_clean(page))
                    && r.base as usize % align == 0
            })
            .min_by_key(|&i| {
                let r = &self.large_cache.regions[i];
                (total.saturating_sub(r.dirty), r.size, usize::MAX - i)
            })?;
        let mut r = self.large_cache.regions[i];
        // Hardened: a write after free in the page that stayed accessible.
        // SAFETY: a cached region, poisoned when it was cached.
        #[cfg(feature = "hardened")]
        unsafe {
            crate::hardened::check_first_page(r.base, r.size, page)
        };
        // (Whole pages: `dirty` is page-rounded when a region is cached,
        // and so are the bound and every block's `kept`.)
        let twice = total.saturating_mul(2).next_multiple_of(page);
        let room = LARGE_CACHE_COMMITTED.saturating_sub(self.n.large_kept) / page * page;
        let keep = twice.saturating_add(room);
        if r.dirty > keep && P::CAN_DECOMMIT {
            // SAFETY: a cached region is mapped and unused; `keep` is a
            // page boundary inside it.
            unsafe {
                self.source
                    .decommit(NonNull::new_unchecked(r.base.add(keep)), r.size - keep)
            };
            r.dirty = keep;
        }
        let from = r.dirty.max(page);
        if from < r.size {
            // SAFETY: the pages past `dirty` were decommitted by us or never
            // touched; recommitting either is allowed.
            if !unsafe {
                self.source
                    .recommit(NonNull::new_unchecked(r.base.add(from)), r.size - from)
            } {
                return None;
            }
        }
        self.large_cache.regions.copy_within(i + 1..n, i);
        self.large_cache.len -= 1;
        self.n.large_cached -= r.size;
        r.dirty = r.dirty.max(page);
        // (A source that cannot decommit keeps every page committed
        // anyway: nothing is kept on the bound's account.)
        let kept = if P::CAN_DECOMMIT {
            r.dirty.saturating_sub(twice)
        } else {
            0
        };
        Some((r, kept))
    }

    /// Decommits the cached regions' pages (past each first page). Returns
    /// the bytes decommitted.
    pub(crate) fn decommit_cached_regions(&mut self) -> usize {
        if !P::CAN_DECOMMIT {
            return 0;
        }
        (0..self.large_cache.len)
            .map(|i| self.decommit_cached_region(i))
            .sum()
    }

    /// Whether a cached region still has committed pages.
    pub(crate) fn has_dirty_cached_region(&self) -> bool {
        let page = self.source.page_size();
        self.large_cache.regions[..self.large_cache.len]
            .iter()
            .any(|r| !r.is_clean(page))
    }

    /// Unmaps every cached region. Returns how many.
    pub(crate) fn release_cached_regions(&mut self) -> usize {
        let n = self.large_cache.len;
        while self.large_cache.len > 0 {
            self.uncache_region(self.large_cache.len - 1);
        }
        n
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

    /// Grows an owned large block to `new_size` by moving or extending its
    /// pages in the page source (`PageSource::remap`), never by copying:
    /// a buffer grown step by step costs page-table updates, not copies.
    /// Returns the block's new address, or `None` (nothing changed) when the
    /// source cannot remap, another heap owns the block, or its header is
    /// not at its region's start (alignments over a SuperSlab), or a moved
    /// region could not keep the block at `align`.
    ///
    /// # Safety
    /// `h` is the live header of a block nobody else uses during the call;
    /// `align` is a power of two the block's address already has.
    pub(crate) unsafe fn grow_large(
        &mut self,
        h: *mut LargeBlock,
        new_size: usize,
        align: usize,
    ) -> Option<*mut u8> {
        if !P::CAN_REMAP {
            return None;
        }
        let page = self.source.page_size();
        // SAFETY: per the caller; the header moves with the region's first
        // page, and its list neighbours are live headers of this heap.
        unsafe {
            if (*h).owner.load(Ordering::Relaxed) != self.id || (*h).base != h.cast::<u8>() {
                return None;
            }
            let user_off = (*h).user - (*h).base as usize;
            // A moved region starts at a multiple of `region_align`, so the
            // block keeps `align` only if its offset does: a block that is
            // aligned further than its mapping asked (by chance) moves by
            // copy instead.
            let region_align = self.geo.superslab_size().max(align);
            if user_off % align != 0 {
                return None;
            }
            #[cfg(feature = "hardened")]
            let want = user_off.checked_add(new_size.checked_add(crate::hardened::LARGE_TAIL)?)?;
            #[cfg(not(feature = "hardened"))]
            let want = user_off.checked_add(new_size)?;
            // Power-of-two steps where untouched pages cost address space
            // only (the cache is on: hosted), exact pages elsewhere.
            let step = if self.cfg.large_cache != 0 {
                region_step(want)
            } else {
                want
            };
            let total = step.checked_next_multiple_of(page)?;
            #[cfg(feature = "hardened")]
            let total = total.checked_add(crate::hardened::guard_bytes::<P>(page))?;
            if total > isize::MAX as usize {
                return None;
            }
            let old_size = (*h).map_size;
            // Hardened: `realloc` compares with the request, so growth may
            // still fit the mapping; then it stays where it is.
            #[cfg(feature = "hardened")]
            if total <= old_size {
                // The guard moves to the block's new end.
                if !crate::hardened::move_guard(&self.source, h, new_size) {
                    return None;
                }
                self.n.large_bytes = self.n.large_bytes - (*h).size + new_size;
                (*h).size = new_size;
                (*h).dirty = (*h).dirty.max(user_off + new_size);
                crate::hardened::arm_large(h, new_size);
                return Some((*h).base.with_addr((*h).user));
            }
            // Hardened: the region's inaccessible tail (guard page and
            // beyond) is opened for the move (`mremap` moves one mapping),
            // then closed again past the block's new end.
            #[cfg(feature = "hardened")]
            let guard = crate::hardened::guard_from(h, page);
            #[cfg(feature = "hardened")]
            crate::hardened::set_access(&self.source, (*h).base, guard, old_size, true);
            let base = self.source.remap(
                NonNull::new_unchecked((*h).base),
                old_size,
                total,
                region_align,
            );
            // (A failed close leaves pages open: less caught, nothing lost.)
            #[cfg(feature = "hardened")]
            let _ = match base {
                Some(b) => {
                    let from =
                        (user_off + new_size + crate::hardened::LARGE_TAIL).next_multiple_of(page);
                    crate::hardened::set_access(&self.source, b.as_ptr(), from, total, false)
                }
                None => {
                    crate::hardened::set_access(&self.source, (*h).base, guard, old_size, false)
                }
            };
            let base = base?;
            let nh = base.as_ptr().cast::<LargeBlock>();
            (*nh).magic = LARGE_MAGIC ^ nh as usize;
            (*nh).base = base.as_ptr();
            (*nh).map_size = total;
            (*nh).user = base.as_ptr() as usize + user_off;
            let (prev, next) = ((*nh).prev, (*nh).next);
            if prev.is_null() {
                self.large = nh;
            } else {
                (*prev).next = nh;
            }
            if !next.is_null() {
                (*next).prev = nh;
            }
            self.n.large_mapped = self.n.large_mapped - old_size + total;
            self.n.large_bytes = self.n.large_bytes - (*nh).size + new_size;
            (*nh).size = new_size;
            (*nh).dirty = (*nh).dirty.max(user_off + new_size).min(total);
            #[cfg(feature = "hardened")]
            crate::hardened::arm_large(nh, new_size);
            Some(base.as_ptr().add(user_off))
        }
    }

    /// Shrinks an owned large block in place to `new_size`, giving the pages
    /// past it back to the page source where it can (`PageSource::shrink`).
    /// Returns false (nothing changed) when another heap owns the block, its
    /// header is not at its region's start, or the source cannot shrink.
    ///
    /// # Safety
    /// `h` is the live header of a block nobody else uses during the call;
    /// `new_size` is at most its usable size.
    pub(crate) unsafe fn shrink_large(&mut self, h: *mut LargeBlock, new_size: usize) -> bool {
        // Hardened: the tail pages hold the guard page; the block stays.
        if cfg!(feature = "hardened") && P::CAN_PROTECT {
            return false;
        }
        let page = self.source.page_size();
        // SAFETY: per the caller.
        unsafe {
            if (*h).owner.load(Ordering::Relaxed) != self.id || (*h).base != h.cast::<u8>() {
                return false;
            }
            let user_off = (*h).user - (*h).base as usize;
            let total = (user_off + new_size.max(1)).next_multiple_of(page);
            let old = (*h).map_size;
            if total < old {
                if !self
                    .source
                    .shrink(NonNull::new_unchecked((*h).base), old, total)
                {
                    return false;
                }
                (*h).map_size = total;
                (*h).dirty = (*h).dirty.min(total);
                self.n.large_mapped = self.n.large_mapped - old + total;
            }
            self.n.large_bytes = self.n.large_bytes - (*h).size + new_size;
            (*h).size = new_size;
        }
        true
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
            // Hardened: the guard follows the block's end.
            #[cfg(feature = "hardened")]
            if !crate::hardened::move_guard(&self.source, h, new_size) {
                return false;
            }
            self.n.large_bytes = self.n.large_bytes - (*h).size + new_size;
            (*h).size = new_size;
            let extent = (*h).user - (*h).base as usize + new_size;
            (*h).dirty = (*h).dirty.max(extent).min((*h).map_size);
        }
        true
    }
}
