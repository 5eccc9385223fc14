//! # hakmem-std
//!
//! hakmem for Rust programs on Linux, macOS and FreeBSD (64-bit): a
//! `#[global_allocator]` with a heap per thread, whose freed memory goes
//! back to the system without being asked.
//!
//! ```ignore
//! #[global_allocator]
//! static GLOBAL: hakmem_std::HakMem = hakmem_std::HakMem::new();
//! ```
//!
//! - [`LinuxPages`] maps SuperSlabs with anonymous `mmap` (via rustix; the
//!   C allocator is never called) and decommits with `MADV_DONTNEED` (on
//!   macOS and FreeBSD, by mapping the range again with `MAP_FIXED`, so it
//!   still reads as zero).
//! - Each thread has its own core `Heap`; its fast paths take no lock and
//!   no atomic read-modify-write. Frees of other threads' blocks go to their
//!   SuperSlabs' lock-free remote lists.
//! - At thread exit the heap is flushed and trimmed; if blocks are still
//!   held (by other threads) it is abandoned, and the next new thread adopts
//!   it, while the background thread returns what becomes empty meanwhile.
//! - The optional background thread ([`Config::background`]) collects remote
//!   frees of idle threads and decommits retained memory after
//!   [`Config::purge_delay_ms`], so RSS comes back after a free-all whoever
//!   freed and whether or not the owner ever calls again.
//! - A forked child gets the background thread back on its first call (it
//!   does not survive `fork`, and fork handlers create no thread); an
//!   allocation that fails trims the thread's caches and retries once
//!   before returning null; refused `madvise`/`munmap` calls are counted in
//!   [`stats`]. See `docs/reliability.md`.
//!
//! Options are in [`Config`] and the `HAKMEM_*` environment variables (see
//! the README); [`stats`] gives exact process-wide figures.
//!
//! ## Platforms
//!
//! x86_64 Linux runs every test; aarch64 Linux runs the shared suite under
//! `qemu-aarch64`. macOS and FreeBSD are built (`cargo check`, in CI) but
//! not run there; their code is also built on Linux with
//! `HAKMEM_STD_PORTABLE=1` in the build's environment (see `build.rs`),
//! where every test passes. What differs off Linux: no `mremap` (growing a large
//! block copies), no `membarrier` (each heap operation pays one full fence
//! instead, so the background thread can still visit idle heaps; about
//! 13 ns per malloc/free pair on x86_64, see the README),
//! decommit by a `MAP_FIXED` mapping, `HAKMEM_*` read with `getenv`, the
//! exit stats table from `atexit` on macOS, thread-local heaps through
//! `thread_local!`. Other targets (32-bit, Windows, …) stop with one
//! `compile_error!`. The `LD_PRELOAD` library (hakmem-malloc) is Linux only.
#![deny(missing_docs)]

// The targets (64-bit Linux, macOS, FreeBSD) are listed in build.rs, which
// sets `hakmem_std_supported` on them. Elsewhere: one message, and nothing
// else compiled, so that it is the only one.
#[cfg(not(hakmem_std_supported))]
compile_error!(
    "hakmem-std supports 64-bit Linux, macOS and FreeBSD only (mmap page source with a \
     48-bit address bitmap, pthread_atfork, thread-local heaps); this target is none of \
     them. Use hakmem-core with a PageSource of your own, or hakmem-bare over fixed regions."
);

#[cfg(hakmem_std_supported)]
pub mod c_abi;
#[cfg(hakmem_std_supported)]
pub mod c_api;
#[cfg(hakmem_std_supported)]
mod env;
#[cfg(hakmem_std_supported)]
mod global;
#[cfg(hakmem_std_supported)]
mod heaps;
#[cfg(hakmem_std_supported)]
mod linux;
#[cfg(hakmem_std_supported)]
mod purge;
#[cfg(hakmem_std_supported)]
mod stats;
#[cfg(hakmem_std_supported)]
mod tls;
#[cfg(all(target_os = "linux", feature = "hardened"))]
mod zero;

#[cfg(hakmem_std_supported)]
pub use env::Config;
#[cfg(hakmem_std_supported)]
pub use global::HakMem;
#[cfg(hakmem_std_supported)]
pub use hakmem_core::{Config as CoreConfig, FastFree, Stats};
#[cfg(hakmem_std_supported)]
pub use linux::{page_size, LinuxPages};
#[cfg(hakmem_std_supported)]
pub use stats::{stats, thread_stats, GlobalStats};

#[cfg(hakmem_std_supported)]
/// Returns now what the background thread would return later: the calling
/// thread's empty SuperSlabs (retained ones included) and empty slabs,
/// the batches of blocks it freed into other heaps,
/// frees other threads made into its heap, and the memory of dead threads'
/// heaps. Returns the number of SuperSlabs released.
pub fn trim() -> usize {
    // Twice: a heap's collection first hands the frees it batched for other
    // heaps to their owners, and this round may have visited those owners
    // already. After one round every visited heap's batches are handed
    // over, so the second round collects them and finds none new.
    let mut released = 0;
    for _ in 0..2 {
        released += global::with_current_heap(|h| h.trim(), 0);
        released += purge::pass(true).released;
    }
    released
}

#[cfg(hakmem_std_supported)]
/// The configuration in force (after the environment), if any allocation
/// happened yet.
pub fn config() -> Option<Config> {
    global::global().map(|g| g.cfg)
}
