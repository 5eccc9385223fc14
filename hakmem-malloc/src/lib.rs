//! `libhakmem.so`: hakmem as `malloc` for any Linux program,
//! `LD_PRELOAD=target/release/libhakmem.so program`.
//!
//! Only `extern "C"` forwards live here: each symbol calls
//! `hakmem_std::c_abi` and sets `errno` on failure. Being a crate of its
//! own, a Rust program that depends on hakmem-std never gets its `malloc`
//! replaced by accident.

use core::ffi::c_void;

use hakmem_std::c_abi::{self, CError};

const ENOMEM: i32 = 12;
const EINVAL: i32 = 22;

extern "C" {
    fn __errno_location() -> *mut i32;
}

fn code(e: CError) -> i32 {
    match e {
        CError::NoMemory => ENOMEM,
        CError::Invalid => EINVAL,
    }
}

/// Returns the pointer, or null with `errno` set.
#[inline(always)]
fn ptr_or_errno(r: Result<*mut u8, CError>) -> *mut c_void {
    match r {
        Ok(p) => p.cast(),
        Err(e) => {
            // SAFETY: glibc's errno location is valid for the calling thread.
            unsafe { *__errno_location() = code(e) };
            core::ptr::null_mut()
        }
    }
}

/// Library constructor: set up, register the fork handlers, start the
/// background thread. Runs once the C library is initialised.
extern "C" fn hakmem_init() {
    c_abi::init();
}

#[used]
#[link_section = ".init_array"]
static INIT: extern "C" fn() = hakmem_init;

/// C `malloc`.
#[no_mangle]
pub extern "C" fn malloc(size: usize) -> *mut c_void {
    ptr_or_errno(c_abi::malloc(size))
}

/// C `calloc`.
#[no_mangle]
pub extern "C" fn calloc(n: usize, size: usize) -> *mut c_void {
    ptr_or_errno(c_abi::calloc(n, size))
}

/// C `free`.
///
/// # Safety
/// C's contract for `free`.
#[no_mangle]
pub unsafe extern "C" fn free(ptr: *mut c_void) {
    // SAFETY: C's contract; bad pointers are detected and reported.
    unsafe { c_abi::free(ptr.cast()) }
}

/// C `realloc`.
///
/// # Safety
/// C's contract for `realloc`.
#[no_mangle]
pub unsafe extern "C" fn realloc(ptr: *mut c_void, size: usize) -> *mut c_void {
    // SAFETY: C's contract; bad pointers are detected and reported.
    ptr_or_errno(unsafe { c_abi::realloc(ptr.cast(), size) })
}

/// C `reallocarray`.
///
/// # Safety
/// C's contract for `reallocarray`.
#[no_mangle]
pub unsafe extern "C" fn reallocarray(ptr: *mut c_void, n: usize, size: usize) -> *mut c_void {
    // SAFETY: C's contract; bad pointers are detected and reported.
    ptr_or_errno(unsafe { c_abi::reallocarray(ptr.cast(), n, size) })
}

/// C `posix_memalign`: returns the error code, leaves `errno` alone.
///
/// # Safety
/// `out` is valid for a pointer write.
#[no_mangle]
pub unsafe extern "C" fn posix_memalign(out: *mut *mut c_void, align: usize, size: usize) -> i32 {
    match c_abi::posix_memalign(align, size) {
        Ok(p) => {
            // SAFETY: per the caller.
            unsafe { *out = p.cast() };
            0
        }
        Err(e) => code(e),
    }
}

/// C11 `aligned_alloc`.
#[no_mangle]
pub extern "C" fn aligned_alloc(align: usize, size: usize) -> *mut c_void {
    ptr_or_errno(c_abi::aligned(align, size))
}

/// Obsolete `memalign`.
#[no_mangle]
pub extern "C" fn memalign(align: usize, size: usize) -> *mut c_void {
    ptr_or_errno(c_abi::aligned(align, size))
}

/// Obsolete `valloc`: page-aligned.
#[no_mangle]
pub extern "C" fn valloc(size: usize) -> *mut c_void {
    ptr_or_errno(c_abi::valloc(size))
}

/// Obsolete `pvalloc`: page-aligned, size rounded up to pages.
#[no_mangle]
pub extern "C" fn pvalloc(size: usize) -> *mut c_void {
    ptr_or_errno(c_abi::pvalloc(size))
}

/// GNU `malloc_usable_size`.
///
/// # Safety
/// `ptr` is null or from this allocator.
#[no_mangle]
pub unsafe extern "C" fn malloc_usable_size(ptr: *mut c_void) -> usize {
    // SAFETY: per the caller; bad pointers are detected and reported.
    unsafe { c_abi::usable_size(ptr.cast()) }
}

/// C23 `free_sized` (the size is not needed).
///
/// # Safety
/// As `free`.
#[no_mangle]
pub unsafe extern "C" fn free_sized(ptr: *mut c_void, _size: usize) {
    // SAFETY: as `free`.
    unsafe { c_abi::free(ptr.cast()) }
}

/// C23 `free_aligned_sized`.
///
/// # Safety
/// As `free`.
#[no_mangle]
pub unsafe extern "C" fn free_aligned_sized(ptr: *mut c_void, _align: usize, _size: usize) {
    // SAFETY: as `free`.
    unsafe { c_abi::free(ptr.cast()) }
}
