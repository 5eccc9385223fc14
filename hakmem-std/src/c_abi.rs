//! The C allocation API, for the `LD_PRELOAD` library (`hakmem-malloc`,
//! which only forwards `extern "C"` symbols here and sets `errno`).
//!
//! Semantics follow glibc's documentation: `malloc(0)` returns a unique
//! freeable pointer; `free(NULL)` does nothing; `calloc` checks `n * size`
//! for overflow; `realloc(p, 0)` frees `p` and returns NULL, `realloc(NULL,
//! n)` is `malloc(n)`; the aligned functions take any power-of-two
//! alignment, `posix_memalign` also requires a multiple of
//! `sizeof(void *)`. Every block is aligned to at least 16 bytes. An invalid
//! or double free, or a size query of such a pointer, prints
//! `hakmem: invalid free of 0x…: <fault>` on stderr and aborts.
//!
//! None of these functions starts the background thread (`malloc` may run
//! inside the dynamic loader, where creating a thread could deadlock); the
//! library's constructor calls [`init`], which does.

use hakmem_core::FastFree;

use crate::env::Config;
use crate::global::{self, alloc_or_trim, invalid_free, realloc_or_trim, with_heap};

/// The alignment of `malloc`'s blocks (glibc's `MALLOC_ALIGNMENT` on x86_64).
pub const MALLOC_ALIGN: usize = 16;

/// What went wrong, for `errno`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CError {
    /// `ENOMEM`: no memory.
    NoMemory,
    /// `EINVAL`: a bad alignment.
    Invalid,
}

#[inline(always)]
fn run<R>(f: impl FnOnce(&mut crate::heaps::StdHeap) -> R, fail: R) -> R {
    with_heap::<false, R>(&Config::DEFAULT, f, fail)
}

/// Sets the allocator up now, registers its `pthread_atfork` handlers and
/// starts the background thread (call from the library constructor). A
/// forked child restarts the background thread by itself, on its first
/// call.
pub fn init() {
    global::init_now(Config::DEFAULT);
}

/// `malloc`'s fast path alone: a block from the calling thread's current
/// slab of the size's class, or null when that path does not apply (then
/// [`malloc`] serves the request from the start). Always null in the
/// `hardened` build.
#[inline(always)]
pub fn malloc_fast(size: usize) -> *mut u8 {
    global::alloc_fast(size, MALLOC_ALIGN)
}

/// `free`'s fast path alone: [`FastFree::Done`] when `ptr` was a block of
/// the calling thread's own heap that went back on its slab's free list;
/// otherwise nothing changed, and [`free_unknown`] (for
/// [`FastFree::Unknown`]: a block of no SuperSlab the heap knows) or
/// [`free_general`] (for [`FastFree::Other`]) frees or reports it, with
/// every check made again. Always [`FastFree::Other`] in the `hardened`
/// build.
///
/// # Safety
/// As [`free`].
#[inline(always)]
pub unsafe fn free_fast(ptr: *mut u8) -> FastFree {
    // SAFETY: per the caller; a pointer the fast path cannot vouch for is
    // left to `free`.
    unsafe { global::free_fast(ptr) }
}

/// `malloc`. Null with `Err(NoMemory)` on failure.
#[inline]
pub fn malloc(size: usize) -> Result<*mut u8, CError> {
    #[cfg(feature = "hardened")]
    if size == 0 {
        if let Some(p) = crate::zero::alloc() {
            return Ok(p);
        }
    }
    let p = run(
        #[inline(always)]
        |h| {
            alloc_or_trim(
                h,
                #[inline(always)]
                |h| h.alloc(size, MALLOC_ALIGN),
            )
        },
        core::ptr::null_mut(),
    );
    if p.is_null() {
        Err(CError::NoMemory)
    } else {
        Ok(p)
    }
}

/// `calloc`: zeroed, `n * size` checked for overflow.
pub fn calloc(n: usize, size: usize) -> Result<*mut u8, CError> {
    let total = n.checked_mul(size).ok_or(CError::NoMemory)?;
    #[cfg(feature = "hardened")]
    if total == 0 {
        if let Some(p) = crate::zero::alloc() {
            return Ok(p);
        }
    }
    let p = run(
        #[inline(always)]
        |h| {
            alloc_or_trim(
                h,
                #[inline(always)]
                |h| h.alloc_zeroed(total, MALLOC_ALIGN),
            )
        },
        core::ptr::null_mut(),
    );
    if p.is_null() {
        Err(CError::NoMemory)
    } else {
        Ok(p)
    }
}

/// `free`. Aborts with a message on an invalid or double free.
///
/// # Safety
/// If `ptr` is a live block, nothing uses it afterwards.
#[inline]
pub unsafe fn free(ptr: *mut u8) {
    // SAFETY: per the caller.
    unsafe {
        match free_fast(ptr) {
            FastFree::Done => {}
            FastFree::Unknown => free_unknown(ptr),
            FastFree::Other => free_general(ptr),
        }
    }
}

/// [`free`] after its fast path ([`free_fast`]) said
/// [`FastFree::Unknown`]: a block in none of the thread's known
/// SuperSlabs — another thread's block, a large block — found through the
/// page source and freed; a bad pointer reported (the message, then abort).
///
/// # Safety
/// As [`free`].
#[inline]
pub unsafe fn free_unknown(ptr: *mut u8) {
    if let Err(e) = run(
        #[inline(always)]
        // SAFETY: per the caller; bad pointers are detected, not trusted.
        |h| unsafe { h.dealloc_unknown(ptr) },
        Ok(()),
    ) {
        invalid_free(e);
    }
}

/// [`free`] after its fast path ([`free_fast`]) refused `ptr`: every
/// check made, a bad pointer reported (the message, then abort).
///
/// # Safety
/// As [`free`].
#[inline]
pub unsafe fn free_general(ptr: *mut u8) {
    if ptr.is_null() {
        return;
    }
    #[cfg(feature = "hardened")]
    if crate::zero::contains(ptr) {
        if let Err(e) = crate::zero::free(ptr) {
            invalid_free(e);
        }
        return;
    }
    if let Err(e) = run(
        #[inline(always)]
        // SAFETY: per the caller; bad pointers are detected, not trusted.
        |h| unsafe { h.dealloc_general(ptr) },
        Ok(()),
    ) {
        invalid_free(e);
    }
}

/// `realloc`. `realloc(p, 0)` frees `p` and returns `Ok(null)`. On failure
/// the old block is untouched.
///
/// # Safety
/// As [`free`].
pub unsafe fn realloc(ptr: *mut u8, size: usize) -> Result<*mut u8, CError> {
    if ptr.is_null() {
        return malloc(size);
    }
    if size == 0 {
        // SAFETY: per the caller.
        unsafe { free(ptr) };
        return Ok(core::ptr::null_mut());
    }
    #[cfg(feature = "hardened")]
    if crate::zero::contains(ptr) {
        // Nothing to copy: a new block, then the zero-size one freed.
        if let Err(e) = crate::zero::live(ptr) {
            invalid_free(e);
        }
        let p = malloc(size)?;
        // SAFETY: `ptr` is a live zero-size block (checked).
        unsafe { free(ptr) };
        return Ok(p);
    }
    // SAFETY: per the caller; bad pointers are detected. An invalid one
    // aborts from inside (nothing runs after it), so the heap call hands
    // back a bare pointer, in a register.
    let resize = |h: &mut crate::heaps::StdHeap| match unsafe {
        realloc_or_trim(h, ptr, size, MALLOC_ALIGN)
    } {
        Ok(p) => p,
        Err(e) => invalid_free(e),
    };
    let p = run(resize, core::ptr::null_mut());
    if p.is_null() {
        Err(CError::NoMemory)
    } else {
        Ok(p)
    }
}

/// `reallocarray`: `realloc(ptr, n * size)` with the product checked.
///
/// # Safety
/// As [`free`].
pub unsafe fn reallocarray(ptr: *mut u8, n: usize, size: usize) -> Result<*mut u8, CError> {
    let total = n.checked_mul(size).ok_or(CError::NoMemory)?;
    // SAFETY: per the caller.
    unsafe { realloc(ptr, total) }
}

/// `aligned_alloc` / `memalign`: `align` must be a power of two.
pub fn aligned(align: usize, size: usize) -> Result<*mut u8, CError> {
    if !align.is_power_of_two() {
        return Err(CError::Invalid);
    }
    #[cfg(feature = "hardened")]
    if size == 0 && align <= MALLOC_ALIGN {
        if let Some(p) = crate::zero::alloc() {
            return Ok(p);
        }
    }
    let p = run(
        |h| alloc_or_trim(h, |h| h.alloc(size, align.max(MALLOC_ALIGN))),
        core::ptr::null_mut(),
    );
    if p.is_null() {
        Err(CError::NoMemory)
    } else {
        Ok(p)
    }
}

/// `posix_memalign`'s rule: a power of two and a multiple of the pointer size.
pub fn posix_memalign(align: usize, size: usize) -> Result<*mut u8, CError> {
    if !align.is_power_of_two() || align % core::mem::size_of::<usize>() != 0 {
        return Err(CError::Invalid);
    }
    aligned(align, size)
}

/// `valloc`: aligned to the system's page size ([`crate::page_size`]).
pub fn valloc(size: usize) -> Result<*mut u8, CError> {
    aligned(crate::page_size(), size)
}

/// `pvalloc`: aligned to the system's page size, size rounded up to whole
/// pages.
pub fn pvalloc(size: usize) -> Result<*mut u8, CError> {
    let page = crate::page_size();
    let rounded = size
        .max(1)
        .checked_next_multiple_of(page)
        .ok_or(CError::NoMemory)?;
    aligned(page, rounded)
}

/// `malloc_usable_size`: 0 for null; aborts with a message on a pointer that
/// is not a live block.
///
/// # Safety
/// `ptr` is null or a pointer the program got from this allocator.
pub unsafe fn usable_size(ptr: *mut u8) -> usize {
    if ptr.is_null() {
        return 0;
    }
    #[cfg(feature = "hardened")]
    if crate::zero::contains(ptr) {
        return match crate::zero::live(ptr) {
            Ok(()) => 0,
            Err(e) => invalid_free(e),
        };
    }
    // SAFETY: per the caller; bad pointers are detected.
    match run(|h| unsafe { h.usable_size(ptr) }, Ok(0)) {
        Ok(n) => n,
        Err(e) => invalid_free(e),
    }
}

/// Prints `hakmem: out of memory in <what>` on stderr and aborts: for an
/// entry point with no way to report failure (C++ `operator new` when no
/// C++ runtime can throw for it).
#[cold]
pub fn out_of_memory_abort(what: &str) -> ! {
    crate::stats::write_stderr(format_args!("hakmem: out of memory in {what}\n"));
    std::process::abort()
}
