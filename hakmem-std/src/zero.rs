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

/// Start of the region; [`UNRESERVED`], [`FAILED`] or [`RESERVING`] before
/// it is one.
static BASE: AtomicUsize = AtomicUsize::new(UNRESERVED);
/// [`BASE`]: not reserved yet.
const UNRESERVED: usize = 0;
/// [`BASE`]: the reservation failed.
const FAILED: usize = 1;
/// [`BASE`]: a thread is reserving the region (the others' zero-size
/// requests go to the heap meanwhile).
const RESERVING: usize = 2;
/// The live-slot bitmap (valid once `BASE` is a region).
static LIVE: AtomicUsize = AtomicUsize::new(0);
/// Next unused slot.
static NEXT: AtomicUsize = AtomicUsize::new(0);
/// The region's start as [`contains`] reads it (every `free` does):
/// [`NO_WINDOW`] until the region is reserved, so one subtraction and one
/// comparison tell a zero-size block, with no test of the state.
static WINDOW: AtomicUsize = AtomicUsize::new(NO_WINDOW);
/// [`WINDOW`] with no region: the last [`REGION`] bytes of the address
/// space, where no block lies.
const NO_WINDOW: usize = REGION.wrapping_neg();

/// The region and its bitmap, reserved on first use by one thread (the
/// first to claim [`RESERVING`]: a thread that lost the claim never
/// publishes its own bitmap over the winner's).
fn region() -> Option<(usize, *const AtomicUsize)> {
    let b = BASE.load(Ordering::Acquire);
    if b > RESERVING {
        return Some((b, LIVE.load(Ordering::Relaxed) as *const AtomicUsize));
    }
    if b != UNRESERVED
        || BASE
            .compare_exchange(UNRESERVED, RESERVING, Ordering::Acquire, Ordering::Acquire)
            .is_err()
    {
        // Failed, or another thread reserves it now: the heap serves this
        // request.
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
                BASE.store(FAILED, Ordering::Release);
                return None;
            }
        }
    };
    // The bitmap and the window before the base that publishes them (a
    // block of the region reaches another thread only after its `alloc`
    // read the base).
    LIVE.store(bits, Ordering::Relaxed);
    WINDOW.store(base, Ordering::Relaxed);
    BASE.store(base, Ordering::Release);
    Some((base, bits as *const AtomicUsize))
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
    (p as usize).wrapping_sub(WINDOW.load(Ordering::Relaxed)) < REGION
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

/// Frees the zero-size block `p` (`contains(p)`). Out of line and cold, so
/// that `free` itself stays small enough to be inlined into the exported
/// symbol.
#[cold]
#[inline(never)]
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
        assert!(!contains(ptr::without_provenance_mut(usize::MAX)));
        let (base, _) = region().expect("reserved");
        let base = ptr::without_provenance_mut::<u8>(base);
        assert!(contains(base) && contains(base.wrapping_add(REGION - 1)));
        assert!(!contains(base.wrapping_sub(1)) && !contains(base.wrapping_add(REGION)));
    }
}
