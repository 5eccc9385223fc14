//! The medium tier: blocks between the slab classes and a SuperSlab, cut at
//! 16 B granularity from a *medium slab* — a run of slab units whose memory
//! is one boundary-tag arena with TLSF-style segregated free lists.
//!
//! A medium slab is recorded in its units' `Slab` records like any slab
//! (`class == MEDIUM_CLASS`, `head` naming its first unit), so block →
//! owner stays two loads (mask, unit head). Its record's block range is
//! empty (`start == bump == 0`), so the small tier's carved-block check
//! refuses every medium pointer and the small fast paths pay nothing: a
//! refused pointer whose slab is medium takes this module's path.
//!
//! ```text
//! slab units:  | Arena | bins (u32 × nbins) | start/free bits | granule 0 | 1 | ... |
//! ```
//!
//! - Every block is a whole number (≥ 2) of 16 B granules. Two bitmaps,
//!   interleaved in one array (granule `i`: bits `2i` and `2i + 1`, so a
//!   block's pair shares a word): the *start* bits mark each block's first
//!   granule, the *free* bits the first **and** last granule of each free
//!   block (never inside a held one). So a pointer is a held block iff its granule has a start bit and
//!   no free bit — exact, without reading the block — and the block before
//!   granule `i` is free iff granule `i - 1` has a free bit (a free block's
//!   first granule is never its last: blocks have two granules or more).
//! - A held block of [`SIZED`] granules or more keeps its size in the free
//!   bits of its granules 1 to 28 (a flag, then the size: unused inside a
//!   held block, and before its last granule), so a free reads its size
//!   instead of scanning the start bits to the next block.
//! - A free block holds, in its first granule, the remote-list word, the
//!   free tag (so the remote path's double-free check works as for small
//!   blocks), its bin links and its size; its last 4 bytes repeat the size
//!   (the boundary tag the next block's free reads to merge backwards).
//! - Bins: one per size below 8 granules, then four per power of two.
//!   Allocation takes the first non-empty bin whose every block fits (one
//!   bit search), else first-fits the request's own bin; frees merge with
//!   both neighbours at once, so no two free blocks touch.
//! - The bitmaps are atomics written only by the owner (plain loads and
//!   stores, no read-modify-write): other threads read them to check a
//!   block they free remotely.
//!
//! Accounting is the slab's: `used` counts the held (and pending) blocks,
//! so `live`, `empty_units`, the empty-SuperSlab count and the release of
//! empty SuperSlabs work unchanged; `Arena::held` counts held granules for
//! the figures.
//!
//! Invariants (checked by `check_arena`):
//! - the blocks tile the arena: starts at granule 0 and after each block;
//! - a free block has both free bits, its header size, footer and tag, and
//!   is on exactly the bin of its size; no two free blocks are adjacent;
//! - held blocks = `Slab::used`, their granules = `Arena::held`.

// The hardened build serves no medium block (its canaries live in slab and
// large blocks), so the allocation half of this module is unused there.
#![cfg_attr(feature = "hardened", allow(dead_code))]

use core::mem::size_of;
use core::ptr;
use core::sync::atomic::{AtomicUsize, Ordering};

use core::sync::atomic::AtomicU32;

use crate::remote::RemoteList;

use crate::error::{FreeError, FreeErrorKind};
use crate::heap::Heap;
use crate::page_source::PageSource;
use crate::size_class::NUM_CLASSES;
use crate::slab::{corrupted, free_tag, Block, Slab};
use crate::superslab::{find_run, SuperSlab};

/// `Slab::class` of a medium slab; also the index of the heap's list of
/// medium slabs among the partial lists.
pub(crate) const MEDIUM_CLASS: u8 = NUM_CLASSES as u8;
/// log2 of the granule.
pub(crate) const GRANULE_SHIFT: u32 = 4;
/// The granule: medium blocks are multiples of it, aligned to it.
pub(crate) const GRANULE: usize = 1 << GRANULE_SHIFT;
/// Fewest granules in a block (a free block needs its header and footer).
const MIN_GRANULES: u32 = 2;
/// No granule (empty bin, end of a bin list).
const NONE: u32 = u32::MAX;
/// Bits per bitmap word.
const BITS: usize = usize::BITS as usize;
/// Free-list heads per arena at most (fits the `u128` of non-empty bins).
const MAX_BINS: u32 = 128;
/// How many blocks of a larger bin are compared for the best fit.
const BEST_SCAN: usize = 4;
/// How many blocks of the request's own bin are tried for one that fits.
const BIN_SCAN: usize = 8;
/// Bins below this one hold blocks of one size each (the bin is the size
/// in granules), unless it is the arena's last bin.
const EXACT_BINS: u32 = 8;

/// A set of indexed medium slabs: 64 on 64-bit targets, 16 on smaller
/// ones (whose heaps are small, and whose RAM is: the index is then 256 B
/// of masks instead of 1 KiB).
#[cfg(target_pointer_width = "64")]
type SlabSet = u64;
/// A set of indexed medium slabs (see the 64-bit definition).
#[cfg(not(target_pointer_width = "64"))]
type SlabSet = u16;

/// Medium slabs the heap indexes by their non-empty bins (more are found
/// by a walk of the medium list).
pub(crate) const INDEXED: usize = SlabSet::BITS as usize;

/// The heap's index of its medium slabs: for each bin, which indexed slabs
/// have a free block there, so the best fit over every arena is a few bit
/// searches, not a look at each arena.
pub(crate) struct MediumIndex {
    /// Per bin: bit `k` set iff indexed slab `k` has a block in that bin.
    bins: [SlabSet; MAX_BINS as usize],
    /// Bins with a block in some indexed slab, 64 to a word.
    any: [u64; 2],
    /// Indexed slabs, by index.
    slabs: [*mut Slab; INDEXED],
    /// Indices in use.
    used: SlabSet,
    /// Medium slabs not indexed (all indices were taken when they were made).
    pub overflow: usize,
}

impl MediumIndex {
    /// No medium slab.
    pub const EMPTY: MediumIndex = MediumIndex {
        bins: [0; MAX_BINS as usize],
        any: [0; 2],
        slabs: [ptr::null_mut(); INDEXED],
        used: 0,
        overflow: 0,
    };

    /// Records that slab `k`'s non-empty bins (64 to a word) went from
    /// `old` to `new`.
    #[inline]
    fn sync(&mut self, k: usize, old: [u64; 2], new: [u64; 2]) {
        for w in 0..2 {
            let mut changed = old[w] ^ new[w];
            while changed != 0 {
                let b = changed.trailing_zeros();
                changed &= changed - 1;
                let bin = w * 64 + b as usize;
                if new[w] >> b & 1 != 0 {
                    self.bins[bin] |= 1 << k;
                    self.any[w] |= 1 << b;
                } else {
                    self.bins[bin] &= !(1 << k);
                    if self.bins[bin] == 0 {
                        self.any[w] &= !(1 << b);
                    }
                }
            }
        }
    }

    /// Whether the index agrees with the arenas' bins (for `Heap::check`).
    ///
    /// # Safety
    /// The indexed slabs are medium slabs of live SuperSlabs.
    pub unsafe fn check(&self, mask_of: impl Fn(*mut Slab) -> u128) -> bool {
        let mut want: [SlabSet; MAX_BINS as usize] = [0; MAX_BINS as usize];
        for k in 0..INDEXED {
            if self.used >> k & 1 == 0 {
                continue;
            }
            let mut m = mask_of(self.slabs[k]);
            while m != 0 {
                let b = m.trailing_zeros() as usize;
                m &= m - 1;
                want[b] |= 1 << k;
            }
        }
        (0..MAX_BINS as usize).all(|b| {
            self.bins[b] == want[b] && (self.any[b / 64] >> (b % 64) & 1 != 0) == (want[b] != 0)
        })
    }
}

/// The start bits of a bitmap word.
const EVEN: usize = usize::MAX / 3;

/// Bits of a held block's size field: a flag and the granules (below
/// 2^26 + 1).
const SIZE_FIELD: u32 = 28;
/// Bitmap bits the field spans (the free bits of `SIZE_FIELD` granules).
const SIZE_SPAN: u32 = 2 * SIZE_FIELD;
/// Held blocks of this many granules or more keep their size in their own
/// free bits (unused inside a held block), so a free reads it instead of
/// scanning the start bits to the next block; the field ends before the
/// block's last granule, whose free bit says "free" to the next block.
const SIZED: u32 = SIZE_FIELD + 4;

/// Bit `b` of `x` (below 32) to bit `2b`.
#[inline]
fn spread(x: u64) -> u64 {
    let mut x = x & 0xFFFF_FFFF;
    x = (x | (x << 16)) & 0x0000_FFFF_0000_FFFF;
    x = (x | (x << 8)) & 0x00FF_00FF_00FF_00FF;
    x = (x | (x << 4)) & 0x0F0F_0F0F_0F0F_0F0F;
    x = (x | (x << 2)) & 0x3333_3333_3333_3333;
    (x | (x << 1)) & 0x5555_5555_5555_5555
}

/// Bit `2b` of `x` to bit `b` (the inverse of [`spread`]).
#[inline]
fn compact(x: u64) -> u64 {
    let mut x = x & 0x5555_5555_5555_5555;
    x = (x | (x >> 1)) & 0x3333_3333_3333_3333;
    x = (x | (x >> 2)) & 0x0F0F_0F0F_0F0F_0F0F;
    x = (x | (x >> 4)) & 0x00FF_00FF_00FF_00FF;
    x = (x | (x >> 8)) & 0x0000_FFFF_0000_FFFF;
    (x | (x >> 16)) & 0xFFFF_FFFF
}

/// `Slab::inv` of a medium slab that is not indexed.
const NOT_INDEXED: u64 = u64::MAX;

/// The arena header at the start of a medium slab's memory (48 B: aligned
/// to 16 B, as when the mask was a `u128` on x86_64, so the arena layout
/// there is unchanged).
#[repr(C, align(16))]
pub(crate) struct Arena {
    /// Bytes from the header to granule 0.
    meta: u32,
    /// Granules in the arena.
    pub granules: u32,
    /// Granules in held blocks (pending ones included).
    pub held: u32,
    /// Bins.
    nbins: u32,
    /// Words of each bitmap.
    words: u32,
    /// Bytes from the header to the bitmap (after the bins, word-aligned):
    /// kept so each bit access is one load, not a computation.
    bits: u32,
    /// Non-empty bins, 64 to a word (a bin's bit is one word operation,
    /// not a `u128` shift).
    mask: [u64; 2],
}

/// The first granule of a free block.
#[repr(C)]
struct FreeBlock {
    /// Remote-list link while pending (a `Block`'s `next`).
    link: usize,
    /// `free_tag` of the block.
    tag: usize,
    /// Bin links (granule indices, [`NONE`]).
    next: u32,
    prev: u32,
    /// Granules.
    size: u32,
}

const _: () = assert!(size_of::<Arena>() == 48, "the arena header's size (layout)");

const _: () = assert!(
    2 * size_of::<usize>() + 3 * size_of::<u32>() <= MIN_GRANULES as usize * GRANULE - 4,
    "a free block's header and footer fit in the smallest block"
);

/// Bin of a block of `g >= 1` granules.
#[inline]
const fn bin_of(g: u32) -> u32 {
    if g < 8 {
        g
    } else {
        let l = 31 - g.leading_zeros();
        8 + (l - 3) * 4 + ((g >> (l - 2)) & 3)
    }
}

/// The first bin all of whose blocks hold `g` granules.
#[inline]
fn bin_up(g: u32) -> u32 {
    if g < 8 {
        return g;
    }
    let l = 31 - g.leading_zeros();
    let low = (1u32 << (l - 2)) - 1;
    bin_of(g) + u32::from(g & low != 0)
}

/// Offset of the bins from the arena header.
const BINS_OFFSET: usize = size_of::<Arena>();

/// Bytes of arena metadata (header, bins, bitmaps) for `granules`, rounded
/// to a granule.
const fn meta_bytes(granules: u32) -> usize {
    let nbins = if granules < 8 {
        granules + 1
    } else {
        let l = 31 - granules.leading_zeros();
        8 + (l - 3) * 4 + ((granules >> (l - 2)) & 3) + 1
    };
    let words = (2 * granules as usize).div_ceil(BITS);
    let bitmaps = (BINS_OFFSET + 4 * nbins as usize).next_multiple_of(size_of::<usize>());
    (bitmaps + words * size_of::<usize>()).next_multiple_of(GRANULE)
}

/// Granules an arena of `bytes` (from a granule-aligned start) holds after
/// its metadata.
pub(crate) const fn granules_for(bytes: usize) -> u32 {
    let g = bytes / GRANULE;
    let g = if g > (1 << 26) { 1 << 26 } else { g } as u32;
    let meta = meta_bytes(g);
    if meta >= bytes {
        return 0;
    }
    // A smaller arena needs no more metadata: one step is exact enough.
    ((bytes - meta) / GRANULE) as u32
}

/// Granules for a request of `size` bytes.
#[inline]
pub(crate) fn granules_of(size: usize) -> Option<u32> {
    let g = size.checked_add(GRANULE - 1)? >> GRANULE_SHIFT;
    if g > (1 << 26) {
        return None;
    }
    Some((g as u32).max(MIN_GRANULES))
}

/// The arena of medium slab `slab` of `ss`.
///
/// # Safety
/// `slab` is a medium slab of the live SuperSlab `ss`.
#[inline]
pub(crate) unsafe fn arena_of(ss: *mut SuperSlab, slab: *const Slab) -> *mut Arena {
    // SAFETY: a medium slab's `end` is its arena's offset (fixed while it is
    // assigned), inside the SuperSlab.
    unsafe { ss.cast::<u8>().add((*slab).end as usize).cast() }
}

/// Granule `i`'s start bit, in its pair (bit `2i` of the bitmap).
const START: usize = 1;
/// Granule `i`'s free bit, in its pair (bit `2i + 1`).
const FREE: usize = 2;

/// An arena's addresses and sizes, read from its header once per
/// operation: every store through a raw pointer (bitmap, bins, block
/// headers) could alias the header, so without this each bit access would
/// reload them.
#[derive(Clone, Copy)]
struct View {
    a: *mut Arena,
    /// The bitmap (granule `i`: bits `2i`, `2i + 1`).
    bits: *mut AtomicUsize,
    /// Granule 0.
    g0: *mut u8,
    /// The bin heads.
    bins: *mut u32,
    /// Granules in the arena.
    granules: u32,
    /// The last bin (blocks of its size and larger).
    last_bin: u32,
}

impl View {
    /// # Safety
    /// `a` is a live arena.
    #[inline(always)]
    unsafe fn of(a: *const Arena) -> View {
        // SAFETY: per the caller: the header says where its parts lie, all
        // inside the slab.
        unsafe {
            let base = a.cast::<u8>().cast_mut();
            View {
                a: a.cast_mut(),
                bits: base.add((*a).bits as usize).cast(),
                g0: base.add((*a).meta as usize),
                bins: base.add(BINS_OFFSET).cast(),
                granules: (*a).granules,
                last_bin: (*a).nbins - 1,
            }
        }
    }

    /// The bitmap word holding granule `i`'s pair, and the pair's shift.
    ///
    /// # Safety
    /// `i` is below the arena's granules.
    #[inline(always)]
    unsafe fn word(self, i: u32) -> (*const AtomicUsize, u32) {
        let bit = 2 * i as usize;
        // SAFETY: per the caller, inside the bitmap.
        (unsafe { self.bits.add(bit / BITS) }, (bit % BITS) as u32)
    }

    /// Granule `i`'s pair ([`START`], [`FREE`]).
    ///
    /// # Safety
    /// As [`word`](Self::word).
    #[inline(always)]
    unsafe fn pair(self, i: u32) -> usize {
        // SAFETY: per the caller.
        unsafe {
            let (w, s) = self.word(i);
            ((*w).load(Ordering::Relaxed) >> s) & 3
        }
    }

    /// # Safety
    /// As [`word`](Self::word).
    #[inline(always)]
    unsafe fn is_free(self, i: u32) -> bool {
        // SAFETY: per the caller.
        unsafe { self.pair(i) & FREE != 0 }
    }

    /// # Safety
    /// As [`word`](Self::word).
    #[inline(always)]
    unsafe fn is_start(self, i: u32) -> bool {
        // SAFETY: per the caller.
        unsafe { self.pair(i) & START != 0 }
    }

    /// Clears the bits `clear` and sets the bits `set` of granule `i`'s
    /// pair (owner only: plain load and store).
    ///
    /// # Safety
    /// As [`word`](Self::word), and the arena is the caller's.
    #[inline(always)]
    unsafe fn change(self, i: u32, clear: usize, set: usize) {
        // SAFETY: per the caller; only the owner writes, so load + store is
        // exact.
        unsafe {
            let (w, s) = self.word(i);
            let v = (*w).load(Ordering::Relaxed);
            (*w).store((v & !(clear << s)) | (set << s), Ordering::Relaxed);
        }
    }

    /// Address of granule `i`.
    ///
    /// # Safety
    /// `i <= granules`.
    #[inline(always)]
    unsafe fn granule(self, i: u32) -> *mut u8 {
        // SAFETY: per the caller.
        unsafe { self.g0.add((i as usize) << GRANULE_SHIFT) }
    }

    /// The header of the free block at granule `i`.
    ///
    /// # Safety
    /// `i < granules`.
    #[inline(always)]
    unsafe fn header(self, i: u32) -> *mut FreeBlock {
        // SAFETY: per the caller.
        unsafe { self.granule(i).cast() }
    }

    /// The footer of the block that ends before granule `i`.
    ///
    /// # Safety
    /// `0 < i <= granules`.
    #[inline(always)]
    unsafe fn footer(self, i: u32) -> *mut u32 {
        // SAFETY: per the caller: the block's last 4 bytes.
        unsafe { self.granule(i).cast::<u32>().sub(1) }
    }

    /// The bin of a free block of `g` granules.
    #[inline(always)]
    fn bin(self, g: u32) -> u32 {
        bin_of(g).min(self.last_bin)
    }

    /// Granule index of `p`, if it is a granule start inside the arena.
    #[inline(always)]
    fn index_of(self, p: usize) -> Option<u32> {
        let rel = p.wrapping_sub(self.g0 as usize);
        if rel % GRANULE != 0 || rel >> GRANULE_SHIFT >= self.granules as usize {
            return None;
        }
        Some((rel >> GRANULE_SHIFT) as u32)
    }
}

/// A free block found for an allocation: its medium slab, the view of the
/// slab's arena, and its first granule.
type Fit = (*mut Slab, View, u32);

/// The first bin at or above `b` set in `mask` (two words of 64 bins).
#[inline(always)]
fn first_bin(mask: [u64; 2], b: u32) -> Option<u32> {
    if b < 64 {
        let m = mask[0] >> b;
        if m != 0 {
            return Some(b + m.trailing_zeros());
        }
        if mask[1] != 0 {
            return Some(64 + mask[1].trailing_zeros());
        }
        None
    } else if b < 128 {
        let m = mask[1] >> (b - 64);
        (m != 0).then(|| b + m.trailing_zeros())
    } else {
        None
    }
}

impl Arena {
    /// Writes an empty arena (one free block) over `[base + off, base + off + bytes)`.
    /// `zeroed`: the memory reads as zero already (the bitmaps need no clearing).
    ///
    /// # Safety
    /// The range lies inside the live SuperSlab at `base`, is unused, and
    /// `off` is granule-aligned; `granules_for(bytes) >= MIN_GRANULES`.
    pub unsafe fn init(base: *mut SuperSlab, off: usize, bytes: usize, zeroed: bool) -> *mut Arena {
        let granules = granules_for(bytes);
        let meta = meta_bytes(granules);
        // SAFETY: per the caller; every write lies inside the range.
        unsafe {
            let a = base.cast::<u8>().add(off).cast::<Arena>();
            let nbins = bin_of(granules) + 1;
            debug_assert!(nbins <= MAX_BINS);
            a.write(Arena {
                meta: meta as u32,
                granules,
                held: 0,
                nbins,
                words: (2 * granules).div_ceil(BITS as u32),
                bits: (BINS_OFFSET + 4 * nbins as usize).next_multiple_of(size_of::<usize>())
                    as u32,
                mask: [0; 2],
            });
            let v = View::of(a);
            for b in 0..nbins as usize {
                v.bins.add(b).write(NONE);
            }
            if !zeroed {
                for w in 0..(*a).words as usize {
                    v.bits.add(w).write(AtomicUsize::new(0));
                }
            }
            Self::insert_free(v, 0, granules);
            a
        }
    }

    /// Address of granule `i`.
    ///
    /// # Safety
    /// `a` is a live arena, `i <= granules`.
    #[inline]
    pub unsafe fn granule(a: *const Arena, i: u32) -> *mut u8 {
        // SAFETY: per the caller.
        unsafe { View::of(a).granule(i) }
    }

    /// Granule index of `p`, if it is a granule start inside the arena.
    ///
    /// # Safety
    /// `a` is a live arena.
    #[inline]
    pub unsafe fn index_of(a: *const Arena, p: usize) -> Option<u32> {
        // SAFETY: per the caller.
        unsafe { View::of(a) }.index_of(p)
    }

    /// The first start bit after granule `i`, or `granules`. Out of line,
    /// it takes the arena, not a view: the hot callers keep their view in
    /// registers.
    ///
    /// # Safety
    /// `a` is a live arena, `i < granules`.
    #[inline(never)]
    unsafe fn next_start(a: *const Arena, i: u32) -> u32 {
        // SAFETY: per the caller; words below `words` only.
        unsafe {
            let v = View::of(a);
            let n = 2 * v.granules as usize;
            let mut j = 2 * (i as usize + 1);
            while j < n {
                let w = ((*v.bits.add(j / BITS)).load(Ordering::Relaxed) & EVEN) >> (j % BITS);
                if w != 0 {
                    let k = j + w.trailing_zeros() as usize;
                    return (k.min(n) / 2) as u32;
                }
                j = (j / BITS + 1) * BITS;
            }
            (n / 2) as u32
        }
    }

    /// The last start bit at or before granule `i`.
    ///
    /// # Safety
    /// `i < granules`.
    unsafe fn prev_start(v: View, i: u32) -> u32 {
        // SAFETY: per the caller; granule 0 always starts a block.
        unsafe {
            let mut j = 2 * i as usize;
            loop {
                let b = j % BITS;
                let w = (*v.bits.add(j / BITS)).load(Ordering::Relaxed) & EVEN;
                let m = if b == BITS - 1 {
                    !0
                } else {
                    (1usize << (b + 1)) - 1
                };
                let x = w & m;
                if x != 0 {
                    let k = (j / BITS) * BITS + (BITS - 1 - x.leading_zeros() as usize);
                    return (k / 2) as u32;
                }
                if j < BITS {
                    return 0;
                }
                j = (j / BITS) * BITS - 1;
            }
        }
    }

    /// Whether `p` is a held block of the arena; the error says what it is
    /// otherwise. Any thread may ask.
    ///
    /// # Safety
    /// `a` is a live arena.
    pub unsafe fn check_held(a: *const Arena, p: usize) -> Result<u32, FreeErrorKind> {
        // SAFETY: per the caller; only bitmaps are read.
        unsafe {
            let v = View::of(a);
            let i = v.index_of(p).ok_or(FreeErrorKind::NotAllocated)?;
            Self::held_at(v, i, v.pair(i))
        }
    }

    /// `Ok(i)` if granule `i`, whose pair is `pair`, starts a held block;
    /// else what it is.
    ///
    /// # Safety
    /// `i < granules`.
    #[inline(always)]
    unsafe fn held_at(v: View, i: u32, pair: usize) -> Result<u32, FreeErrorKind> {
        if pair == START {
            return Ok(i);
        }
        if pair == START | FREE {
            return Err(FreeErrorKind::DoubleFree);
        }
        // SAFETY: per the caller. Inside a block: held (an interior
        // pointer) or free.
        unsafe { Self::inside_block(v.a, i) }
    }

    /// What a granule that starts no block is: inside a free block or a
    /// held one.
    ///
    /// # Safety
    /// `a` is a live arena, `i < granules`.
    #[cold]
    unsafe fn inside_block(a: *const Arena, i: u32) -> Result<u32, FreeErrorKind> {
        // SAFETY: per the caller.
        unsafe {
            let v = View::of(a);
            if v.is_free(Self::prev_start(v, i)) {
                Err(FreeErrorKind::NotAllocated)
            } else {
                Err(FreeErrorKind::Interior)
            }
        }
    }

    /// The held block `p` starts: its first granule and granules; else
    /// what `p` is (as [`check_held`](Self::check_held)). Any thread may
    /// ask. One bitmap load serves the check and (for a block under
    /// [`SIZED`] granules whose next start lies in the same word) the size.
    ///
    /// # Safety
    /// `a` is a live arena.
    #[inline]
    pub unsafe fn held_block(a: *const Arena, p: usize) -> Result<(u32, u32), FreeErrorKind> {
        // SAFETY: per the caller.
        unsafe { Self::held_in(View::of(a), p) }
    }

    /// [`held_block`](Self::held_block) on the arena's view.
    ///
    /// # Safety
    /// The view's arena is live.
    #[inline(always)]
    unsafe fn held_in(v: View, p: usize) -> Result<(u32, u32), FreeErrorKind> {
        // SAFETY: per the caller; only bitmaps are read.
        unsafe {
            let i = v.index_of(p).ok_or(FreeErrorKind::NotAllocated)?;
            let (w, s) = v.word(i);
            let word = (*w).load(Ordering::Relaxed);
            Self::held_at(v, i, (word >> s) & 3)?;
            // The bits past the pair of `i`, in this word.
            let rest = word >> s >> 2;
            if rest & FREE == 0 {
                // Not sized: the next start bit (granule `i + 1` starts
                // nothing, a block has two granules or more).
                let starts = rest & EVEN;
                if starts != 0 {
                    return Ok((i, 1 + starts.trailing_zeros() / 2));
                }
            }
            Ok((i, Self::granules_at(v, i)))
        }
    }

    /// Granules of the held block at granule `i`.
    ///
    /// # Safety
    /// `a` is a live arena and `i` starts a held block.
    pub unsafe fn block_granules(a: *const Arena, i: u32) -> u32 {
        // SAFETY: per the caller.
        unsafe { Self::granules_at(View::of(a), i) }
    }

    /// Granules of the held block at granule `i`: its stored size, or the
    /// distance to the next start bit.
    ///
    /// # Safety
    /// `i` starts a held block.
    #[inline(always)]
    unsafe fn granules_at(v: View, i: u32) -> u32 {
        // SAFETY: per the caller: a held block has two granules or more, so
        // `i + 1` is inside it, and one with its size stored is long enough
        // to hold the field.
        unsafe {
            if v.is_free(i + 1) {
                let x = compact(Self::read_bits(v, 2 * (i + 1), SIZE_SPAN) >> 1);
                return (x >> 1) as u32;
            }
            Self::next_start(v.a, i) - i
        }
    }

    /// Stores the size of the held block at `i` (`g` granules) in the free
    /// bits of its granules `i + 1 ..= i + SIZE_FIELD`, if it is long enough
    /// ([`SIZED`]): a flag, then `g`. Those bits are clear before.
    ///
    /// # Safety
    /// The arena is the owner's and `i` starts a held block of `g`
    /// granules.
    #[inline]
    unsafe fn store_size(v: View, i: u32, g: u32) {
        if g >= SIZED {
            let x = 1 | (u64::from(g) << 1);
            // SAFETY: per the caller; the field lies inside the block.
            unsafe { Self::update_bits(v, 2 * (i + 1), SIZE_SPAN, 0, spread(x) << 1) };
        }
    }

    /// Clears the size field of the held block at `i` (`g` granules).
    ///
    /// # Safety
    /// As [`store_size`](Self::store_size).
    #[inline]
    unsafe fn clear_size(v: View, i: u32, g: u32) {
        if g >= SIZED {
            let all = spread((1u64 << SIZE_FIELD) - 1) << 1;
            // SAFETY: per the caller; the field lies inside the block.
            unsafe { Self::update_bits(v, 2 * (i + 1), SIZE_SPAN, all, 0) };
        }
    }

    /// The `1 <= len <= 64` bits of the bitmap from bit `pos`.
    ///
    /// # Safety
    /// The bits lie inside the bitmap.
    #[inline(always)]
    unsafe fn read_bits(v: View, pos: u32, len: u32) -> u64 {
        if BITS == 64 {
            // One or two words, no loop.
            let (w, b) = ((pos / 64) as usize, pos % 64);
            // SAFETY: per the caller; the second word is read only when
            // the bits run into it.
            unsafe {
                let mut x = (*v.bits.add(w)).load(Ordering::Relaxed) as u64 >> b;
                if b + len > 64 {
                    x |= ((*v.bits.add(w + 1)).load(Ordering::Relaxed) as u64) << (64 - b);
                }
                return x & (u64::MAX >> (64 - len));
            }
        }
        let (mut out, mut done) = (0u64, 0u32);
        while done < len {
            let p = (pos + done) as usize;
            let (w, b) = (p / BITS, p % BITS);
            let n = (BITS - b).min((len - done) as usize);
            // SAFETY: per the caller.
            let word = unsafe { (*v.bits.add(w)).load(Ordering::Relaxed) } as u64;
            let bits = (word >> b) & (u64::MAX >> (64 - n));
            out |= bits << done;
            done += n as u32;
        }
        out
    }

    /// Clears the bits `clear` and sets the bits `set` of the `1 <= len <= 64`
    /// bits from bit `pos` (owner only: plain load and store).
    ///
    /// # Safety
    /// The arena is the owner's and the bits lie inside its bitmap.
    unsafe fn update_bits(v: View, pos: u32, len: u32, clear: u64, set: u64) {
        if BITS == 64 {
            // One or two words, no loop.
            let (w, b) = ((pos / 64) as usize, pos % 64);
            let m = u64::MAX >> (64 - len);
            let (c, s) = (clear & m, set & m);
            // SAFETY: per the caller; the second word is written only when
            // the bits run into it.
            unsafe {
                let word = &*v.bits.add(w);
                let x = word.load(Ordering::Relaxed) as u64;
                word.store(((x & !(c << b)) | (s << b)) as usize, Ordering::Relaxed);
                if b + len > 64 {
                    let word = &*v.bits.add(w + 1);
                    let x = word.load(Ordering::Relaxed) as u64;
                    let (c, s) = (c >> (64 - b), s >> (64 - b));
                    word.store(((x & !c) | s) as usize, Ordering::Relaxed);
                }
            }
            return;
        }
        let mut done = 0u32;
        while done < len {
            let p = (pos + done) as usize;
            let (w, b) = (p / BITS, p % BITS);
            let n = (BITS - b).min((len - done) as usize);
            let m = (u64::MAX >> (64 - n)) as usize;
            let c = ((clear >> done) as usize & m) << b;
            let s = ((set >> done) as usize & m) << b;
            // SAFETY: per the caller.
            unsafe {
                let word = &*v.bits.add(w);
                let x = word.load(Ordering::Relaxed);
                word.store((x & !c) | s, Ordering::Relaxed);
            }
            done += n as u32;
        }
    }

    /// Makes `[i, i + g)` a free block and puts it on its bin.
    ///
    /// # Safety
    /// The arena is the owner's; the range is inside it, no block overlaps
    /// it except as being replaced, and `g >= MIN_GRANULES`.
    #[inline(always)]
    unsafe fn insert_free(v: View, i: u32, g: u32) {
        // SAFETY: per the caller: the range is ours to write.
        unsafe {
            v.change(i, 0, START | FREE);
            v.change(i + g - 1, 0, FREE);
            let h = v.header(i);
            let b = v.bin(g);
            let head = *v.bins.add(b as usize);
            ptr::addr_of_mut!((*h).tag).write(free_tag(h.cast()));
            ptr::addr_of_mut!((*h).next).write(head);
            ptr::addr_of_mut!((*h).prev).write(NONE);
            ptr::addr_of_mut!((*h).size).write(g);
            v.footer(i + g).write(g);
            if head != NONE {
                ptr::addr_of_mut!((*v.header(head)).prev).write(i);
            }
            *v.bins.add(b as usize) = i;
            (*v.a).mask[b as usize / 64] |= 1 << (b % 64);
        }
    }

    /// Takes the free block at `i` off its bin and clears its free bits and
    /// the bits `first` of its first granule ([`FREE`], or with [`START`]
    /// when it merges into the block before it). Returns its granules.
    ///
    /// # Safety
    /// The arena is the owner's and `i` starts a free block of it.
    #[inline(always)]
    unsafe fn remove_free(v: View, i: u32, first: usize) -> u32 {
        // SAFETY: per the caller; the links name free blocks of the bin.
        unsafe {
            let h = v.header(i);
            let (g, next, prev) = ((*h).size, (*h).next, (*h).prev);
            let b = v.bin(g);
            if prev == NONE {
                *v.bins.add(b as usize) = next;
                if next == NONE {
                    (*v.a).mask[b as usize / 64] &= !(1 << (b % 64));
                }
            } else {
                ptr::addr_of_mut!((*v.header(prev)).next).write(next);
            }
            if next != NONE {
                ptr::addr_of_mut!((*v.header(next)).prev).write(prev);
            }
            v.change(i, first, 0);
            v.change(i + g - 1, FREE, 0);
            ptr::addr_of_mut!((*h).tag).write(0);
            g
        }
    }

    /// A free block of at least `want` granules: its start, or `None`.
    ///
    /// # Safety
    /// `a` is a live arena.
    pub unsafe fn find(a: *mut Arena, want: u32) -> Option<(u32, u32)> {
        // SAFETY: per the caller; bins hold free blocks.
        unsafe {
            let v = View::of(a);
            // The request's own bin first: a block there that is large
            // enough keeps the larger free blocks whole (closer to best fit).
            let own = bin_of(want);
            if let Some(i) = Self::find_own(v, want) {
                return Some((i, own));
            }
            let bin = first_bin((*a).mask, bin_up(want))?;
            // Best fit among the first blocks of that bin.
            Some((Self::best_of_bin(v, bin, BIN_SCAN), bin))
        }
    }

    /// The non-empty bins.
    ///
    /// # Safety
    /// `a` is a live arena.
    #[inline]
    pub unsafe fn bins_mask(a: *const Arena) -> u128 {
        // SAFETY: per the caller.
        unsafe { u128::from((*a).mask[0]) | u128::from((*a).mask[1]) << 64 }
    }

    /// Whether bin `b` (below [`MAX_BINS`]) is non-empty.
    ///
    /// # Safety
    /// `a` is a live arena.
    #[inline]
    unsafe fn has_bin(a: *const Arena, b: u32) -> bool {
        // SAFETY: per the caller.
        unsafe { (*a).mask[b as usize / 64] >> (b % 64) & 1 != 0 }
    }

    /// A block of the request's own bin holding `want` granules (the first
    /// [`BIN_SCAN`] are tried), where that bin also holds smaller blocks.
    ///
    /// # Safety
    /// The view's arena is live.
    #[inline]
    unsafe fn find_own(v: View, want: u32) -> Option<u32> {
        // SAFETY: per the caller; bins hold free blocks.
        unsafe {
            let own = bin_of(want);
            if own == bin_up(want) || own > v.last_bin || !Self::has_bin(v.a, own) {
                return None;
            }
            let mut i = *v.bins.add(own as usize);
            let mut tries = 0;
            while i != NONE && tries < BIN_SCAN {
                let h = v.header(i);
                if (*h).size >= want {
                    return Some(i);
                }
                i = (*h).next;
                tries += 1;
            }
            None
        }
    }

    /// The best fit among the first `scan` blocks of non-empty bin `bin`
    /// (all of whose blocks are large enough).
    ///
    /// # Safety
    /// `bin` is one of the view's arena's non-empty bins.
    #[inline]
    unsafe fn best_of_bin(v: View, bin: u32, scan: usize) -> u32 {
        // SAFETY: per the caller.
        unsafe {
            let mut i = *v.bins.add(bin as usize);
            if bin < EXACT_BINS && bin < v.last_bin {
                // An exact bin: every block is the same size, its head fits best.
                return i;
            }
            let mut best = i;
            let mut best_size = u32::MAX;
            let mut tries = 0;
            while i != NONE && tries < scan {
                let h = v.header(i);
                if (*h).size < best_size {
                    best = i;
                    best_size = (*h).size;
                }
                i = (*h).next;
                tries += 1;
            }
            best
        }
    }

    /// Granules a free block must have to hold `g` granules at `align`.
    pub fn want(g: u32, align: usize) -> Option<u32> {
        let ag = (align >> GRANULE_SHIFT) as u32;
        if ag <= 1 {
            Some(g)
        } else {
            g.checked_add(ag)?.checked_add(1)
        }
    }

    /// Allocates a held block of `g` granules whose address is a multiple
    /// of `align` (a power of two, at least a granule). Returns its first
    /// granule and its granules (`g`, or up to one more when the rest would
    /// be too small to stand alone).
    ///
    /// # Safety
    /// `a` is a live arena of the owner.
    pub unsafe fn alloc(a: *mut Arena, g: u32, align: usize) -> Option<(u32, u32)> {
        // SAFETY: per the caller; `find` returns a free block large enough.
        unsafe {
            let (i, _) = Self::find(a, Self::want(g, align)?)?;
            Some(Self::alloc_at(a, i, g, align))
        }
    }

    /// Allocates `g` granules at `align` from the free block at `i`, which
    /// `find` returned for `want(g, align)`. Returns the block's first
    /// granule and its granules.
    ///
    /// # Safety
    /// `a` is a live arena of the owner, `i` such a free block.
    pub unsafe fn alloc_at(a: *mut Arena, i: u32, g: u32, align: usize) -> (u32, u32) {
        // SAFETY: per the caller.
        unsafe { Self::alloc_in(View::of(a), i, g, align) }
    }

    /// [`alloc_at`](Self::alloc_at) on the arena's view (read once by the
    /// caller for the whole operation).
    ///
    /// # Safety
    /// As `alloc_at`, for the view's arena.
    #[inline(always)]
    unsafe fn alloc_in(v: View, i: u32, g: u32, align: usize) -> (u32, u32) {
        let ag = (align >> GRANULE_SHIFT) as u32;
        let a = v.a;
        // SAFETY: per the caller.
        unsafe {
            // (Its start bit stays: the block, or its free head, starts at
            // `i`.)
            let s = Self::remove_free(v, i, FREE);
            let mut j = i;
            if ag > 1 {
                let addr = v.granule(i) as usize;
                let mut pad = (addr.next_multiple_of(align) - addr) >> GRANULE_SHIFT;
                if pad == 1 {
                    pad += ag as usize;
                }
                j = i + pad as u32;
                if j > i {
                    // The head stays free.
                    Self::insert_free(v, i, j - i);
                    v.change(j, 0, START);
                }
            }
            let end = i + s;
            let mut g = g;
            if end - (j + g) < MIN_GRANULES {
                g = end - j;
            } else {
                Self::insert_free(v, j + g, end - (j + g));
            }
            Self::store_size(v, j, g);
            // A stale tag would read as a double free on the remote path.
            ptr::addr_of_mut!((*v.header(j)).tag).write(0);
            (*a).held += g;
            (j, g)
        }
    }

    /// Frees the held block at granule `i` (of `g` granules), merging it
    /// with free neighbours.
    ///
    /// # Safety
    /// `a` is a live arena of the owner; `i` starts a held block of `g`
    /// granules.
    pub unsafe fn free(a: *mut Arena, i: u32, g: u32) {
        // SAFETY: per the caller.
        unsafe { Self::free_in(View::of(a), i, g) }
    }

    /// [`free`](Self::free) on the arena's view (read once by the caller
    /// for the whole operation).
    ///
    /// # Safety
    /// As `free`, for the view's arena.
    #[inline(always)]
    unsafe fn free_in(v: View, i: u32, g: u32) {
        // SAFETY: per the caller; neighbours are found through the bitmaps.
        unsafe {
            Self::clear_size(v, i, g);
            (*v.a).held -= g;
            let (mut i, mut g) = (i, g);
            let n = i + g;
            if n < v.granules && v.is_free(n) {
                g += Self::remove_free(v, n, START | FREE);
            }
            if i > 0 && v.is_free(i - 1) {
                let ps = v.footer(i).read();
                let p = i - ps;
                Self::remove_free(v, p, FREE);
                v.change(i, START, 0);
                i = p;
                g += ps;
            }
            Self::insert_free(v, i, g);
        }
    }

    /// Resizes the held block at `i` (of `g` granules) to `want` granules in
    /// place: a shrink gives its tail back, a growth takes from a free next
    /// block. Returns the block's new granules, or `None` (nothing changed).
    ///
    /// # Safety
    /// As [`free`](Self::free), for the view's arena.
    #[inline(always)]
    unsafe fn resize_in(v: View, i: u32, g: u32, want: u32) -> Option<u32> {
        let a = v.a;
        // SAFETY: per the caller.
        unsafe {
            let n = i + g;
            let next_free = n < v.granules && v.is_free(n);
            let room = if next_free {
                g + (*v.header(n)).size
            } else {
                g
            };
            if want > room {
                return None;
            }
            if want <= g && g - want < MIN_GRANULES && !next_free {
                // Too little to give back on its own.
                return Some(g);
            }
            Self::clear_size(v, i, g);
            if next_free {
                Self::remove_free(v, n, START | FREE);
            }
            let end = i + room;
            let mut keep = want;
            if end - (i + keep) < MIN_GRANULES {
                keep = end - i;
            } else {
                Self::insert_free(v, i + keep, end - (i + keep));
            }
            Self::store_size(v, i, keep);
            (*a).held = (*a).held - g + keep;
            Some(keep)
        }
    }

    /// Checks the arena's invariants; returns (held blocks, held granules,
    /// free blocks).
    ///
    /// # Safety
    /// `a` is a live arena.
    pub unsafe fn check(a: *const Arena) -> Result<(u32, u32, u32), &'static str> {
        // SAFETY: per the caller; blocks are walked through the bitmaps.
        unsafe {
            let bits = (BINS_OFFSET + 4 * (*a).nbins as usize).next_multiple_of(size_of::<usize>());
            if (*a).bits as usize != bits {
                return Err("medium arena's bitmap offset");
            }
            let v = View::of(a);
            let n = (*a).granules;
            if !v.is_start(0) {
                return Err("medium arena starts with a block");
            }
            let (mut held, mut held_g, mut free) = (0u32, 0u32, 0u32);
            let mut i = 0;
            let mut prev_free = false;
            while i < n {
                let e = Self::next_start(v.a, i);
                let g = e - i;
                if g < MIN_GRANULES {
                    return Err("medium block of at least two granules");
                }
                if v.is_free(i) {
                    let h = v.header(i);
                    if prev_free {
                        return Err("medium free blocks merged");
                    }
                    if !v.is_free(e - 1) || (*h).size != g {
                        return Err("medium free block size and end bit");
                    }
                    if v.footer(e).read() != g {
                        return Err("medium free block footer");
                    }
                    if (*h).tag != free_tag(h.cast()) {
                        return Err("medium free block tag");
                    }
                    for k in i + 1..e - 1 {
                        if v.is_free(k) {
                            return Err("no free bit inside a free block");
                        }
                    }
                    free += 1;
                    prev_free = true;
                } else {
                    // Past the size field (where it has one), no free bit.
                    let field = if g >= SIZED {
                        i + SIZE_FIELD + 1
                    } else {
                        i + 1
                    };
                    for k in field..e {
                        if v.is_free(k) {
                            return Err("no free bit inside a held block");
                        }
                    }
                    if Self::granules_at(v, i) != g {
                        return Err("medium held block's stored size");
                    }
                    if Self::held_block(a, v.granule(i) as usize) != Ok((i, g)) {
                        return Err("medium held block's check and size");
                    }
                    held += 1;
                    held_g += g;
                    prev_free = false;
                }
                i = e;
            }
            if held_g != (*a).held {
                return Err("medium held granules");
            }
            // Each bin holds blocks of its size only; together, every free block.
            let mut listed = 0u32;
            for b in 0..(*a).nbins {
                let mut k = *v.bins.add(b as usize);
                if (k != NONE) != Self::has_bin(a, b) {
                    return Err("medium bin mask");
                }
                let mut prev = NONE;
                while k != NONE {
                    if k >= n || !v.is_free(k) || !v.is_start(k) {
                        return Err("medium bin holds free blocks");
                    }
                    let h = v.header(k);
                    if v.bin((*h).size) != b || (*h).prev != prev {
                        return Err("medium bin links");
                    }
                    listed += 1;
                    if listed > free {
                        return Err("medium bins longer than the free blocks");
                    }
                    prev = k;
                    k = (*h).next;
                }
            }
            if listed != free {
                return Err("every medium free block is in a bin");
            }
            Ok((held, held_g, free))
        }
    }
}

impl<P: PageSource> Heap<P> {
    /// Serves `size` bytes at `align` (a power of two, at least 16) from a
    /// medium slab: the best fit over the existing ones (`best_fit`), else
    /// a new one carved from free units, else one in a new SuperSlab. Null
    /// when none can be had (nothing changed).
    pub(crate) fn alloc_medium(&mut self, size: usize, align: usize, zero: bool) -> *mut u8 {
        let Some(g) = granules_of(size) else {
            return ptr::null_mut();
        };
        let Some(want) = Arena::want(g, align) else {
            return ptr::null_mut();
        };
        // SAFETY: the medium list holds medium slabs of live owned
        // SuperSlabs; `best_fit` returns a free block of one.
        unsafe {
            if let Some(fit) = self.best_fit(want) {
                return self.take_medium_at(fit, g, size, align, zero);
            }
        }
        self.alloc_medium_slow(g, want, size, align, zero)
    }

    /// No medium slab has a free block for `want` granules: blocks other
    /// threads freed, else a new medium slab.
    #[cold]
    fn alloc_medium_slow(
        &mut self,
        g: u32,
        want: u32,
        size: usize,
        align: usize,
        zero: bool,
    ) -> *mut u8 {
        // Blocks freed by other threads may make room.
        if self.collect() != 0 {
            // SAFETY: as in `alloc_medium`.
            unsafe {
                if let Some(fit) = self.best_fit(want) {
                    return self.take_medium_at(fit, g, size, align, zero);
                }
            }
        }
        let extra = if align > GRANULE {
            (align >> GRANULE_SHIFT) + 1
        } else {
            0
        };
        let need = (g as usize + extra) << GRANULE_SHIFT;
        // A new medium slab: empty current slabs give their units back first
        // (as for a new small slab, `new_slab_slow`; `account.rs`).
        self.retire_current();
        let mut ss = self.superslabs;
        while !ss.is_null() {
            // SAFETY: list members are live owned SuperSlabs.
            unsafe {
                if let Some(s) = self.carve_medium(ss, need) {
                    return self
                        .take_medium(ss, s, g, size, align, zero)
                        .unwrap_or(ptr::null_mut());
                }
                ss = (*ss).next;
            }
        }
        let Some(ss) = self.map_superslab() else {
            return ptr::null_mut();
        };
        // SAFETY: a fresh SuperSlab, live and owned.
        unsafe {
            match self.carve_medium(ss, need) {
                Some(s) => self
                    .take_medium(ss, s, g, size, align, zero)
                    .unwrap_or(ptr::null_mut()),
                None => {
                    // Too large for any medium slab: give the SuperSlab back.
                    self.on_empty_unused(ss);
                    ptr::null_mut()
                }
            }
        }
    }

    /// A SuperSlab mapped for nothing: counted empty since `map_superslab`;
    /// released now if the retain policy says so.
    ///
    /// # Safety
    /// `ss` is a live owned SuperSlab with `live == 0`.
    unsafe fn on_empty_unused(&mut self, ss: *mut SuperSlab) {
        if self.n.empty > self.cfg.retain {
            // SAFETY: per the caller.
            unsafe { self.release_superslab(ss) };
        }
    }

    /// The medium slab and free block that hold `want` granules best, over
    /// every arena: a block of the request's own bin that fits, else one of
    /// the smallest non-empty bin all of whose blocks fit (found through the
    /// index), else (for slabs the index does not hold) the first fit.
    ///
    /// # Safety
    /// The medium list is the heap's.
    #[inline(always)]
    unsafe fn best_fit(&mut self, want: u32) -> Option<Fit> {
        let own = bin_of(want);
        let up = bin_up(want);
        // SAFETY: indexed slabs are medium slabs of live owned SuperSlabs.
        unsafe {
            if own != up && (own as usize) < MAX_BINS as usize {
                // A block of the request's own bin that fits.
                let mut ks = self.medium.bins[own as usize];
                while ks != 0 {
                    let k = ks.trailing_zeros() as usize;
                    ks &= ks - 1;
                    let s = self.medium.slabs[k];
                    let v = View::of(arena_of(self.superslab_of(s.cast()), s));
                    if let Some(i) = Arena::find_own(v, want) {
                        return Some((s, v, i));
                    }
                }
            }
            if let Some(bin) = first_bin(self.medium.any, up) {
                let k = self.medium.bins[bin as usize].trailing_zeros() as usize;
                let s = self.medium.slabs[k];
                let v = View::of(arena_of(self.superslab_of(s.cast()), s));
                return Some((s, v, Arena::best_of_bin(v, bin, BEST_SCAN)));
            }
            if self.medium.overflow == 0 {
                return None;
            }
            // The slabs the index does not hold.
            let mut s = self.partial[MEDIUM_CLASS as usize];
            while !s.is_null() {
                if (*s).inv == NOT_INDEXED {
                    let a = arena_of(self.superslab_of(s.cast()), s);
                    if let Some((i, _)) = Arena::find(a, want) {
                        return Some((s, View::of(a), i));
                    }
                }
                s = (*s).next;
            }
        }
        None
    }

    /// Runs `f` on the arena of medium slab `s` and brings the index up
    /// to date with its bins.
    ///
    /// # Safety
    /// `s` is a medium slab of a live owned SuperSlab; `f` keeps its arena
    /// valid.
    #[inline]
    pub(crate) unsafe fn with_arena<R>(
        &mut self,
        s: *mut Slab,
        f: impl FnOnce(*mut Arena) -> R,
    ) -> R {
        // SAFETY: per the caller.
        unsafe {
            let v = View::of(arena_of(self.superslab_of(s.cast()), s));
            self.with_view(s, v, |v| f(v.a))
        }
    }

    /// Runs `f` on `v`, the view of medium slab `s`'s arena, and brings the
    /// index up to date with its bins.
    ///
    /// # Safety
    /// As [`with_arena`](Self::with_arena); `v` is the view of `s`'s arena.
    #[inline(always)]
    unsafe fn with_view<R>(&mut self, s: *mut Slab, v: View, f: impl FnOnce(View) -> R) -> R {
        // SAFETY: per the caller.
        unsafe {
            let old = (*v.a).mask;
            let r = f(v);
            self.sync_index(s, v.a, old);
            r
        }
    }

    /// Brings the index up to date with the bins of medium slab `s`'s
    /// arena `a`, which were `old` before the operation.
    ///
    /// # Safety
    /// `s` is a medium slab of a live owned SuperSlab, `a` its arena.
    #[inline(always)]
    unsafe fn sync_index(&mut self, s: *mut Slab, a: *const Arena, old: [u64; 2]) {
        // SAFETY: per the caller.
        unsafe {
            let k = (*s).inv;
            if k != NOT_INDEXED && (*a).mask != old {
                self.medium.sync(k as usize, old, (*a).mask);
            }
        }
    }

    /// Gives medium slab `s` an index (or counts it as not indexed).
    ///
    /// # Safety
    /// `s` is a new medium slab of a live owned SuperSlab, its arena built.
    unsafe fn medium_index(&mut self, s: *mut Slab) {
        let free = !self.medium.used;
        // SAFETY: per the caller.
        unsafe {
            if free == 0 {
                (*s).inv = NOT_INDEXED;
                self.medium.overflow += 1;
                return;
            }
            let k = free.trailing_zeros() as usize;
            (*s).inv = k as u64;
            self.medium.used |= 1 << k;
            self.medium.slabs[k] = s;
            let a = arena_of(self.superslab_of(s.cast()), s);
            self.medium.sync(k, [0; 2], (*a).mask);
        }
    }

    /// Takes medium slab `s` out of the index (its units are being given
    /// back).
    ///
    /// # Safety
    /// `s` is a medium slab of a live owned SuperSlab.
    pub(crate) unsafe fn medium_unindex(&mut self, s: *mut Slab) {
        // SAFETY: per the caller.
        unsafe {
            let k = (*s).inv;
            if k == NOT_INDEXED {
                self.medium.overflow -= 1;
                return;
            }
            let a = arena_of(self.superslab_of(s.cast()), s);
            self.medium.sync(k as usize, (*a).mask, [0; 2]);
            self.medium.used &= !(1 << k);
            self.medium.slabs[k as usize] = ptr::null_mut();
        }
    }

    /// Whether the medium index agrees with the arenas (for `Heap::check`).
    pub(crate) fn medium_index_ok(&self) -> bool {
        let mut n = 0usize;
        let mut s = self.partial[MEDIUM_CLASS as usize];
        // SAFETY: list members are medium slabs of live owned SuperSlabs.
        unsafe {
            while !s.is_null() {
                let k = (*s).inv;
                if k == NOT_INDEXED {
                    n += 1;
                } else if k as usize >= INDEXED
                    || self.medium.used >> k & 1 == 0
                    || self.medium.slabs[k as usize] != s
                {
                    return false;
                }
                s = (*s).next;
            }
            let listed = {
                let mut c = 0;
                let mut s = self.partial[MEDIUM_CLASS as usize];
                while !s.is_null() {
                    c += 1;
                    s = (*s).next;
                }
                c
            };
            n == self.medium.overflow
                && listed == n + self.medium.used.count_ones() as usize
                && self
                    .medium
                    .check(|s| Arena::bins_mask(arena_of(self.superslab_of(s.cast()), s)))
        }
    }

    /// Allocates from the free block `i` of medium slab `s` (as `best_fit`
    /// found it), counting the block.
    ///
    /// # Safety
    /// `s` is a medium slab of a live owned SuperSlab, `v` its arena's view,
    /// `i` a free block of its arena that `Arena::find` returned for these
    /// `g` and `align`.
    #[inline(always)]
    unsafe fn take_medium_at(
        &mut self,
        (s, v, i): Fit,
        g: u32,
        size: usize,
        align: usize,
        zero: bool,
    ) -> *mut u8 {
        // SAFETY: per the caller.
        unsafe {
            let old = (*v.a).mask;
            let (j, _) = Arena::alloc_in(v, i, g, align);
            self.sync_index(s, v.a, old);
            self.count_alloc(s);
            let p = v.granule(j);
            if zero {
                ptr::write_bytes(p, 0, size);
            }
            p
        }
    }

    /// Allocates from medium slab `s` of `ss`, counting the block; `None`
    /// if it has no room.
    ///
    /// # Safety
    /// `s` is a medium slab of the live owned SuperSlab `ss`.
    unsafe fn take_medium(
        &mut self,
        ss: *mut SuperSlab,
        s: *mut Slab,
        g: u32,
        size: usize,
        align: usize,
        zero: bool,
    ) -> Option<*mut u8> {
        // SAFETY: per the caller.
        unsafe {
            let a = arena_of(ss, s);
            let (i, _) = self.with_arena(s, |a| Arena::alloc(a, g, align))?;
            self.count_alloc(s);
            let p = Arena::granule(a, i);
            if zero {
                ptr::write_bytes(p, 0, size);
            }
            Some(p)
        }
    }

    /// Makes a medium slab over the longest free run of units of `ss`,
    /// if its arena can hold `need` bytes in one block (empty slabs give
    /// their units back first when it cannot); links it first in the
    /// medium list.
    ///
    /// # Safety
    /// `ss` is a live owned SuperSlab.
    pub(crate) unsafe fn carve_medium(
        &mut self,
        ss: *mut SuperSlab,
        need: usize,
    ) -> Option<*mut Slab> {
        let unit = self.geo.unit_size();
        let mut reclaimed = false;
        // SAFETY: `ss` is live and ours (caller).
        unsafe {
            loop {
                let free = (*ss).free_units;
                let mut k = free.count_ones();
                let mut run = None;
                while k > 0 {
                    if let Some(first) = find_run(free, k) {
                        run = Some((first, k));
                        break;
                    }
                    k -= 1;
                }
                if let Some((first, span)) = run {
                    let lo = (first as usize * unit).max(self.geo.header_bytes as usize);
                    let hi = (first + span) as usize * unit;
                    if hi > lo && (granules_for(hi - lo) as usize) << GRANULE_SHIFT >= need {
                        return self.make_medium(ss, first, span, lo, hi);
                    }
                }
                if reclaimed || (*ss).empty_units == 0 {
                    return None;
                }
                self.release_empty_slabs(ss);
                reclaimed = true;
            }
        }
    }

    /// Assigns units `first .. first + span` of `ss` (free) to a new medium
    /// slab whose arena spans `[lo, hi)`.
    ///
    /// # Safety
    /// `ss` is a live owned SuperSlab and the units are free.
    unsafe fn make_medium(
        &mut self,
        ss: *mut SuperSlab,
        first: u32,
        span: u32,
        lo: usize,
        hi: usize,
    ) -> Option<*mut Slab> {
        // SAFETY: per the caller.
        unsafe {
            let fresh = self.claim_units(ss, first, span)?;
            let slab = SuperSlab::slab(ss, first as usize);
            slab.write(Slab {
                free: ptr::null_mut(),
                inv: 0,
                remote: RemoteList::new(),
                next: ptr::null_mut(),
                prev: ptr::null_mut(),
                used: 0,
                // An empty block range: the small tier refuses every pointer.
                bump: AtomicU32::new(0),
                start: 0,
                // The arena's offset.
                end: lo as u32,
                size: GRANULE as u32,
                class: MEDIUM_CLASS,
                span: span as u8,
                head: first as u8,
                flags: 0,
            });
            Arena::init(ss, lo, hi - lo, fresh && P::MAPS_ZEROED);
            self.link_partial_head(slab);
            self.medium_index(slab);
            Some(slab)
        }
    }

    /// The free of a pointer the small tier refused (`kind`): a held medium
    /// block goes back to its arena; anything else is the error.
    ///
    /// # Safety
    /// `slab` is the unit record of the live owned SuperSlab `ss` that
    /// `ptr` lies in.
    #[cold]
    #[inline(never)]
    pub(crate) unsafe fn free_uncarved(
        &mut self,
        ss: *mut SuperSlab,
        slab: *mut Slab,
        ptr: *mut u8,
        kind: FreeErrorKind,
    ) -> Result<(), FreeError> {
        let p = ptr as usize;
        let err = |kind| FreeError { ptr: p, kind };
        // SAFETY: per the caller.
        unsafe {
            if (*slab).class != MEDIUM_CLASS {
                return Err(err(kind));
            }
            let v = View::of(arena_of(ss, slab));
            let (i, g) = Arena::held_in(v, p).map_err(err)?;
            self.free_held(slab, v, i, g);
        }
        Ok(())
    }

    /// Frees the held block at granule `i` (`g` granules) of medium slab
    /// `slab` of `ss`, which this heap owns (`realloc` found it with
    /// `Arena::held_block` before it moved the block).
    ///
    /// # Safety
    /// `slab` is a medium slab of the live SuperSlab `ss`, owned by this
    /// heap, and `i` starts a held block of `g` granules of its arena.
    pub(crate) unsafe fn free_medium_at(
        &mut self,
        ss: *mut SuperSlab,
        slab: *mut Slab,
        i: u32,
        g: u32,
    ) {
        // SAFETY: per the caller.
        unsafe { self.free_held(slab, View::of(arena_of(ss, slab)), i, g) }
    }

    /// Frees held block `i` (`g` granules) of the arena `v` of medium slab
    /// `slab` and counts it.
    ///
    /// # Safety
    /// As [`free_medium_at`](Self::free_medium_at); `v` is `slab`'s arena.
    #[inline(always)]
    unsafe fn free_held(&mut self, slab: *mut Slab, v: View, i: u32, g: u32) {
        // SAFETY: per the caller.
        unsafe {
            let old = (*v.a).mask;
            Arena::free_in(v, i, g);
            self.sync_index(slab, v.a, old);
            // Last: counting may empty the SuperSlab and release it.
            self.count_free(slab, 1);
        }
    }

    /// Takes the remote list `head` of medium slab `slab` back into its
    /// arena. Returns how many blocks.
    ///
    /// # Safety
    /// `slab` is a medium slab of the live owned SuperSlab `ss`; `head` is
    /// its whole remote list, just taken: marked, counted held blocks.
    pub(crate) unsafe fn collect_medium(
        &mut self,
        ss: *mut SuperSlab,
        slab: *mut Slab,
        head: *mut Block,
    ) -> u32 {
        let mut n = 0;
        // SAFETY: per the caller; each block's tag is checked before its
        // link is followed.
        unsafe {
            let a = arena_of(ss, slab);
            let mut b = head;
            while !b.is_null() {
                if (*b).tag != free_tag(b.cast()) {
                    corrupted(b.cast());
                }
                let next = (*b).next;
                let Some(i) = Arena::index_of(a, b as usize) else {
                    corrupted(b.cast());
                };
                let g = Arena::block_granules(a, i);
                self.with_arena(slab, |a| Arena::free(a, i, g));
                n += 1;
                b = next;
            }
        }
        n
    }

    /// Resizes a held medium block of this heap in place (see
    /// [`Arena::resize_in`]); `false` (nothing changed) if it cannot, or another
    /// heap owns it.
    ///
    /// # Safety
    /// `ptr` is a held medium block of slab `slab` of the live SuperSlab
    /// `ss`, starting at granule `i`, `g` granules.
    pub(crate) unsafe fn resize_medium(
        &mut self,
        ss: *mut SuperSlab,
        slab: *mut Slab,
        i: u32,
        g: u32,
        new_size: usize,
    ) -> bool {
        // SAFETY: per the caller; only the owner changes an arena.
        unsafe {
            if (*ss).owner.load(Ordering::Relaxed) != self.id {
                return false;
            }
            let Some(want) = granules_of(new_size) else {
                return false;
            };
            let v = View::of(arena_of(ss, slab));
            let old = (*v.a).mask;
            let r = Arena::resize_in(v, i, g, want);
            self.sync_index(slab, v.a, old);
            r.is_some()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_are_monotonic_and_bin_up_fits() {
        let n = if cfg!(miri) { 3000 } else { 100_000u32 };
        // first[b]: the smallest size in bin b.
        let mut first = [0u32; MAX_BINS as usize + 1];
        let mut last = 0;
        for g in 1..n {
            let b = bin_of(g);
            assert!(b >= last && b <= last + 1, "g {g}");
            if b != last || g == 1 {
                first[b as usize] = g;
            }
            last = b;
        }
        for g in 1..n / 2 {
            // Every block in bin_up(g) or above holds g.
            let up = bin_up(g);
            assert!(first[up as usize] >= g, "g {g}");
            assert!(up <= bin_of(g) + 1);
        }
        assert!(bin_of(1 << 26) < MAX_BINS);
    }

    #[test]
    fn metadata_is_small() {
        for bytes in [15usize << 10, 64 << 10, 2 << 20, 8 << 20] {
            let g = granules_for(bytes);
            let lost = bytes - g as usize * GRANULE;
            assert!(lost * 32 < bytes, "{bytes}: {lost}");
            assert!(meta_bytes(g) + g as usize * GRANULE <= bytes);
        }
    }
}
