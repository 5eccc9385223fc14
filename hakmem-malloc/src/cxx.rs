//! C++ `operator new` and `operator delete`, under the Itanium C++ ABI's
//! names (those libstdc++ and libc++ export on Linux), so that a C++
//! program's `new` reaches hakmem's fast path directly instead of through
//! libstdc++'s `operator new` and a second call to `malloc`.
//!
//! Success is hakmem's own: the same fast path and full path as `malloc`
//! (every block aligned to 16; the aligned forms as `aligned_alloc`). Only
//! failure is C++'s: when hakmem has no memory (after its own trim and
//! retry), the request goes to the *next* definition of the same operator
//! (`dlsym(RTLD_NEXT, …)`, libstdc++'s), which runs the program's
//! `new_handler` loop around our `malloc` and, in the end, throws
//! `std::bad_alloc` or returns null (the `nothrow` forms), exactly as the
//! standard library does. An array form is its scalar form (libstdc++'s
//! own `new[]` calls `new`). The exception unwinds through our two frames
//! (`extern "C-unwind"`), which hold nothing by then. Without a next
//! definition (no C++ runtime loaded) the process prints a message and
//! aborts, as an uncaught `bad_alloc` would.
//!
//! Every `operator delete` is `free` (the size and alignment arguments are
//! not needed: hakmem finds both from the pointer, and checks it).
//!
//! (`const std::nothrow_t&` arguments are taken as `usize`: a reference is
//! passed as a pointer, in an integer register, on every Linux ABI.)

// The Itanium ABI's mangled names are the symbols' whole point.
#![allow(non_snake_case)]

use core::ffi::{c_char, c_void, CStr};
use core::sync::atomic::{AtomicPtr, Ordering};

use hakmem_std::c_abi;

extern "C" {
    fn dlsym(handle: *mut c_void, symbol: *const c_char) -> *mut c_void;
}

/// glibc's `RTLD_NEXT`: the next object after this one in lookup order.
const RTLD_NEXT: *mut c_void = -1isize as *mut c_void;

/// `operator new(size)`.
type New1 = unsafe extern "C-unwind" fn(usize) -> *mut c_void;
/// `operator new(size, align)` and `operator new(size, const nothrow_t&)`.
type New2 = unsafe extern "C-unwind" fn(usize, usize) -> *mut c_void;
/// `operator new(size, align, const nothrow_t&)`.
type New3 = unsafe extern "C-unwind" fn(usize, usize, usize) -> *mut c_void;

/// The next definition of the operator `name`, looked up once (on the first
/// failure of that operator) and kept in `cache`; aborts with a message if
/// there is none.
fn next(name: &CStr, cache: &AtomicPtr<c_void>) -> *mut c_void {
    let mut f = cache.load(Ordering::Acquire);
    if f.is_null() {
        // SAFETY: `name` is a NUL-terminated string; `dlsym` only reads it.
        f = unsafe { dlsym(RTLD_NEXT, name.as_ptr()) };
        if f.is_null() {
            c_abi::out_of_memory_abort(name.to_str().unwrap_or("operator new"));
        }
        cache.store(f, Ordering::Release);
    }
    f
}

/// Declares a `new` form, and its array form as the same function (as
/// the C++ runtime's own array forms are): the fast path `$fast`, then the
/// full path `$alloc`, then the next library's definition of the scalar
/// form for C++'s failure semantics.
macro_rules! operator_new {
    ($(#[$doc:meta])* $name:ident / $array:ident, $general:ident, $cache:ident,
     ($($arg:ident),*), $kind:ty, $alloc:expr, $fast:expr) => {
        static $cache: AtomicPtr<c_void> = AtomicPtr::new(core::ptr::null_mut());

        $(#[$doc])*
        #[no_mangle]
        pub extern "C-unwind" fn $name($($arg: usize),*) -> *mut c_void {
            let p: *mut u8 = $fast;
            if !p.is_null() {
                return p.cast();
            }
            $general($($arg),*)
        }

        /// The array form of the function above: the same.
        #[no_mangle]
        pub extern "C-unwind" fn $array($($arg: usize),*) -> *mut c_void {
            $name($($arg),*)
        }

        /// The form's full path (see the module doc).
        #[inline(never)]
        extern "C-unwind" fn $general($($arg: usize),*) -> *mut c_void {
            match $alloc {
                Ok(p) => p.cast(),
                Err(_) => {
                    let f = next(
                        // SAFETY: a literal with one NUL, at its end.
                        unsafe {
                            CStr::from_bytes_with_nul_unchecked(
                                concat!(stringify!($name), "\0").as_bytes(),
                            )
                        },
                        &$cache,
                    );
                    // SAFETY: `f` is the next definition of this very
                    // operator, whose C++ signature `$kind` spells.
                    unsafe { core::mem::transmute::<*mut c_void, $kind>(f)($($arg),*) }
                }
            }
        }
    };
}

operator_new!(
    /// `operator new(std::size_t)` / `operator new[](std::size_t)`.
    _Znwm / _Znam, new_general, NEXT_NEW, (size), New1,
    c_abi::malloc(size), c_abi::malloc_fast(size)
);
operator_new!(
    /// `operator new(std::size_t, const std::nothrow_t&)` and its array form.
    _ZnwmRKSt9nothrow_t / _ZnamRKSt9nothrow_t, new_nothrow_general, NEXT_NEW_NOTHROW,
    (size, _nothrow), New2, c_abi::malloc(size), c_abi::malloc_fast(size)
);
operator_new!(
    /// `operator new(std::size_t, std::align_val_t)` and its array form.
    _ZnwmSt11align_val_t / _ZnamSt11align_val_t, new_aligned_general, NEXT_NEW_ALIGNED,
    (size, align), New2, c_abi::aligned(align, size), core::ptr::null_mut()
);
operator_new!(
    /// `operator new(std::size_t, std::align_val_t, const std::nothrow_t&)`
    /// and its array form.
    _ZnwmSt11align_val_tRKSt9nothrow_t / _ZnamSt11align_val_tRKSt9nothrow_t,
    new_aligned_nothrow_general, NEXT_NEW_ALIGNED_NOTHROW,
    (size, align, _nothrow), New3, c_abi::aligned(align, size), core::ptr::null_mut()
);

/// Declares `operator delete` forms: each is `free` of its first argument.
macro_rules! operator_delete {
    ($($(#[$doc:meta])* $name:ident ($($extra:ident),*);)*) => {$(
        $(#[$doc])*
        ///
        /// # Safety
        /// C++'s contract: `ptr` is null or a live block from `operator new`.
        #[no_mangle]
        pub unsafe extern "C" fn $name(ptr: *mut c_void $(, $extra: usize)*) {
            $(let _ = $extra;)*
            // SAFETY: per the caller; bad pointers are detected and reported.
            unsafe { crate::free(ptr) }
        }
    )*};
}

operator_delete! {
    /// `operator delete(void*)`.
    _ZdlPv();
    /// `operator delete[](void*)`.
    _ZdaPv();
    /// `operator delete(void*, std::size_t)`.
    _ZdlPvm(size);
    /// `operator delete[](void*, std::size_t)`.
    _ZdaPvm(size);
    /// `operator delete(void*, const std::nothrow_t&)`.
    _ZdlPvRKSt9nothrow_t(tag);
    /// `operator delete[](void*, const std::nothrow_t&)`.
    _ZdaPvRKSt9nothrow_t(tag);
    /// `operator delete(void*, std::align_val_t)`.
    _ZdlPvSt11align_val_t(align);
    /// `operator delete[](void*, std::align_val_t)`.
    _ZdaPvSt11align_val_t(align);
    /// `operator delete(void*, std::size_t, std::align_val_t)`.
    _ZdlPvmSt11align_val_t(size, align);
    /// `operator delete[](void*, std::size_t, std::align_val_t)`.
    _ZdaPvmSt11align_val_t(size, align);
    /// `operator delete(void*, std::align_val_t, const std::nothrow_t&)`.
    _ZdlPvSt11align_val_tRKSt9nothrow_t(align, tag);
    /// `operator delete[](void*, std::align_val_t, const std::nothrow_t&)`.
    _ZdaPvSt11align_val_tRKSt9nothrow_t(align, tag);
}
