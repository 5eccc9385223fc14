//! From a pointer to the metadata that owns it, checking on the way that it
//! is a live block.
//!
//! Every region a heap maps starts on a SuperSlab boundary with a header:
//! a SuperSlab, or a large block whose user pointer lies in its first
//! SuperSlab-sized window. The one exception is a large block aligned to the
//! SuperSlab size or more, whose user pointer *is* on a boundary; its header
//! sits one SuperSlab size below the pointer. So a pointer on a boundary is
//! a large block or nothing (small blocks never start at offset 0: the
//! header is there), and any other pointer's header is at its masked
//! address. Headers are read only after `PageSource::contains` said the
//! address is live, and are recognised by a magic XORed with their address.

use crate::config::Geometry;
use crate::error::FreeErrorKind;
use crate::large::LargeBlock;
use crate::medium::{arena_of, Arena, MEDIUM_CLASS};
use crate::page_source::PageSource;
use crate::slab::{divides, Slab};
#[cfg(feature = "hardened")]
use crate::superslab::LARGE_FORWARD_MAGIC;
use crate::superslab::{SuperSlab, LARGE_MAGIC, SS_MAGIC};
use core::sync::atomic::Ordering;

/// What a pointer belongs to.
pub(crate) enum Found {
    /// A block of a slab of a SuperSlab (any owner).
    Small {
        /// The SuperSlab.
        ss: *mut SuperSlab,
        /// The block's slab.
        slab: *mut Slab,
    },
    /// A large block (any owner).
    Large(*mut LargeBlock),
}

/// Finds the owner of `ptr` and checks that it is the start of a block.
/// Does not check the owner-only parts (uncarved memory, double free).
///
/// # Safety
/// The source's `contains` is truthful (a `PageSource` promise).
#[inline(always)]
pub(crate) unsafe fn locate<P: PageSource>(
    source: &P,
    geo: &Geometry,
    ptr: *mut u8,
) -> Result<Found, FreeErrorKind> {
    let p = ptr as usize;
    let ss_size = geo.superslab_size();
    let base = p & geo.superslab_mask();
    // Hardened: where the source knows region starts, a header is read only
    // at one (or one SuperSlab below a SuperSlab-aligned pointer, checked
    // by its magic and user pointer); anything else is a region's body.
    #[cfg(feature = "hardened")]
    if let Some(start) = source.region_start(p) {
        let found = if base == p || base == start {
            // SAFETY: forwarded; `locate_at_headers` checks `contains` itself.
            unsafe { locate_at_headers(source, geo, ptr, p, base, ss_size) }
        } else {
            Err(FreeErrorKind::NotOurs)
        };
        return match found {
            Err(FreeErrorKind::NotOurs) => {
                // SAFETY: `start` is a live region's start.
                Err(unsafe { classify_body(ptr.with_addr(start), p) })
            }
            other => other,
        };
    }
    // SAFETY: forwarded.
    unsafe { locate_at_headers(source, geo, ptr, p, base, ss_size) }
}

/// The cheap lookup: the header is at `base`, or one SuperSlab below a
/// SuperSlab-aligned pointer.
///
/// Inlined into each caller (the remote free, `dealloc_slow`, `realloc`'s
/// lookup): out of line, its three-word result went back through memory
/// and its frame cost a tenth of a cross-thread free's instructions.
///
/// # Safety
/// As [`locate`].
#[inline(always)]
unsafe fn locate_at_headers<P: PageSource>(
    source: &P,
    geo: &Geometry,
    ptr: *mut u8,
    p: usize,
    base: usize,
    ss_size: usize,
) -> Result<Found, FreeErrorKind> {
    if base == p {
        if p < ss_size || !source.contains(p - ss_size) {
            return Err(FreeErrorKind::NotOurs);
        }
        let h = ptr.wrapping_sub(ss_size).cast::<LargeBlock>();
        // SAFETY: `contains` vouched that the address is mapped by us.
        return unsafe {
            if (*h).magic == LARGE_MAGIC ^ (h as usize) && (*h).user == p {
                Ok(Found::Large(h))
            } else {
                Err(FreeErrorKind::NotOurs)
            }
        };
    }
    // The common case first: a SuperSlab's block.
    // SAFETY: forwarded.
    if let Some(ss) = unsafe { superslab_at(source, ptr, base) } {
        // SAFETY: a live SuperSlab header, `p` inside it.
        let slab = unsafe { SuperSlab::slab_of(ss, p, geo.unit_shift) };
        // SAFETY: as above.
        unsafe { check_block(ss, slab, p)? };
        return Ok(Found::Small { ss, slab });
    }
    if !source.contains(base) {
        return Err(FreeErrorKind::NotOurs);
    }
    let header = ptr.with_addr(base);
    // SAFETY: `contains` vouched that `base` is mapped by us; every region
    // starts with a header there (see module doc).
    let magic = unsafe { *header.cast::<usize>() };
    if magic == LARGE_MAGIC ^ base {
        let h = header.cast::<LargeBlock>();
        // SAFETY: a live large block header.
        let (user, end) = unsafe { ((*h).user, (*h).base as usize + (*h).map_size) };
        return if user == p {
            Ok(Found::Large(h))
        } else if p > user && p < end {
            Err(FreeErrorKind::Interior)
        } else {
            Err(FreeErrorKind::NotAllocated)
        };
    }
    Err(FreeErrorKind::NotOurs)
}

/// The SuperSlab whose header is at `base` (the masked address of a
/// pointer `ptr` that is not itself on a boundary), if the source maps
/// `base` and a SuperSlab's magic is there; `None` for anything else (a
/// large block's header, memory not ours).
///
/// # Safety
/// As [`locate`].
#[inline(always)]
pub(crate) unsafe fn superslab_at<P: PageSource>(
    source: &P,
    ptr: *mut u8,
    base: usize,
) -> Option<*mut SuperSlab> {
    if !source.contains(base) {
        return None;
    }
    let header = ptr.with_addr(base);
    // SAFETY: `contains` vouched that `base` is mapped by us; every region
    // starts with a header there (see module doc).
    let magic = unsafe { *header.cast::<usize>() };
    (magic == SS_MAGIC ^ base).then_some(header.cast::<SuperSlab>())
}

/// Says what `p`, which lies in the region starting at `start` but not at a
/// header position, is: the inside of a large block, or not a block.
///
/// # Safety
/// `start` is the start of a live region of the source.
#[cfg(feature = "hardened")]
unsafe fn classify_body(start: *mut u8, p: usize) -> FreeErrorKind {
    // SAFETY: every region starts with a header or a forward to one
    // (module doc).
    let magic = unsafe { *start.cast::<usize>() };
    let header = if magic == LARGE_MAGIC ^ start as usize {
        start.cast::<LargeBlock>()
    } else if magic == LARGE_FORWARD_MAGIC ^ start as usize {
        // SAFETY: a forward's second word is its block's header address.
        unsafe { *start.cast::<*mut LargeBlock>().add(1) }
    } else {
        return FreeErrorKind::NotAllocated;
    };
    // SAFETY: a live large block header.
    let (user, end) = unsafe { ((*header).user, (*header).base as usize + (*header).map_size) };
    if p > user && p < end {
        FreeErrorKind::Interior
    } else {
        FreeErrorKind::NotAllocated
    }
}

/// Checks that `p` is a block of `slab` (of `ss`): a carved slab block, or
/// a held medium block.
///
/// # Safety
/// `slab` is the unit record of the live SuperSlab `ss` holding `p`.
#[inline]
pub(crate) unsafe fn check_block(
    ss: *mut SuperSlab,
    slab: *const Slab,
    p: usize,
) -> Result<(), FreeErrorKind> {
    // SAFETY: per the caller.
    unsafe {
        match check_carved(slab, p - ss as usize) {
            Err(kind) if (*slab).class == MEDIUM_CLASS => {
                let _ = kind;
                Arena::check_held(arena_of(ss, slab), p).map(|_| ())
            }
            other => other,
        }
    }
}

/// Checks that offset `off` (from the SuperSlab start) is the start of a
/// carved block of the slab `slab`: inside `[start, bump)` and a whole
/// number of blocks from `start` (no division: one multiplication by the
/// slab's reciprocal). A free unit's record has `start == bump == 0`, so it
/// refuses every offset.
///
/// Reads only the fields fixed while the slab is assigned (and the bump
/// pointer, atomically), each through the raw pointer, so it may run while
/// the owner updates the others.
///
/// # Safety
/// `slab` is a unit record of a live SuperSlab.
#[inline(always)]
pub(crate) unsafe fn check_carved(slab: *const Slab, off: usize) -> Result<(), FreeErrorKind> {
    // SAFETY: per the caller; `bump` is atomic, as other threads read it.
    let (start, bump, inv) = unsafe {
        (
            (*slab).start,
            (*slab).bump.load(Ordering::Relaxed),
            (*slab).inv,
        )
    };
    // One comparison refuses both what lies before the slab and what lies
    // past its bump pointer (uncarved memory, the slab's tail).
    let rel = off.wrapping_sub(start as usize);
    if rel >= bump.wrapping_sub(start) as usize {
        return Err(FreeErrorKind::NotAllocated);
    }
    if !divides(rel as u64, inv) {
        return Err(FreeErrorKind::Interior);
    }
    Ok(())
}
