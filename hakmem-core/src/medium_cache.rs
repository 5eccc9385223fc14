//! A small cache of freed medium blocks in front of the arenas: per block
//! size in granules (below [`CACHE_BINS`]), up to [`CACHE_DEPTH`] blocks,
//! so a free of a small medium block and the next allocation of its size
//! skip the arena's merge, bins and split.
//!
//! A cached block is *free* for the accounting: its slab's `used` dropped
//! when it entered the cache (so `used` is still exactly the blocks the
//! application holds), while its arena still shows it as a held block
//! (start bit, no free bit; `Arena::held` keeps its granules). It carries
//! the free tag, so freeing it again — locally or from another thread — is
//! a double free. Invariants (checked by `Heap::check`):
//! - each entry is a block of a medium slab of an owned SuperSlab, held in
//!   its arena, of its bin's granules, tagged, listed once;
//! - its slab's `used >= 1`: the free of a slab's last held block flushes
//!   the cache first, so a slab (and its SuperSlab) never empties with
//!   blocks cached;
//! - arena held blocks = `used` + the slab's cached blocks.
//!
//! The cache is flushed (every block freed into its arena) before an
//! allocation would look for a new slab or SuperSlab, when a slab's last
//! held block is freed, and on `trim`.

use core::ptr;

use crate::heap::Heap;
use crate::medium::{arena_of, Arena, MEDIUM_CLASS};
use crate::page_source::PageSource;
use crate::slab::{free_tag, Block, Slab};
use crate::superslab::SuperSlab;

/// Blocks of fewer granules than this are cached (up to 1008 B).
pub(crate) const CACHE_BINS: usize = 64;
/// Blocks per size at most.
const CACHE_DEPTH: u8 = 1;

/// The cache: one list per block size in granules, linked through the
/// blocks' first word (a `Block`: link, then the free tag).
pub(crate) struct MediumCache {
    /// List heads by granules.
    heads: [*mut Block; CACHE_BINS],
    /// Blocks on each list.
    counts: [u8; CACHE_BINS],
    /// Blocks in the cache.
    pub(crate) total: u32,
}

impl MediumCache {
    /// No block cached.
    pub(crate) const EMPTY: MediumCache = MediumCache {
        heads: [ptr::null_mut(); CACHE_BINS],
        counts: [0; CACHE_BINS],
        total: 0,
    };
}

impl<P: PageSource> Heap<P> {
    /// Puts the held block at granule `i` (`g` granules) of medium slab
    /// `slab` in the cache, if it has room and the slab keeps another held
    /// block; counts it freed. False (nothing changed) otherwise.
    ///
    /// # Safety
    /// `slab` is a medium slab of a live owned SuperSlab, `p` its held
    /// block at granule `i` of `g` granules, just checked.
    #[inline]
    pub(crate) unsafe fn cache_medium(&mut self, slab: *mut Slab, p: usize, g: u32) -> bool {
        let c = &mut self.mcache;
        // SAFETY: per the caller: the block is ours to write.
        unsafe {
            if g as usize >= CACHE_BINS || c.counts[g as usize] >= CACHE_DEPTH || (*slab).used < 2 {
                return false;
            }
            let b = p as *mut Block;
            (*b).next = c.heads[g as usize];
            (*b).tag = free_tag(b.cast());
            c.heads[g as usize] = b;
            c.counts[g as usize] += 1;
            c.total += 1;
            // `used >= 2`: the slab stays live.
            self.count_free(slab, 1);
        }
        true
    }

    /// A cached block of exactly `g` granules, taken and counted held, or
    /// null.
    #[inline]
    pub(crate) fn cached_medium(&mut self, g: u32) -> *mut u8 {
        if g as usize >= CACHE_BINS {
            return ptr::null_mut();
        }
        let b = self.mcache.heads[g as usize];
        if b.is_null() {
            return ptr::null_mut();
        }
        // SAFETY: cache entries are held-in-arena blocks of medium slabs of
        // live owned SuperSlabs (the module's invariants).
        unsafe {
            self.mcache.heads[g as usize] = (*b).next;
            self.mcache.counts[g as usize] -= 1;
            self.mcache.total -= 1;
            // A stale tag would read as a double free.
            (*b).tag = 0;
            let ss = self.superslab_of(b.cast());
            let slab = SuperSlab::slab_of(ss, b as usize, self.geo.unit_shift);
            self.count_alloc(slab);
        }
        b.cast()
    }

    /// Frees every cached block into its arena (already counted free).
    pub(crate) fn flush_medium_cache(&mut self) {
        if self.mcache.total == 0 {
            return;
        }
        for g in 0..CACHE_BINS {
            let mut b = self.mcache.heads[g];
            // SAFETY: as `cached_medium`; the blocks are held in their
            // arenas, of `g` granules.
            unsafe {
                while !b.is_null() {
                    let next = (*b).next;
                    (*b).tag = 0;
                    let ss = self.superslab_of(b.cast());
                    let slab = SuperSlab::slab_of(ss, b as usize, self.geo.unit_shift);
                    let a = arena_of(ss, slab);
                    let i = Arena::index_of(a, b as usize).unwrap_or_else(|| unreachable!());
                    self.with_arena(slab, |a| Arena::free(a, i, g as u32));
                    b = next;
                }
            }
            self.mcache.heads[g] = ptr::null_mut();
            self.mcache.counts[g] = 0;
        }
        self.mcache.total = 0;
    }

    /// Cached blocks of medium slab `slab` and their granules (for
    /// `Heap::check` and the statistics).
    pub(crate) fn cached_in(&self, slab: *const Slab) -> (u32, u32) {
        let (mut n, mut granules) = (0, 0);
        if self.mcache.total == 0 {
            return (0, 0);
        }
        for (g, &h) in self.mcache.heads.iter().enumerate() {
            let mut b = h;
            // SAFETY: as `cached_medium`.
            unsafe {
                while !b.is_null() {
                    let ss = self.superslab_of(b.cast());
                    if ptr::eq(
                        SuperSlab::slab_of(ss, b as usize, self.geo.unit_shift),
                        slab,
                    ) {
                        n += 1;
                        granules += g as u32;
                    }
                    b = (*b).next;
                }
            }
        }
        (n, granules)
    }

    /// Whether the cache keeps its invariants (for `Heap::check`): each
    /// entry a tagged held block of its bin's size in a medium slab of a
    /// listed SuperSlab with `used >= 1`; counts exact.
    pub(crate) fn medium_cache_ok(&self) -> Result<(), (&'static str, usize)> {
        let mut total = 0u32;
        for g in 0..CACHE_BINS {
            let mut b = self.mcache.heads[g];
            let mut n = 0u8;
            while !b.is_null() {
                let at = b as usize;
                let ss = self.superslab_of(b.cast());
                let mut s = self.superslabs;
                while !s.is_null() && s != ss {
                    // SAFETY: list members are live owned SuperSlabs.
                    s = unsafe { (*s).next };
                }
                if s.is_null() {
                    return Err(("cached medium block outside the heap", at));
                }
                // SAFETY: `ss` is a live owned SuperSlab holding `b`.
                unsafe {
                    let slab = SuperSlab::slab_of(ss, at, self.geo.unit_shift);
                    if (*slab).class != MEDIUM_CLASS || (*slab).used == 0 {
                        return Err(("cached medium block's slab", at));
                    }
                    let a = arena_of(ss, slab);
                    let Ok(i) = Arena::check_held(a, at) else {
                        return Err(("cached medium block held in its arena", at));
                    };
                    if Arena::block_granules(a, i) as usize != g {
                        return Err(("cached medium block's size", at));
                    }
                    if (*b).tag != free_tag(b.cast()) {
                        return Err(("cached medium block's tag", at));
                    }
                    n += 1;
                    if n > CACHE_DEPTH {
                        return Err(("medium cache depth", at));
                    }
                    b = (*b).next;
                }
            }
            if n != self.mcache.counts[g] {
                return Err(("medium cache count", g));
            }
            total += u32::from(n);
        }
        if total != self.mcache.total {
            return Err(("medium cache total", total as usize));
        }
        Ok(())
    }
}
