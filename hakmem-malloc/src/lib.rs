//! `libhakmem.so`: hakmem as `malloc` for any Linux program,
//! `LD_PRELOAD=target/release/libhakmem.so program`.
//!
//! Only `extern "C"` forwards live here: each allocation symbol calls
//! `hakmem_std::c_abi` and sets `errno` on failure (C++ `operator new` and
//! `delete`, with C++'s failure semantics, are in `cxx.rs`); hakmem's own interface
//! (`include/hakmem.h`) and glibc's introspection calls (`malloc_trim`,
//! `mallinfo2`, `mallinfo`, `malloc_stats`) call `hakmem_std::c_api`. Being a crate of its
//! own, a Rust program that depends on hakmem-std never gets its `malloc`
//! replaced by accident.
#![deny(missing_docs)]

// libhakmem.so replaces glibc's (or musl's) malloc by symbol interposition:
// glibc's introspection calls, `__errno_location`, `.init_array`. macOS
// interposes differently (`__DATA,__interpose`, malloc zones) and FreeBSD's
// libc has jemalloc's own entry points; neither is done here. The Rust
// allocator (hakmem-std's `HakMem`) does work there.
#[cfg(not(target_os = "linux"))]
compile_error!(
    "hakmem-malloc (libhakmem.so, the LD_PRELOAD malloc) supports Linux only; on macOS and \
     FreeBSD use hakmem-std's HakMem as the #[global_allocator] of Rust programs."
);

use core::ffi::{c_char, c_void};

mod cxx;

use hakmem_std::c_abi::{self, CError};
use hakmem_std::c_api;
use hakmem_std::FastFree;

const ENOMEM: i32 = 12;
const EINVAL: i32 = 22;
const EPERM: i32 = 1;

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
    // The fast path makes no call, so it needs no stack frame; everything
    // else (errno included) is behind one tail call.
    let p = c_abi::malloc_fast(size);
    if !p.is_null() {
        return p.cast();
    }
    malloc_general(size)
}

/// `malloc` from the start, for every request its fast path did not serve.
/// (`extern "C"`, so it cannot unwind into `malloc`, whose call to it is
/// then a plain tail jump.)
#[inline(never)]
extern "C" fn malloc_general(size: usize) -> *mut c_void {
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
    // SAFETY: C's contract; a pointer the fast path cannot vouch for goes
    // to `free_unknown` or `free_general`, which detect and report bad ones.
    unsafe {
        match c_abi::free_fast(ptr.cast()) {
            FastFree::Done => {}
            FastFree::Unknown => free_unknown(ptr),
            FastFree::Other => free_general(ptr),
        }
    }
}

/// `free` of a block in none of the thread's known SuperSlabs (another
/// thread's, a large block), out of line so that `free`'s fast path keeps
/// no stack frame (`extern "C"` as `free_general` is).
///
/// # Safety
/// As `free`.
#[inline(never)]
unsafe extern "C" fn free_unknown(ptr: *mut c_void) {
    // SAFETY: C's contract; bad pointers are detected and reported.
    unsafe { c_abi::free_unknown(ptr.cast()) }
}

/// `free` from the start, for every block its fast path did not take
/// (`extern "C"` as `malloc_general` is).
///
/// # Safety
/// As `free`.
#[inline(never)]
unsafe extern "C" fn free_general(ptr: *mut c_void) {
    // SAFETY: C's contract; bad pointers are detected and reported.
    unsafe { c_abi::free_general(ptr.cast()) }
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

// ------------------------------------------------------------ hakmem.h

/// `hakmem_stats_get`: fills `*out` with the process-wide figures.
/// Returns 0, or `EINVAL` (and writes nothing) for a null `out`.
///
/// # Safety
/// `out` is null or valid for a write of a `hakmem_stats_t`.
#[no_mangle]
pub unsafe extern "C" fn hakmem_stats_get(out: *mut c_api::HakmemStats) -> i32 {
    if out.is_null() {
        return EINVAL;
    }
    // SAFETY: per the caller.
    unsafe { out.write(c_api::stats_get()) };
    0
}

/// `hakmem_stats_print`: the stats table on stderr.
#[no_mangle]
pub extern "C" fn hakmem_stats_print() {
    c_api::stats_print()
}

/// `hakmem_trim`: returns free memory now; the number of SuperSlabs
/// released.
#[no_mangle]
pub extern "C" fn hakmem_trim() -> usize {
    c_api::trim()
}

/// `hakmem_option_get`: the value in force, or -1 for an unknown option.
#[no_mangle]
pub extern "C" fn hakmem_option_get(opt: i32) -> i64 {
    match c_api::HakmemOption::from_raw(opt) {
        Some(o) => i64::try_from(c_api::option_get(o)).unwrap_or(i64::MAX),
        None => -1,
    }
}

/// `hakmem_option_set`: 0, `EINVAL` (unknown option or bad value) or
/// `EPERM` (fixed at set-up).
#[no_mangle]
pub extern "C" fn hakmem_option_set(opt: i32, value: i64) -> i32 {
    let (Some(o), Ok(v)) = (c_api::HakmemOption::from_raw(opt), u64::try_from(value)) else {
        return EINVAL;
    };
    match c_api::option_set(o, v) {
        Ok(()) => 0,
        Err(c_api::OptionError::Invalid) => EINVAL,
        Err(c_api::OptionError::Fixed) => EPERM,
    }
}

/// `hakmem_version`: `"0.1.0"`, a static string.
#[no_mangle]
pub extern "C" fn hakmem_version() -> *const c_char {
    c_api::version()
}

// ------------------------------------------------------------ glibc introspection

/// glibc `malloc_trim`: 1 if memory went back to the system, else 0.
#[no_mangle]
pub extern "C" fn malloc_trim(pad: usize) -> i32 {
    c_api::malloc_trim(pad)
}

/// glibc `mallinfo2`, filled from hakmem's figures (see `hakmem.h`).
#[no_mangle]
pub extern "C" fn mallinfo2() -> c_api::MallInfo2 {
    c_api::mallinfo2()
}

/// glibc's obsolete `mallinfo`: `mallinfo2` saturated to `int`.
#[no_mangle]
pub extern "C" fn mallinfo() -> c_api::MallInfo {
    c_api::mallinfo()
}

/// glibc `malloc_stats`: the stats table on stderr.
#[no_mangle]
pub extern "C" fn malloc_stats() {
    c_api::stats_print()
}
