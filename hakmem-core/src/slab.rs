//! A slab: a run of slab units inside one SuperSlab that serves one size
//! class at a time, and the intrusive block lists it threads through freed
//! blocks.
//!
//! A slab's memory is carved lazily: `bump` moves forward one block at a
//! time, so memory past it is never written before it is handed out. Freed
//! blocks (back from a magazine or from remote frees) go on the slab's own
//! free list. When a slab holds no block and caches none, its units go back
//! to the SuperSlab and may serve another class.
//!
//! Invariants (per assigned slab; checked by `check.rs`):
//! - `used + free_count == carved`, where `carved = (bump - start) / size`
//!   and `used` counts the blocks off the free list: held by the application,
//!   pending in the SuperSlab's remote list, or cached in the owner's
//!   magazine. (Magazine pushes and pops do not touch the slab at all; the
//!   exact held counts live in the SuperSlab and the heap's per-class
//!   counters.)
//! - `start <= bump <= end`, `end - start == capacity * size`;
//! - in its class's partial list iff `IN_PARTIAL` is set, which is iff it has
//!   a free or uncarved block.

use core::ptr;
use core::sync::atomic::{AtomicPtr, AtomicU32, Ordering};

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

/// What hakmem says when it stops on heap corruption.
pub const CORRUPTION_MESSAGE: &str =
    "a free block was overwritten (use after free, or a double free after a write)";

/// The handler [`corrupted`] calls; null: panic.
static CORRUPTION_HANDLER: AtomicPtr<()> = AtomicPtr::new(ptr::null_mut());

/// Installs the function called when a free block is found overwritten
/// (instead of panicking, which allocates: a backend serving the global
/// allocator reports and aborts without allocating). It receives the
/// block's address and must not return.
pub fn set_corruption_handler(handler: fn(usize) -> !) {
    CORRUPTION_HANDLER.store(handler as *mut (), Ordering::Release);
}

/// Stops on a free block that was written after it was freed (its free tag
/// is gone, so the link beside it cannot be trusted): a use after free, or a
/// double free after such a write. Never returns.
#[cold]
#[inline(never)]
pub(crate) fn corrupted(block: *mut u8) -> ! {
    let h = CORRUPTION_HANDLER.load(Ordering::Acquire);
    if !h.is_null() {
        // SAFETY: only `set_corruption_handler` stores here, from a
        // `fn(usize) -> !`.
        let f: fn(usize) -> ! = unsafe { core::mem::transmute::<*mut (), fn(usize) -> !>(h) };
        f(block as usize);
    }
    panic!(
        "hakmem: heap corruption at {:#x}: {}",
        block as usize, CORRUPTION_MESSAGE
    )
}

/// Slab flag: linked into its class's partial list.
pub(crate) const IN_PARTIAL: u8 = 1;
/// Slab flag: memory past `bump` has never been written since it was mapped
/// (or decommitted), so it reads as zero when the source maps zeroed pages.
pub(crate) const FRESH: u8 = 2;
/// `class` of a unit that begins no slab.
pub(crate) const NO_CLASS: u8 = u8::MAX;

/// Shift of the reciprocal used to divide block offsets by the block size.
pub(crate) const INV_SHIFT: u32 = 40;

/// Metadata of one slab unit; for the first unit of a slab, the slab's.
#[repr(C)]
pub(crate) struct Slab {
    /// Local free list.
    pub free: *mut Block,
    /// Partial-list links.
    pub next: *mut Slab,
    /// Partial-list links.
    pub prev: *mut Slab,
    /// `ceil(2^INV_SHIFT / size)`: `(off * inv) >> INV_SHIFT == off / size`
    /// for every offset below 2^23 (see `config::MAX_SUPERSLAB_SHIFT`).
    pub inv: u64,
    /// Offset of block 0 from the SuperSlab start.
    pub start: u32,
    /// Offset of the first uncarved block. Written by the owner only;
    /// atomic (relaxed) because remote frees read it to refuse uncarved
    /// memory.
    pub bump: AtomicU32,
    /// Offset just past the last block.
    pub end: u32,
    /// Block size.
    pub size: u32,
    /// Blocks off the free list (held, pending or cached).
    pub used: u32,
    /// Blocks on `free`.
    pub free_count: u32,
    /// Size class, or [`NO_CLASS`].
    pub class: u8,
    /// Units this slab spans.
    pub span: u8,
    /// Index of the unit that begins the slab this unit belongs to (its own
    /// index when it begins one or is free).
    pub head: u8,
    /// `IN_PARTIAL` | `FRESH`.
    pub flags: u8,
}

impl Slab {
    /// A free unit's metadata.
    pub const fn unassigned(index: u8) -> Slab {
        Slab {
            free: ptr::null_mut(),
            next: ptr::null_mut(),
            prev: ptr::null_mut(),
            inv: 0,
            start: 0,
            bump: AtomicU32::new(0),
            end: 0,
            size: 0,
            used: 0,
            free_count: 0,
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
        let rel = off - self.start as usize;
        let idx = ((rel as u64 * self.inv) >> INV_SHIFT) as usize;
        (idx, idx * self.size as usize == rel)
    }

    /// Whether the slab has a free or uncarved block.
    #[inline(always)]
    pub fn has_room(&self) -> bool {
        !self.free.is_null() || self.bump.load(Ordering::Relaxed) < self.end
    }
}

/// The reciprocal stored in [`Slab::inv`] for blocks of `size` bytes.
pub(crate) const fn reciprocal(size: u32) -> u64 {
    (1u64 << INV_SHIFT).div_ceil(size as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::size_class::{class_size, NUM_CLASSES};

    #[test]
    fn reciprocal_division_is_exact_below_8_mib() {
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
