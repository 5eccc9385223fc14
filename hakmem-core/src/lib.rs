//! # hakmem-core
//!
//! The `no_std`, `alloc`-free core of the hakmem memory allocator: size
//! classes, SuperSlabs split into slabs whose own free lists are the only
//! cache, **exact** live-block accounting, batched lock-free remote frees,
//! and large blocks — all over a [`PageSource`], so the same code runs on
//! Linux, on bare metal and in tests on the simulated `sim::SimPages` (feature `sim`).
//!
//! ```
//! use hakmem_core::{Config, Heap, sim::SimPages};
//!
//! let pages = SimPages::new();
//! let mut heap = Heap::new(&pages, Config::DEFAULT).unwrap();
//! let p = heap.alloc(16, 8);
//! assert!(!p.is_null());
//! assert_eq!(heap.stats().held_blocks, 1);
//! // SAFETY: `p` is a live block of this heap, not used afterwards.
//! unsafe { heap.dealloc(p) }.unwrap();
//! assert_eq!(heap.stats().held_blocks, 0);
//! heap.trim();
//! assert_eq!(pages.mapped_bytes(), 0); // everything went back
//! ```
//!
//! ## The invariant
//!
//! At every moment the heap knows, per slab, per SuperSlab and per class,
//! how many blocks the application holds. A block on a slab free list
//! (*free*) or freed by another thread and not yet collected (*pending*) is
//! not *held*. When a SuperSlab's last block is freed, it is returned to the
//! page source after bounded work, unless the retain policy keeps it
//! ([`Config::retain`]).
//!
//! ## Life of a block
//!
//! - alloc = [`Heap::alloc`]: class by shift → pop the free list of the
//!   class's current slab, `used += 1` → else carve from its bump pointer,
//!   take its remote frees, or the next partial slab → new slab in an owned
//!   SuperSlab → new SuperSlab from [`PageSource::map`]. Large requests: a
//!   region of their own.
//! - free = [`Heap::dealloc`]: SuperSlab by masking → another heap's? batch
//!   it for its slab's remote list (or [`free_remote`] without a heap) →
//!   checks → push on the slab's free list, `used -= 1` → the slab emptied
//!   and it was the SuperSlab's last: retain, or unlink its slabs and
//!   [`PageSource::unmap`] it.
//!
//! See `docs/design.md` for the design, its costs and the alternatives.
#![no_std]
#![deny(missing_docs)]

#[cfg(feature = "std")]
extern crate std;

mod account;
#[cfg(feature = "allocator-api2")]
pub mod allocator;
mod check;
pub mod config;
mod error;
#[cfg(feature = "hardened")]
mod hardened;
mod heap;
mod large;
mod locate;
mod medium;
pub mod page_source;
mod purge;
mod remote;
#[cfg(feature = "sim")]
pub mod sim;
pub mod size_class;
mod slab;
mod stats;
mod superslab;

pub use check::CheckError;
pub use config::{Config, ConfigError, Geometry};
pub use error::{set_fault_handler, Fault, FaultHandler, FaultKind, FreeError, FreeErrorKind};
pub use heap::{FastFree, Heap, FAST_PATHS};
pub use page_source::PageSource;
pub use remote::free_remote;
pub use stats::{ClassStats, Stats};
