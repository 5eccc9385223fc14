//! Hardened zero-size blocks for the C ABI: `malloc(0)` (and `calloc` of
//! nothing, `aligned_alloc(a, 0)` for `a <= 16`) returns a unique address
//! inside a reserved no-access region, so any read or write through it
//! faults (the catalogue's `zero-read-*` and `zero-write-*` cases), while
//! `free`, `realloc` and `malloc_usable_size` still take it.
//!
//! The region is address space only: 64 MiB with no access (no memory
//! behind it) gives 4 Mi slots of 16 bytes, each used once; a bitmap of
//! 512 KiB (memory only where touched) says which are live, so a double or
//! invalid free of a zero-size block is reported like any other. When the
//! slots run out (or the reservation fails), zero-size requests go back to
//! the heap, whose hardened blocks still watch their slack.

use core::ptr;
use core::sync::atomic::{AtomicUsize, Ordering};

use hakmem_core::{FreeError, FreeErrorKind};
use rustix::mm::{mmap_anonymous, MapFlags, ProtFlags};

/// Bytes of the no-access region.
const REGION: usize = 64 << 20;
/// Bytes per slot (`malloc`'s alignment).
const SLOT: usize = 16;
/// Slots in the region.
const SLOTS: usize = REGION / SLOT;
/// Bits per bitmap word.
const BITS: usize = usize::BITS as usize;

/// Start of the region; 0: not reserved yet; 1: the reservation failed.
static BASE: AtomicUsize = AtomicUsize::new(0);
/// The live-slot bitmap (valid once `BASE` is a region).
static LIVE: AtomicUsize = AtomicUsize::new(0);
/// Next unused slot.
static NEXT: AtomicUsize = AtomicUsize::new(0);

/// The region and its bitmap, reserved on first use.
fn region() -> Option<(usize, *const AtomicUsize)> {
    let b = BASE.load(Ordering::Acquire);
    if b > 1 {
        return Some((b, LIVE.load(Ordering::Relaxed) as *const AtomicUsize));
    }
    if b == 1 {
        return None;
    }
    // SAFETY: fresh anonymous mappings alias nothing.
    let (base, bits) = unsafe {
        let base = mmap_anonymous(
            ptr::null_mut(),
            REGION,
            ProtFlags::empty(),
            MapFlags::PRIVATE | MapFlags::NORESERVE,
        );
        let bits = mmap_anonymous(
            ptr::null_mut(),
            SLOTS / 8,
            ProtFlags::READ | ProtFlags::WRITE,
            MapFlags::PRIVATE | MapFlags::NORESERVE,
        );
        match (base, bits) {
            (Ok(b), Ok(m)) => (b as usize, m as usize),
            _ => {
                // A failed half stays mapped: address space, never touched.
                BASE.store(1, Ordering::Release);
                return None;
            }
        }
    };
    LIVE.store(bits, Ordering::Relaxed);
    match BASE.compare_exchange(0, base, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => Some((base, bits as *const AtomicUsize)),
        // Another thread reserved first; ours stays unused (address space).
        Err(_) => region(),
    }
}

/// A fresh zero-size block, or `None` (use the heap).
pub(crate) fn alloc() -> Option<*mut u8> {
    let (base, bits) = region()?;
    let i = NEXT.fetch_add(1, Ordering::Relaxed);
    if i >= SLOTS {
        NEXT.store(SLOTS, Ordering::Relaxed);
        return None;
    }
    // SAFETY: `i < SLOTS`: inside the bitmap mapping.
    unsafe { (*bits.add(i / BITS)).fetch_or(1 << (i % BITS), Ordering::Relaxed) };
    Some(ptr::without_provenance_mut::<u8>(base + i * SLOT))
}

/// Whether `p` lies in the zero-size region (then only this module may
/// take it).
#[inline(always)]
pub(crate) fn contains(p: *mut u8) -> bool {
    let b = BASE.load(Ordering::Relaxed);
    (p as usize).wrapping_sub(b) < REGION && b > 1
}

/// The slot of `p` (in the region), checked live; `clear`: free it.
fn check(p: *mut u8, clear: bool) -> Result<(), FreeError> {
    let err = |kind| FreeError {
        ptr: p as usize,
        kind,
    };
    let (base, bits) = region().ok_or(err(FreeErrorKind::NotOurs))?;
    let off = p as usize - base;
    if off % SLOT != 0 {
        return Err(err(FreeErrorKind::Interior));
    }
    let i = off / SLOT;
    let bit = 1usize << (i % BITS);
    // SAFETY: `off < REGION`, so `i < SLOTS`: inside the bitmap mapping.
    let word = unsafe { &*bits.add(i / BITS) };
    let was = if clear {
        word.fetch_and(!bit, Ordering::Relaxed)
    } else {
        word.load(Ordering::Relaxed)
    };
    if was & bit == 0 {
        return Err(err(if i < NEXT.load(Ordering::Relaxed) {
            FreeErrorKind::DoubleFree
        } else {
            FreeErrorKind::NotAllocated
        }));
    }
    Ok(())
}

/// Frees the zero-size block `p` (`contains(p)`).
pub(crate) fn free(p: *mut u8) -> Result<(), FreeError> {
    check(p, true)
}

/// Checks that the zero-size block `p` (`contains(p)`) is live.
pub(crate) fn live(p: *mut u8) -> Result<(), FreeError> {
    check(p, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_size_blocks_are_unique_freeable_and_checked() {
        let a = alloc().expect("the region is reserved");
        let b = alloc().expect("a second slot");
        assert_ne!(a, b);
        assert!(contains(a) && contains(b));
        assert_eq!(a as usize % SLOT, 0);
        assert!(live(a).is_ok());
        assert_eq!(
            live(a.wrapping_add(1)).unwrap_err().kind,
            FreeErrorKind::Interior
        );
        free(a).unwrap();
        assert_eq!(free(a).unwrap_err().kind, FreeErrorKind::DoubleFree);
        assert_eq!(live(a).unwrap_err().kind, FreeErrorKind::DoubleFree);
        // A slot never handed out.
        let never = b.wrapping_add(SLOT * 1000);
        assert_eq!(free(never).unwrap_err().kind, FreeErrorKind::NotAllocated);
        free(b).unwrap();
        assert!(!contains(ptr::null_mut()));
    }
}
