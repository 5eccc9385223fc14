//! # hakmem-core
//!
//! The `no_std`, `alloc`-free core of the hakmem memory allocator: size
//! classes, SuperSlabs split into slabs, per-class magazines with **exact**
//! live-block accounting, lock-free remote frees, and large blocks — all over
//! a [`PageSource`], so the same code runs on Linux, on bare metal and in
//! tests on the simulated [`sim::SimPages`].
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
//! At every moment the heap knows, per SuperSlab and per class, how many
//! blocks the application holds. A block in a magazine (*cached*), on a slab
//! free list (*free*) or on a remote list (*pending*) is not *held*. When a
//! SuperSlab's held count reaches zero, it is returned to the page source
//! after bounded work, unless the retain policy keeps it ([`Config::retain`]).
//!
//! ## Life of a block
//!
//! - alloc = [`Heap::alloc`]: class by shift → magazine pop → the class's
//!   partial slab (free list, then bump pointer) → new slab in an owned
//!   SuperSlab → new SuperSlab from [`PageSource::map`]. Large requests:
//!   a region of their own.
//! - free = [`Heap::dealloc`]: SuperSlab by masking → another heap's? remote
//!   push ([`free_remote`]) → checks → held counts down → magazine push
//!   (a full magazine drains half to the slabs) → SuperSlab held = 0 →
//!   retain, or evict its blocks from the magazines and
//!   [`PageSource::unmap`] it.
//!
//! See `docs/design.md` for the design, its costs and the alternatives.
#![no_std]
#![deny(missing_docs)]

#[cfg(feature = "std")]
extern crate std;

mod check;
pub mod config;
mod error;
mod heap;
mod large;
mod locate;
mod magazine;
pub mod page_source;
mod remote;
#[cfg(feature = "sim")]
pub mod sim;
pub mod size_class;
mod slab;
mod stats;
mod superslab;

pub use check::CheckError;
pub use config::{Config, ConfigError, Geometry};
pub use error::{FreeError, FreeErrorKind};
pub use heap::Heap;
pub use page_source::PageSource;
pub use remote::free_remote;
pub use slab::{set_corruption_handler, CORRUPTION_MESSAGE};
pub use stats::{ClassStats, Stats};
