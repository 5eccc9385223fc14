//! # hakmem-bare
//!
//! hakmem for bare-metal, embedded and kernel targets: no OS, no threads
//! required, no allocation of its own. The same core as on Linux —
//! size-class slabs in SuperSlabs, exact live-block accounting, memory
//! reused across size classes — over memory regions the program hands in.
//!
//! - [`FixedRegion`]: the [`PageSource`] over
//!   caller-given regions (up to [`MAX_REGIONS`], not necessarily
//!   contiguous), carved into aligned ranges with a page bitmap; unmapped
//!   ranges are reused, by SuperSlabs and by large blocks spanning several.
//! - [`LocalHeap`]: the heap without a lock, for the core that owns it, with
//!   an out-of-memory hook ([`OomHook`]) and peak figures ([`BareStats`]).
//! - [`BareHeap`]: a `LocalHeap` behind a [`RawLock`] — [`SpinLock`] by
//!   default, `InterruptLock` (Cortex-M: PRIMASK saved, `cpsid i`, restored)
//!   so interrupt handlers may allocate — `const`-constructible, for
//!   `#[global_allocator]`.
//! - [`PerCoreHeap`]: one `LocalHeap` per core (the core number from a
//!   function you supply), each behind its own lock, over one
//!   [`SharedRegion`]; a free of another core's block goes to its owner's
//!   remote list, and a core out of memory trims idle cores' heaps.
//! - Faults ([`set_fault_handler`]): heap corruption found by the core
//!   poisons every bare heap — the locked ones never wait for their lock
//!   again — then calls your handler with a [`Fault`]; invalid frees
//!   through `GlobalAlloc` reach the same handler.
//!
//! ```ignore
//! #[global_allocator]
//! static HEAP: hakmem_bare::BareHeap = hakmem_bare::BareHeap::empty();
//!
//! fn main() {
//!     // SAFETY: HEAP_START..HEAP_START+HEAP_LEN is RAM nothing else uses.
//!     unsafe { HEAP.init(HEAP_START, HEAP_LEN) }.unwrap();
//!     let v = alloc::vec![1, 2, 3];
//! }
//! ```
//!
//! The default geometry ([`BARE_CONFIG`]) has 16 KiB SuperSlabs, so a 64 KiB
//! board works. Every SuperSlab and every large block (above 896 B) starts
//! on a 16 KiB boundary, so hand in regions aligned to 16 KiB where you can:
//! memory before a region's first boundary serves nothing (at most its
//! bitmaps), and each large block leaves the rest of its last 16 KiB chunk
//! unused. `init` builds the heap (about 3 KiB on 32-bit targets) in its
//! slot, field by field, but the core's `Heap::new` returns the core heap by
//! value, so at `opt-level = "s"` `init` still takes about 5.9 KiB of stack
//! once (measured by the firmware: `init_stack` on its PASS line).
#![no_std]
#![deny(missing_docs)]

#[cfg(feature = "allocator-api2")]
mod allocator;
mod error;
mod fault;
mod global;
mod local;
mod lock;
mod percore;
mod region;
mod shared;
mod slot;

pub use error::BareError;
pub use fault::{is_poisoned, set_fault_handler};
pub use global::BareHeap;
pub use hakmem_core::{Config, FreeError, FreeErrorKind, PageSource, Stats};
pub use hakmem_core::{Fault, FaultHandler, FaultKind};
pub use local::{BareStats, LocalHeap, OomCtx, OomHook, BARE_CONFIG};
#[cfg(all(target_arch = "arm", target_os = "none"))]
pub use lock::InterruptLock;
pub use lock::{Locked, LockedGuard, RawLock, SpinLock};
pub use percore::{CoreHeap, PerCoreHeap};
pub use region::{
    page_shift_for, FixedRegion, RegionStats, CHUNK_PAGES_SHIFT, DEFAULT_PAGE_SHIFT, INLINE_PAGES,
    INLINE_REGIONS, MAX_REGIONS,
};
pub use shared::{RegionSource, SharedRegion};
