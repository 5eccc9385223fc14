//! `FixedRegion`: a [`PageSource`] over memory the caller hands in.
//!
//! Each claimed region `[start, start + len)` is rounded inwards to whole
//! pages, and tracked by three bitmaps: *mapped* (one bit per page, set while
//! the page lies in a live mapped range), *starts* (one bit per page, set on
//! the first page of each live range, so `unmap` can check it gets one whole
//! range and `region_start` can find where a range begins) and *chunks* (one
//! bit per chunk — a SuperSlab-sized, SuperSlab-aligned piece of the region —
//! set while its first page is free). The pages that are not the bitmaps'
//! are the *managed* pages that `map` hands out.
//!
//! The first [`INLINE_REGIONS`] regions of up to [`INLINE_PAGES`] pages
//! (64 chunks at the page size [`page_shift_for`] picks) keep their bitmaps inside the source itself and
//! lose nothing. Any other keeps them in its own memory, where they cost the
//! heap least: in the head before its first chunk boundary (memory no
//! SuperSlab or large block can use), else at the end (the tail after its
//! last whole chunk, where there is one).
//!
//! ```text
//! start  page   chunk boundary        chunk boundary         end
//! |  -  | bitmaps |  ...... managed pages .......  ...... | - |
//!                   large blocks, first-fit ->  <- SuperSlabs, last-fit
//! ```
//!
//! `map(size, align)` looks for `size / page` clear bits starting at an
//! `align`-aligned address. With `align` of a chunk or more (every map the
//! heap makes) only chunks whose first page is free are tried, found 64 to a
//! word in the chunk bitmap. A request of exactly one chunk at chunk
//! alignment (a SuperSlab) is placed last-fit, from the top of a region
//! down; every other request (large blocks) first-fit, from the bottom up.
//! So SuperSlabs gather at one end and large blocks at the other, and a
//! SuperSlab that stays (retained, or holding a few blocks) does not split
//! the room a large block needs. A request aligned below a chunk scans the
//! page bitmap from a hint below which no page is free, skipping whole runs
//! of set bits. `unmap` clears the bits, so a range can serve any later
//! request that fits it, a SuperSlab or a large block spanning several
//! former SuperSlabs. `contains(addr)` reads one bit. `remap` grows a range
//! in place when the pages after it are free (never elsewhere: pages cannot
//! move without a copy) and `shrink` gives a range's tail pages back, so a
//! large block's `realloc` stays in place whenever its neighbours allow.
//!
//! Every pointer handed out is derived from the claimed `start` pointer with
//! `add` (strict provenance: no integer-to-pointer cast anywhere), and no
//! byte outside a claimed range is ever written: the only writes are the
//! initialisation of bitmaps, which lie inside the region's whole pages.
//!
//! Invariants:
//! - a page's mapped bit is set iff it lies in a range returned by `map` and
//!   not yet passed to `unmap`, and its start bit iff it is the first page
//!   of such a range; `free` of a region is its number of clear mapped bits;
//! - no page below `low` is free, and none at or above `high`;
//! - chunk bit `c` is set iff page `c0 + c * pages_per_chunk` is free;
//! - claimed ranges are pairwise disjoint, and each region's bitmaps lie
//!   inside the source or inside its claimed range, outside its managed
//!   pages.

use core::cell::RefCell;
use core::mem::size_of;
use core::ptr::{self, NonNull};

use hakmem_core::PageSource;

use crate::error::BareError;

/// Most regions one [`FixedRegion`] manages (the first plus claimed ones).
pub const MAX_REGIONS: usize = 8;

/// Pages of a region whose bitmaps can live inside the [`FixedRegion`] (128
/// bytes each, for the first [`INLINE_REGIONS`] such regions claimed), so
/// that a small board's heap gives up none of its memory.
pub const INLINE_PAGES: usize = 512;

/// How many small regions keep their bitmaps inside the [`FixedRegion`].
pub const INLINE_REGIONS: usize = 2;

/// log2 of the smallest page size [`BareHeap`](crate::BareHeap) uses: 256 B,
/// so that a small board loses little to rounding and the bitmap stays tiny
/// (one bit per 256 B: 32 bytes for 64 KiB).
pub const DEFAULT_PAGE_SHIFT: u32 = 8;

/// log2 of the pages per chunk [`page_shift_for`] picks: 8, so that a region
/// of up to 64 chunks (the size [`Config::for_heap`](hakmem_core::Config::for_heap)
/// picks its SuperSlabs for) has at most [`INLINE_PAGES`] pages.
pub const CHUNK_PAGES_SHIFT: u32 = 3;

/// log2 of the page size the heaps of this crate use over chunks of
/// `2^chunk_shift` bytes (their SuperSlab size): an eighth of a chunk, at
/// least [`DEFAULT_PAGE_SHIFT`].
///
/// Every range a heap maps starts on a chunk boundary (a SuperSlab, or a
/// large block, whose header the free path finds by masking), so the pages
/// between a range's end and the next chunk boundary serve nothing but that
/// range's own growth: pages finer than an eighth of a chunk would buy no
/// room. Coarse pages keep the bitmaps of a region of up to 64 chunks inside
/// the source, where in the region they would take a whole chunk (1/64 of a
/// [`Config::for_heap`](hakmem_core::Config::for_heap) heap: measured in
/// docs/performance.md, session 17, bare heap efficiency).
pub const fn page_shift_for(chunk_shift: u32) -> u32 {
    if chunk_shift >= DEFAULT_PAGE_SHIFT + CHUNK_PAGES_SHIFT {
        chunk_shift - CHUNK_PAGES_SHIFT
    } else {
        DEFAULT_PAGE_SHIFT
    }
}

const BITS: usize = usize::BITS as usize;
const WORD: usize = size_of::<usize>();
const INLINE_WORDS: usize = INLINE_PAGES / BITS;
/// Words of one region's inline bitmaps: mapped, starts, chunks (at most one
/// chunk per page, plus a partial one).
const INLINE_SLOT: usize = 3 * INLINE_WORDS + 1;

/// Figures of a [`FixedRegion`], exact.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RegionStats {
    /// Regions claimed.
    pub regions: usize,
    /// Bytes of the regions that `map` may hand out (after rounding to pages
    /// and setting the bitmaps aside).
    pub managed_bytes: usize,
    /// Bytes in live mapped ranges now.
    pub mapped_bytes: usize,
    /// The most bytes ever mapped at once.
    pub peak_mapped_bytes: usize,
    /// Calls to `map`, successful or not.
    pub map_calls: u64,
    /// Calls to `map` that found no room.
    pub failed_maps: u64,
}

/// One claimed region.
#[derive(Clone, Copy)]
struct Region {
    /// First managed page; carries the provenance of the claimed pointer.
    base: *mut u8,
    /// Managed pages.
    pages: usize,
    /// The two bitmaps (mapped, then starts) in the claimed range, outside
    /// the managed pages; null when they are the source's inline ones.
    bitmap: *mut usize,
    /// Which inline bitmaps, when `bitmap` is null.
    slot: usize,
    /// Words of the mapped and of the starts bitmap.
    words: usize,
    /// Words of the chunk bitmap.
    cwords: usize,
    /// Index of the first page on a chunk boundary (`>= pages`: none).
    c0: usize,
    /// Chunk boundaries among the managed pages.
    chunks: usize,
    /// Clear bits.
    free: usize,
    /// No free page has an index below this.
    low: usize,
    /// No free page has an index at or above this.
    high: usize,
    /// The claimed range, as given, for overlap checks.
    claim_start: usize,
    claim_end: usize,
}

impl Region {
    const EMPTY: Region = Region {
        base: ptr::null_mut(),
        pages: 0,
        bitmap: ptr::null_mut(),
        slot: 0,
        words: 0,
        cwords: 0,
        c0: 0,
        chunks: 0,
        free: 0,
        low: 0,
        high: 0,
        claim_start: 0,
        claim_end: 0,
    };
}

#[inline]
fn bit(bits: &[usize], i: usize) -> bool {
    bits[i / BITS] & (1 << (i % BITS)) != 0
}

/// Where `claim` puts things, as offsets from the claimed start.
struct Plan {
    /// `None`: inline.
    bitmap_off: Option<usize>,
    words: usize,
    cwords: usize,
    managed_off: usize,
    pages: usize,
}

struct Inner {
    regions: [Region; MAX_REGIONS],
    count: usize,
    /// The bitmaps of the regions whose `bitmap` is null.
    inline: [[usize; INLINE_SLOT]; INLINE_REGIONS],
    /// Inline bitmaps in use.
    inline_used: usize,
    mapped: usize,
    peak: usize,
    map_calls: u64,
    failed_maps: u64,
}

/// A region's bitmaps.
struct Maps<'a> {
    /// One bit per page: mapped.
    bits: &'a mut [usize],
    /// One bit per page: first page of a live range.
    starts: &'a mut [usize],
    /// One bit per chunk: its first page is free.
    chunks: &'a mut [usize],
}

impl Inner {
    /// Region `k` and its bitmaps: mapped, starts, chunks.
    fn parts(&mut self, k: usize) -> (&mut Region, Maps<'_>) {
        let r = &mut self.regions[k];
        let (w, n) = (r.words, 2 * r.words + r.cwords);
        let all = if r.bitmap.is_null() {
            &mut self.inline[r.slot][..n]
        } else {
            // SAFETY: `bitmap` points to `n` initialised words inside the
            // claimed range, which the caller of `claim` gave to this source
            // alone; the `&mut self` borrow makes this the only reference.
            unsafe { core::slice::from_raw_parts_mut(r.bitmap, n) }
        };
        let (bits, rest) = all.split_at_mut(w);
        let (starts, chunks) = rest.split_at_mut(w);
        (
            r,
            Maps {
                bits,
                starts,
                chunks,
            },
        )
    }

    /// Region `k` and its mapped and starts bitmaps, to read.
    fn parts_ref(&self, k: usize) -> (&Region, &[usize], &[usize]) {
        let r = &self.regions[k];
        let w = r.words;
        let all = if r.bitmap.is_null() {
            &self.inline[r.slot][..2 * w]
        } else {
            // SAFETY: as in `parts`; the `&self` borrow excludes writers.
            unsafe { core::slice::from_raw_parts(r.bitmap, 2 * w) }
        };
        let (bits, starts) = all.split_at(w);
        (r, bits, starts)
    }
}

/// A [`PageSource`] over caller-given memory regions (up to
/// [`MAX_REGIONS`], not necessarily contiguous), carved into power-of-two
/// aligned ranges; unmapped ranges are reused.
///
/// Methods take `&self` (a `RefCell` inside): the heap that owns the source
/// is behind a lock or owned by one core, so the source is `Send` but not
/// `Sync`. Fresh ranges are not zeroed ([`MAPS_ZEROED`](PageSource::MAPS_ZEROED)
/// is false) and nothing is decommitted.
pub struct FixedRegion {
    page_shift: u32,
    chunk_shift: u32,
    min_claim: usize,
    inner: RefCell<Inner>,
}

// SAFETY: the raw pointers inside refer only to memory that the callers of
// `claim` handed to this source alone; moving the source to another core or
// thread moves that exclusive ownership with it. (`RefCell` keeps it !Sync.)
unsafe impl Send for FixedRegion {}

#[inline]
const fn align_up(x: usize, align: usize) -> Option<usize> {
    match x.checked_add(align - 1) {
        Some(y) => Some(y & !(align - 1)),
        None => None,
    }
}

/// Bits `b .. b + n` of a word (`n >= 1`, `b + n <= BITS`).
#[inline]
fn mask(b: usize, n: usize) -> usize {
    if n == BITS {
        !0
    } else {
        ((1usize << n) - 1) << b
    }
}

/// The first index in `lo..hi` whose bit equals `set`.
fn first_with(bits: &[usize], lo: usize, hi: usize, set: bool) -> Option<usize> {
    let mut i = lo;
    while i < hi {
        let w = i / BITS;
        let b = i % BITS;
        let end = hi.min((w + 1) * BITS);
        let word = if set { bits[w] } else { !bits[w] };
        let x = word & mask(b, end - i);
        if x != 0 {
            return Some(w * BITS + x.trailing_zeros() as usize);
        }
        i = end;
    }
    None
}

/// The last index in `lo..hi` whose bit equals `set`.
fn last_with(bits: &[usize], lo: usize, hi: usize, set: bool) -> Option<usize> {
    let mut i = hi;
    while i > lo {
        let w = (i - 1) / BITS;
        let start = lo.max(w * BITS);
        let word = if set { bits[w] } else { !bits[w] };
        let x = word & mask(start % BITS, i - start);
        if x != 0 {
            return Some(w * BITS + (BITS - 1 - x.leading_zeros() as usize));
        }
        i = start;
    }
    None
}

/// Sets or clears the bits `lo..hi`.
fn fill(bits: &mut [usize], lo: usize, hi: usize, set: bool) {
    let mut i = lo;
    while i < hi {
        let w = i / BITS;
        let b = i % BITS;
        let end = hi.min((w + 1) * BITS);
        let m = mask(b, end - i);
        if set {
            bits[w] |= m;
        } else {
            bits[w] &= !m;
        }
        i = end;
    }
}

impl FixedRegion {
    /// A source with no memory yet, pages of `2^page_shift` bytes, and
    /// `2^chunk_shift` the alignment of the ranges it will mostly be asked
    /// for (the heap's SuperSlab size): bitmaps kept in a region go where
    /// they break no such chunk if they can, and a region must offer at
    /// least one page at a chunk-aligned address to be accepted.
    ///
    /// # Panics
    /// Unless `4 <= page_shift <= chunk_shift < usize::BITS`.
    pub const fn new(page_shift: u32, chunk_shift: u32) -> FixedRegion {
        assert!(page_shift >= 4 && page_shift <= chunk_shift && chunk_shift < usize::BITS);
        FixedRegion {
            page_shift,
            chunk_shift,
            min_claim: 1 << page_shift,
            inner: RefCell::new(Inner {
                regions: [Region::EMPTY; MAX_REGIONS],
                count: 0,
                inline: [[0; INLINE_SLOT]; INLINE_REGIONS],
                inline_used: 0,
                mapped: 0,
                peak: 0,
                map_calls: 0,
                failed_maps: 0,
            }),
        }
    }

    /// The same source, refusing regions that offer fewer than `bytes`
    /// (rounded up to a page) from a chunk-aligned address: a heap sets this
    /// to the smallest mapping it ever asks for.
    pub const fn with_min_claim(mut self, bytes: usize) -> FixedRegion {
        let page = 1usize << self.page_shift;
        self.min_claim = if bytes < page {
            page
        } else {
            (bytes + page - 1) & !(page - 1)
        };
        self
    }

    /// The chunk size given to [`new`](Self::new).
    pub const fn chunk_size(&self) -> usize {
        1 << self.chunk_shift
    }

    /// Hands the region `[start, start + len)` to this source. Returns the
    /// bytes it made available to `map`.
    ///
    /// The region is rounded inwards to whole pages; its bitmaps go inside
    /// the source or inside the region (see the module documentation).
    /// Refused, with nothing written: a zero
    /// length, a null start, a range that wraps the address space, a range
    /// overlapping one claimed before, a range too small to offer
    /// the minimum (see [`with_min_claim`](Self::with_min_claim)) at a
    /// chunk-aligned address, and a claim beyond [`MAX_REGIONS`].
    ///
    /// # Safety
    /// Unless an error is returned, `[start, start + len)` must be valid for
    /// reads and writes and used by nothing but this source for as long as
    /// the source (and any heap over it) lives.
    pub unsafe fn claim(&self, start: *mut u8, len: usize) -> Result<usize, BareError> {
        let mut g = self.inner.borrow_mut();
        let plan = self.plan(start.addr(), len, g.inline_used < INLINE_REGIONS)?;
        let end = start.addr() + len; // checked by `plan`
        let inner = &mut *g;
        if inner.regions[..inner.count]
            .iter()
            .any(|r| start.addr() < r.claim_end && r.claim_start < end)
        {
            return Err(BareError::Overlap);
        }
        if inner.count == MAX_REGIONS {
            return Err(BareError::TooManyRegions);
        }
        // SAFETY: the offset lies inside `[start, start + len)` (see `plan`),
        // which the caller vouches for.
        let base = unsafe { start.add(plan.managed_off) };
        let chunk = self.chunk_size();
        let ppc = 1usize << (self.chunk_shift - self.page_shift);
        // `plan` checked that a chunk boundary lies among the managed pages.
        let c0 = (base.addr().next_multiple_of(chunk) - base.addr()) >> self.page_shift;
        let chunks = (plan.pages - c0).div_ceil(ppc);
        debug_assert!(chunks.div_ceil(BITS) <= plan.cwords);
        let slot = inner.inline_used;
        let bitmap = match plan.bitmap_off {
            None => {
                inner.inline_used += 1;
                inner.inline[slot][..2 * plan.words + plan.cwords].fill(0);
                ptr::null_mut()
            }
            Some(off) => {
                // SAFETY: the bitmaps' `2 * words + cwords` words lie inside
                // the region, outside the managed pages, word-aligned
                // (page-aligned).
                unsafe {
                    let b = start.add(off).cast::<usize>();
                    ptr::write_bytes(b, 0, 2 * plan.words + plan.cwords);
                    b
                }
            }
        };
        inner.regions[inner.count] = Region {
            base,
            pages: plan.pages,
            bitmap,
            slot,
            words: plan.words,
            cwords: plan.cwords,
            c0,
            chunks,
            free: plan.pages,
            low: 0,
            high: plan.pages,
            claim_start: start.addr(),
            claim_end: end,
        };
        // Every chunk starts free.
        let (_, maps) = inner.parts(inner.count);
        fill(maps.chunks, 0, chunks, true);
        inner.count += 1;
        Ok(plan.pages << self.page_shift)
    }

    /// Decides where a claimed region's bitmap and managed pages go; writes
    /// nothing.
    fn plan(&self, start: usize, len: usize, inline_free: bool) -> Result<Plan, BareError> {
        if len == 0 {
            return Err(BareError::ZeroLength);
        }
        if start == 0 {
            return Err(BareError::Null);
        }
        let end = start.checked_add(len).ok_or(BareError::Overflow)?;
        let page = 1usize << self.page_shift;
        let chunk = 1usize << self.chunk_shift;
        let s = align_up(start, page).ok_or(BareError::TooSmall)?;
        let e = end & !(page - 1);
        if s >= e {
            return Err(BareError::TooSmall);
        }
        let total = (e - s) >> self.page_shift;
        let words = total.div_ceil(BITS);
        let cwords = ((total >> (self.chunk_shift - self.page_shift)) + 1).div_ceil(BITS);
        let (bitmap, ms, me) = if inline_free && 2 * words + cwords <= INLINE_SLOT {
            (None, s, e)
        } else {
            let meta = align_up((2 * words + cwords) * WORD, page).ok_or(BareError::TooSmall)?;
            if meta >= e - s {
                return Err(BareError::TooSmall);
            }
            // Head slack: before the first chunk boundary, where only ranges
            // aligned below a chunk could go (the heap makes none).
            let head = align_up(s, chunk).map_or(e, |b| b.min(e)) - s;
            if head >= meta {
                (Some(s), s + meta, e)
            } else {
                // The tail slack when there is one, else the end of the last chunk.
                (Some(e - meta), s, e - meta)
            }
        };
        let first = align_up(ms, chunk).ok_or(BareError::TooSmall)?;
        if first >= me || me - first < self.min_claim {
            return Err(BareError::TooSmall);
        }
        Ok(Plan {
            bitmap_off: bitmap.map(|b| b - start),
            words,
            cwords,
            managed_off: ms - start,
            pages: (me - ms) >> self.page_shift,
        })
    }

    /// Exact figures.
    pub fn stats(&self) -> RegionStats {
        let g = self.inner.borrow();
        RegionStats {
            regions: g.count,
            managed_bytes: g.regions[..g.count]
                .iter()
                .map(|r| r.pages << self.page_shift)
                .sum(),
            mapped_bytes: g.mapped,
            peak_mapped_bytes: g.peak,
            map_calls: g.map_calls,
            failed_maps: g.failed_maps,
        }
    }

    /// The longest range `map(size, align)` could hand out now, in bytes.
    pub fn largest_free(&self, align: usize) -> usize {
        let g = self.inner.borrow();
        let page = 1usize << self.page_shift;
        let align = align.max(page);
        let count = g.count;
        let mut best = 0;
        for k in 0..count {
            let (r, bits, _) = g.parts_ref(k);
            let base = r.base.addr();
            let pages = r.pages;
            let low = r.low;
            let mut i = low;
            while let Some(lo) = first_with(bits, i, pages, false) {
                let hi = first_with(bits, lo, pages, true).unwrap_or(pages);
                if let Some(a) = align_up(base + (lo << self.page_shift), align) {
                    let al = (a - base) >> self.page_shift;
                    if al < hi {
                        best = best.max((hi - al) << self.page_shift);
                    }
                }
                i = hi;
            }
        }
        best
    }

    /// First-fit search in one region; returns the first page index.
    fn find_low(&self, r: &Region, bits: &[usize], n: usize, align: usize) -> Option<usize> {
        if r.free < n {
            return None;
        }
        let base = r.base.addr();
        let shift = self.page_shift;
        let pages = r.pages;
        // The first aligned page index at or after `i`.
        let cand = |i: usize| align_up(base + (i << shift), align).map(|a| (a - base) >> shift);
        let mut i = cand(r.low)?;
        loop {
            let hi = i.checked_add(n)?;
            if hi > pages {
                return None;
            }
            match first_with(bits, i, hi, true) {
                None => return Some(i),
                Some(j) => i = cand(first_with(bits, j + 1, pages, false)?)?,
            }
        }
    }

    /// The first aligned chunk index at or after chunk `c` (`align` is a
    /// multiple of the chunk size).
    fn chunk_up(&self, r: &Region, c: usize, align: usize) -> Option<usize> {
        let first = r.base.addr() + (r.c0 << self.page_shift);
        let a = align_up(first + (c << self.chunk_shift), align)?;
        Some((a - first) >> self.chunk_shift)
    }

    /// First-fit search for a range aligned to a chunk or more: only chunks
    /// whose first page is free are tried. Returns the first page index.
    fn find_low_chunked(&self, r: &Region, m: &Maps<'_>, n: usize, align: usize) -> Option<usize> {
        if r.free < n {
            return None;
        }
        let ppc = 1usize << (self.chunk_shift - self.page_shift);
        let mut c = self.chunk_up(r, 0, align)?;
        loop {
            let f = first_with(m.chunks, c.min(r.chunks), r.chunks, true)?;
            let a = self.chunk_up(r, f, align)?;
            if a != f {
                c = a;
                continue;
            }
            let i = r.c0 + f * ppc;
            let hi = i.checked_add(n)?;
            if hi > r.pages {
                return None;
            }
            match first_with(m.bits, i, hi, true) {
                None => return Some(i),
                // The next try starts past the page in the way.
                Some(j) => c = (j - r.c0) / ppc + 1,
            }
        }
    }

    /// Last-fit search for a range of whole chunks at chunk alignment (a
    /// SuperSlab), from `high` down. Returns the first page index.
    fn find_high_chunked(&self, r: &Region, m: &Maps<'_>, n: usize) -> Option<usize> {
        let ppc = 1usize << (self.chunk_shift - self.page_shift);
        let top = r.high.min(r.pages);
        if r.free < n || top < r.c0 + n {
            return None;
        }
        // Highest chunk that may start the range (inclusive).
        let mut last = (top - n - r.c0) / ppc;
        loop {
            let f = last_with(m.chunks, 0, last + 1, true)?;
            let i = r.c0 + f * ppc;
            match last_with(m.bits, i, i + n, true) {
                None => return Some(i),
                Some(k) => {
                    // The range must end at or below the page in the way.
                    if k < r.c0 + n {
                        return None;
                    }
                    last = (k - n - r.c0) / ppc;
                }
            }
        }
    }

    /// The first page index and region of the live range starting at
    /// `addr`, if one does.
    fn range_of(&self, g: &Inner, addr: usize) -> Option<(usize, usize)> {
        let shift = self.page_shift;
        let k = (0..g.count).find(|&k| {
            let r = &g.regions[k];
            addr >= r.base.addr() && addr - r.base.addr() < r.pages << shift
        })?;
        let (r, _, starts) = g.parts_ref(k);
        let off = addr - r.base.addr();
        let i = off >> shift;
        (off & ((1 << shift) - 1) == 0 && bit(starts, i)).then_some((i, k))
    }

    /// Re-reads the chunk bits of the chunks starting among pages `lo..hi`.
    fn sync_chunks(&self, r: &Region, m: &mut Maps<'_>, lo: usize, hi: usize) {
        let ppc = 1usize << (self.chunk_shift - self.page_shift);
        let mut c = lo.saturating_sub(r.c0).div_ceil(ppc);
        while c < r.chunks && r.c0 + c * ppc < hi {
            let free = !bit(m.bits, r.c0 + c * ppc);
            fill(m.chunks, c, c + 1, free);
            c += 1;
        }
    }
}

// SAFETY:
// - `map` returns only ranges of managed pages whose bits were all clear,
//   and sets them, so a live range overlaps no other; managed pages lie
//   inside memory the `claim` callers gave to this source alone (readable,
//   writable, valid while the source lives), and the address is aligned as
//   asked (`find` only tries aligned indices of a page-aligned base);
// - `MAPS_ZEROED` is false;
// - `remap` only ever grows a live range in place, over pages whose bits
//   were clear (so it overlaps nothing), and `shrink` clears the bits of a
//   live range's tail only: both keep the range one live range starting at
//   its start bit;
// - `contains` answers from the bits of live ranges alone, and every range
//   is whole pages, so it is true exactly inside live ranges; `region_start`
//   answers from the start bits, set exactly on the first page of each;
// - nothing here allocates or calls back into a heap; `&self` methods are
//   used from one thread at a time (the type is not `Sync`).
unsafe impl PageSource for FixedRegion {
    const MAPS_ZEROED: bool = false;

    fn page_size(&self) -> usize {
        1 << self.page_shift
    }

    fn map(&self, size: usize, align: usize) -> Option<NonNull<u8>> {
        let mut g = self.inner.borrow_mut();
        g.map_calls += 1;
        let page = 1usize << self.page_shift;
        let found = if size == 0 || !align.is_power_of_two() {
            None
        } else {
            let n = size.div_ceil(page);
            let align = align.max(page);
            let superslab = size == self.chunk_size() && align == self.chunk_size();
            let count = g.count;
            (0..count).find_map(|k| {
                let (r, mut m) = g.parts(k);
                let i = if superslab {
                    self.find_high_chunked(r, &m, n)?
                } else if align >= self.chunk_size() {
                    self.find_low_chunked(r, &m, n, align)?
                } else {
                    self.find_low(r, m.bits, n, align)?
                };
                fill(m.bits, i, i + n, true);
                fill(m.starts, i, i + 1, true);
                self.sync_chunks(r, &mut m, i, i + n);
                r.free -= n;
                if r.low == i {
                    r.low = i + n;
                }
                if r.high == i + n {
                    r.high = i;
                }
                // SAFETY: `i + n <= pages`: the range lies in the managed pages.
                Some((unsafe { r.base.add(i << self.page_shift) }, n))
            })
        };
        match found {
            Some((p, n)) => {
                g.mapped += n << self.page_shift;
                g.peak = g.peak.max(g.mapped);
                NonNull::new(p)
            }
            None => {
                g.failed_maps += 1;
                None
            }
        }
    }

    unsafe fn unmap(&self, ptr: NonNull<u8>, size: usize) {
        let mut g = self.inner.borrow_mut();
        let addr = ptr.as_ptr().addr();
        let n = size.div_ceil(1 << self.page_shift);
        let count = g.count;
        let shift = self.page_shift;
        let ok = (0..count).any(|k| {
            let (r, mut m) = g.parts(k);
            let base = r.base.addr();
            if addr < base || addr - base >= r.pages << shift {
                return false;
            }
            let off = addr - base;
            let i = off >> shift;
            let pages = r.pages;
            // One whole live range: it starts at `i`, every page is mapped,
            // no other range starts inside it, and it ends at `i + n`.
            if off & ((1 << shift) - 1) != 0
                || n == 0
                || n > pages - i
                || !bit(m.starts, i)
                || first_with(m.bits, i, i + n, false).is_some()
                || first_with(m.starts, i + 1, i + n, true).is_some()
                || (i + n < pages && bit(m.bits, i + n) && !bit(m.starts, i + n))
            {
                return false;
            }
            fill(m.bits, i, i + n, false);
            fill(m.starts, i, i + 1, false);
            self.sync_chunks(r, &mut m, i, i + n);
            r.free += n;
            r.low = r.low.min(i);
            r.high = r.high.max(i + n);
            true
        });
        assert!(
            ok,
            "hakmem-bare: unmap of {addr:#x} (+{size} B), which is not a live mapped range"
        );
        g.mapped -= n << shift;
    }

    const CAN_REMAP: bool = true;

    /// Grows a range in place when the pages after it are free (the pages
    /// cannot move without a copy, so never elsewhere).
    unsafe fn remap(
        &self,
        ptr: NonNull<u8>,
        old_size: usize,
        new_size: usize,
        align: usize,
    ) -> Option<NonNull<u8>> {
        let _ = align; // the start does not move
        let mut g = self.inner.borrow_mut();
        let shift = self.page_shift;
        let (i, k) = self.range_of(&g, ptr.as_ptr().addr())?;
        let (n_old, n_new) = (old_size >> shift, new_size.div_ceil(1 << shift));
        let (r, mut m) = g.parts(k);
        let hi = i.checked_add(n_new)?;
        if hi > r.pages || first_with(m.bits, i + n_old, hi, true).is_some() {
            return None;
        }
        fill(m.bits, i + n_old, hi, true);
        self.sync_chunks(r, &mut m, i + n_old, hi);
        r.free -= n_new - n_old;
        if r.low == i + n_old {
            r.low = hi;
        }
        g.mapped += (n_new - n_old) << shift;
        g.peak = g.peak.max(g.mapped);
        Some(ptr)
    }

    unsafe fn shrink(&self, ptr: NonNull<u8>, old_size: usize, new_size: usize) -> bool {
        let mut g = self.inner.borrow_mut();
        let shift = self.page_shift;
        let Some((i, k)) = self.range_of(&g, ptr.as_ptr().addr()) else {
            return false;
        };
        let (n_old, n_new) = (old_size >> shift, new_size >> shift);
        if n_new == 0 || n_new >= n_old {
            return false;
        }
        let (r, mut m) = g.parts(k);
        fill(m.bits, i + n_new, i + n_old, false);
        self.sync_chunks(r, &mut m, i + n_new, i + n_old);
        r.free += n_old - n_new;
        r.low = r.low.min(i + n_new);
        r.high = r.high.max(i + n_old);
        g.mapped -= (n_old - n_new) << shift;
        true
    }

    fn contains(&self, addr: usize) -> bool {
        let g = self.inner.borrow();
        let shift = self.page_shift;
        for k in 0..g.count {
            let (r, bits, _) = g.parts_ref(k);
            let base = r.base.addr();
            if addr >= base && addr - base < r.pages << shift {
                return bit(bits, (addr - base) >> shift);
            }
        }
        false
    }

    fn region_start(&self, addr: usize) -> Option<usize> {
        let g = self.inner.borrow();
        let shift = self.page_shift;
        let k = (0..g.count).find(|&k| {
            let r = &g.regions[k];
            addr >= r.base.addr() && addr - r.base.addr() < r.pages << shift
        })?;
        let (r, bits, starts) = g.parts_ref(k);
        let i = (addr - r.base.addr()) >> shift;
        if !bit(bits, i) {
            return None;
        }
        // The nearest start at or below `i`; every page between is mapped
        // (a live range is contiguous and begins with its start bit).
        let k = last_with(starts, 0, i + 1, true)?;
        Some(r.base.addr() + (k << shift))
    }
}
