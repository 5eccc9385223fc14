//! # hakmem-std
//!
//! hakmem for Linux programs: a `#[global_allocator]` with a heap per
//! thread, whose freed memory goes back to the system without being asked.
//!
//! ```ignore
//! #[global_allocator]
//! static GLOBAL: hakmem_std::HakMem = hakmem_std::HakMem::new();
//! ```
//!
//! - [`LinuxPages`] maps SuperSlabs with anonymous `mmap` (via rustix; the
//!   C allocator is never called) and decommits with `MADV_DONTNEED`.
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
#![deny(missing_docs)]

// hakmem-std is Linux-only: membarrier (reading other threads' heaps),
// MADV_DONTNEED and MAP_NORESERVE (LinuxPages), .init_array/.fini_array and
// pthread_atfork. Say so once, instead of a page of unresolved imports.
#[cfg(not(target_os = "linux"))]
compile_error!(
    "hakmem-std supports Linux only (membarrier, MADV_DONTNEED, MAP_NORESERVE, \
     .init_array and pthread_atfork); this target is not Linux. Use hakmem-core \
     with a PageSource of your own, or hakmem-bare over fixed regions."
);

// Every item below is Linux-only, so that elsewhere the message above is
// the only one.
#[cfg(target_os = "linux")]
pub mod c_abi;
#[cfg(target_os = "linux")]
pub mod c_api;
#[cfg(target_os = "linux")]
mod env;
#[cfg(target_os = "linux")]
mod global;
#[cfg(target_os = "linux")]
mod heaps;
#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
mod purge;
#[cfg(target_os = "linux")]
mod stats;
#[cfg(target_os = "linux")]
mod tls;

#[cfg(target_os = "linux")]
pub use env::Config;
#[cfg(target_os = "linux")]
pub use global::HakMem;
#[cfg(target_os = "linux")]
pub use hakmem_core::{Config as CoreConfig, Stats};
#[cfg(target_os = "linux")]
pub use linux::{page_size, LinuxPages};
#[cfg(target_os = "linux")]
pub use stats::{stats, thread_stats, GlobalStats};

#[cfg(target_os = "linux")]
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

#[cfg(target_os = "linux")]
/// The configuration in force (after the environment), if any allocation
/// happened yet.
pub fn config() -> Option<Config> {
    global::global().map(|g| g.cfg)
}
