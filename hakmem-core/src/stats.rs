//! Exact statistics of one heap.
//!
//! The fast paths keep one exact count per slab (`account.rs`); a [`Stats`]
//! snapshot sums them when read: one pass over the heap's slab records, its
//! SuperSlabs' pending counts and its large blocks. Nothing is sampled.
//!
//! Invariants:
//! - `held_blocks == Σ classes[c].held_blocks + live large blocks - pending_remote`;
//! - `free_blocks == Σ classes[c].free_blocks`;
//! - `mapped_bytes == superslabs_mapped * superslab_size + large_mapped_bytes
//!   + large_cached_bytes`.

use core::fmt;
use core::sync::atomic::Ordering;

use crate::heap::Heap;
use crate::large::LARGE_LIVE;
use crate::medium::MEDIUM_CLASS;
use crate::page_source::PageSource;
use crate::size_class::{class_size, NUM_CLASSES};
use crate::slab::NO_CLASS;
use crate::superslab::SuperSlab;

/// Per-class figures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClassStats {
    /// Blocks of this class held by the application, counting blocks freed
    /// by other threads that the owner has not collected yet.
    pub held_blocks: usize,
    /// Carved blocks of this class on their slabs' free lists (ready for
    /// reuse; not held).
    pub free_blocks: usize,
}

/// A snapshot of a heap's exact figures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stats {
    /// Bytes currently mapped from the page source by this heap.
    pub mapped_bytes: usize,
    /// Blocks (small, medium and large) held by the application, exactly: blocks
    /// pending remote collection are not counted.
    pub held_blocks: usize,
    /// Bytes held by the application: block sizes for small and medium
    /// blocks, requested sizes for large ones (pending remote frees
    /// included).
    pub held_bytes: usize,
    /// Carved blocks on slab free lists (ready for reuse; not held).
    pub free_blocks: usize,
    /// Blocks (small and large) freed by other threads and not yet collected.
    pub pending_remote: usize,
    /// SuperSlabs mapped now (retained ones included).
    pub superslabs_mapped: usize,
    /// SuperSlabs mapped since the heap was made.
    pub superslabs_created: usize,
    /// SuperSlabs returned to the page source since the heap was made.
    pub superslabs_released: usize,
    /// Empty SuperSlabs kept mapped for reuse (the retain policy).
    pub superslabs_retained: usize,
    /// Large blocks not yet unmapped (those freed remotely and not yet
    /// collected included).
    pub large_count: usize,
    /// Requested bytes of live large blocks.
    pub large_bytes: usize,
    /// Bytes mapped for live large blocks.
    pub large_mapped_bytes: usize,
    /// Bytes of freed large blocks' regions kept mapped for reuse
    /// (`Config::large_cache`).
    pub large_cached_bytes: usize,
    /// Freed large blocks' regions kept mapped for reuse.
    pub large_cached_regions: usize,
    /// Medium blocks held (pending remote frees included).
    pub medium_blocks: usize,
    /// Bytes of the held medium blocks (whole granules).
    pub medium_bytes: usize,
    /// Medium slabs (arenas) assigned now.
    pub medium_slabs: usize,
    /// Per-class figures, indexed by size class.
    pub classes: [ClassStats; NUM_CLASSES],
}

impl Stats {
    /// All zero.
    pub const ZERO: Stats = Stats {
        mapped_bytes: 0,
        held_blocks: 0,
        held_bytes: 0,
        free_blocks: 0,
        pending_remote: 0,
        superslabs_mapped: 0,
        superslabs_created: 0,
        superslabs_released: 0,
        superslabs_retained: 0,
        large_count: 0,
        large_bytes: 0,
        large_mapped_bytes: 0,
        large_cached_bytes: 0,
        large_cached_regions: 0,
        medium_blocks: 0,
        medium_bytes: 0,
        medium_slabs: 0,
        classes: [ClassStats {
            held_blocks: 0,
            free_blocks: 0,
        }; NUM_CLASSES],
    };

    /// Adds another heap's figures to these (for process-wide totals).
    pub fn merge(&mut self, o: &Stats) {
        self.medium_blocks += o.medium_blocks;
        self.medium_bytes += o.medium_bytes;
        self.medium_slabs += o.medium_slabs;
        self.mapped_bytes += o.mapped_bytes;
        self.held_blocks += o.held_blocks;
        self.held_bytes += o.held_bytes;
        self.free_blocks += o.free_blocks;
        self.pending_remote += o.pending_remote;
        self.superslabs_mapped += o.superslabs_mapped;
        self.superslabs_created += o.superslabs_created;
        self.superslabs_released += o.superslabs_released;
        self.superslabs_retained += o.superslabs_retained;
        self.large_count += o.large_count;
        self.large_bytes += o.large_bytes;
        self.large_mapped_bytes += o.large_mapped_bytes;
        self.large_cached_bytes += o.large_cached_bytes;
        self.large_cached_regions += o.large_cached_regions;
        for (a, b) in self.classes.iter_mut().zip(o.classes.iter()) {
            a.held_blocks += b.held_blocks;
            a.free_blocks += b.free_blocks;
        }
    }
}

impl Default for Stats {
    fn default() -> Self {
        Stats::ZERO
    }
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "hakmem stats")?;
        writeln!(
            f,
            "  mapped          {:>12} B ({:.2} MiB)",
            self.mapped_bytes,
            mib(self.mapped_bytes)
        )?;
        writeln!(
            f,
            "  held            {:>12} B in {} blocks",
            self.held_bytes, self.held_blocks
        )?;
        writeln!(f, "  free blocks     {:>12}", self.free_blocks)?;
        writeln!(f, "  pending remote  {:>12}", self.pending_remote)?;
        writeln!(
            f,
            "  superslabs      {:>12} mapped, {} retained, {} created, {} released",
            self.superslabs_mapped,
            self.superslabs_retained,
            self.superslabs_created,
            self.superslabs_released
        )?;
        writeln!(
            f,
            "  large blocks    {:>12} ({} B requested, {} B mapped, {} B cached for reuse)",
            self.large_count, self.large_bytes, self.large_mapped_bytes, self.large_cached_bytes
        )?;
        writeln!(f, "  {:>8} {:>12} {:>12}", "class", "held", "free")?;
        for (c, s) in self.classes.iter().enumerate() {
            if s.held_blocks != 0 || s.free_blocks != 0 {
                writeln!(
                    f,
                    "  {:>8} {:>12} {:>12}",
                    class_size(c),
                    s.held_blocks,
                    s.free_blocks
                )?;
            }
        }
        Ok(())
    }
}

impl<P: PageSource> Heap<P> {
    /// An exact snapshot of this heap's figures, summed from its slabs.
    pub fn stats(&self) -> Stats {
        let mut s = Stats::ZERO;
        let mut pending = 0;
        let (mut medium_blocks, mut medium_bytes) = (0, 0);
        let mut ss = self.superslabs;
        while !ss.is_null() {
            // SAFETY: list members are live owned SuperSlabs; their unit
            // records are the heap's own (remote frees touch only `remote`).
            unsafe {
                pending += (*ss).remote_count.load(Ordering::Acquire);
                let mut u = 0usize;
                while u < self.geo.units as usize {
                    let slab = SuperSlab::slab(ss, u);
                    if (*slab).class == NO_CLASS {
                        u += 1;
                        continue;
                    }
                    if (*slab).class == MEDIUM_CLASS {
                        let a = crate::medium::arena_of(ss, slab);
                        medium_blocks += (*slab).used as usize;
                        s.medium_slabs += 1;
                        medium_bytes += ((*a).held as usize) << crate::medium::GRANULE_SHIFT;
                        u += (*slab).span as usize;
                        continue;
                    }
                    let cs = &mut s.classes[(*slab).class as usize];
                    cs.held_blocks += (*slab).used as usize;
                    cs.free_blocks += ((*slab).carved() - (*slab).used) as usize;
                    u += (*slab).span as usize;
                }
                ss = (*ss).next;
            }
        }
        // Large blocks freed by other threads and not yet unmapped.
        let mut h = self.large;
        while !h.is_null() {
            // SAFETY: list members are live large block headers.
            unsafe {
                if (*h).state.load(Ordering::Acquire) != LARGE_LIVE {
                    pending += 1;
                }
                h = (*h).next;
            }
        }
        let mut held_blocks = medium_blocks;
        let mut held_bytes = medium_bytes;
        for (c, cs) in s.classes.iter().enumerate() {
            s.free_blocks += cs.free_blocks;
            held_blocks += cs.held_blocks;
            held_bytes += cs.held_blocks * class_size(c);
        }
        s.pending_remote = pending;
        s.medium_blocks = medium_blocks;
        s.medium_bytes = medium_bytes;
        s.held_blocks = held_blocks + self.n.large_count - pending;
        s.held_bytes = held_bytes + self.n.large_bytes;
        s.superslabs_mapped = self.n.superslabs;
        s.superslabs_created = self.n.created;
        s.superslabs_released = self.n.released;
        s.superslabs_retained = self.n.empty;
        s.large_count = self.n.large_count;
        s.large_bytes = self.n.large_bytes;
        s.large_mapped_bytes = self.n.large_mapped;
        s.large_cached_bytes = self.n.large_cached;
        s.large_cached_regions = self.large_cache.len;
        s.mapped_bytes = self.n.superslabs * self.geo.superslab_size()
            + self.n.large_mapped
            + self.n.large_cached;
        s
    }
}
