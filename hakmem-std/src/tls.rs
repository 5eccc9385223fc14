//! The one thread-local word on the fast paths: the calling thread's heap
//! slot (null before its first allocation, `DEAD` after its exit guard ran).
//!
//! In a shared library (`libhakmem.so`) Rust's `thread_local!` uses the
//! general-dynamic TLS model: every access calls `__tls_get_addr`, about a
//! fifth of a malloc/free pair's instructions (docs/performance.md). On
//! x86_64 Linux the word is therefore declared in assembly in `.tbss` and
//! read with the initial-exec model (`sym@GOTTPOFF`, one load from the GOT
//! and one `fs:`-relative load), as mimalloc's `-ftls-model=initial-exec`
//! build does. In an executable the linker relaxes it to local-exec. A
//! library loaded with `dlopen` takes its 8 bytes from glibc's static TLS
//! surplus. Other targets use `thread_local!`, whose model is already
//! initial- or local-exec where it matters (executables).
//!
//! Invariants: the word is zero in every new thread; only `set` writes it,
//! and only for the calling thread.

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod imp {
    use core::arch::{asm, global_asm};

    global_asm!(
        ".pushsection .tbss,\"awT\",@nobits",
        ".p2align 3",
        ".globl hakmem_std_current_slot",
        ".hidden hakmem_std_current_slot",
        ".type hakmem_std_current_slot, @object",
        ".size hakmem_std_current_slot, 8",
        "hakmem_std_current_slot:",
        ".zero 8",
        ".popsection",
    );

    /// The calling thread's word.
    #[inline(always)]
    pub fn get() -> usize {
        let v: usize;
        // SAFETY: `hakmem_std_current_slot` is an 8-byte, 8-aligned TLS
        // object defined above; the initial-exec sequence reads the calling
        // thread's copy and touches nothing else.
        unsafe {
            asm!(
                "mov {v}, qword ptr [rip + hakmem_std_current_slot@GOTTPOFF]",
                "mov {v}, qword ptr fs:[{v}]",
                v = out(reg) v,
                options(nostack, readonly, preserves_flags),
            );
        }
        v
    }

    /// Sets the calling thread's word.
    #[inline(always)]
    pub fn set(value: usize) {
        // SAFETY: as in `get`; the store writes only the calling thread's
        // copy of the TLS object.
        unsafe {
            asm!(
                "mov {t}, qword ptr [rip + hakmem_std_current_slot@GOTTPOFF]",
                "mov qword ptr fs:[{t}], {v}",
                t = out(reg) _,
                v = in(reg) value,
                options(nostack, preserves_flags),
            );
        }
    }
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
mod imp {
    use core::cell::Cell;

    thread_local! {
        static CURRENT: Cell<usize> = const { Cell::new(0) };
    }

    /// The calling thread's word.
    #[inline(always)]
    pub fn get() -> usize {
        CURRENT.with(|c| c.get())
    }

    /// Sets the calling thread's word.
    #[inline(always)]
    pub fn set(value: usize) {
        CURRENT.with(|c| c.set(value))
    }
}

pub(crate) use imp::{get, set};
