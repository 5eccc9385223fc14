//! Whole-heap invariant checks, for tests, debugging and `hardened` builds.
//!
//! [`Heap::check`] walks every SuperSlab, slab, free list, magazine and large
//! block and verifies the sums that the accounting promises (see the
//! Invariants of `heap.rs`, `slab.rs` and `superslab.rs`). It costs a pass
//! over all metadata and every cached or free block, so it is not called on
//! any allocation path.

use core::fmt;
use core::sync::atomic::Ordering;

use crate::heap::Heap;
use crate::page_source::PageSource;
use crate::size_class::{class_size, NUM_CLASSES};
use crate::slab::{free_tag, Slab, IN_PARTIAL, NO_CLASS};
use crate::superslab::{SuperSlab, SS_MAGIC};

/// A broken invariant: what, and where.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckError {
    /// The invariant that does not hold.
    pub what: &'static str,
    /// The address of the structure concerned.
    pub at: usize,
}

impl fmt::Display for CheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "hakmem: heap invariant broken at {:#x}: {}",
            self.at, self.what
        )
    }
}

fn ensure(ok: bool, what: &'static str, at: usize) -> Result<(), CheckError> {
    if ok {
        Ok(())
    } else {
        Err(CheckError { what, at })
    }
}

impl<P: PageSource> Heap<P> {
    /// Verifies every accounting invariant of the heap. Only the owner may
    /// call it; remote frees may run concurrently (they only add to pending).
    pub fn check(&self) -> Result<(), CheckError> {
        let mut class_used = [0usize; NUM_CLASSES];
        let mut superslabs = 0;
        let mut empty = 0;
        let geo = &self.geo;
        let mut ss = self.superslabs;
        // SAFETY: list members are live owned SuperSlabs; slab metadata and
        // free lists inside them are the heap's own.
        unsafe {
            while !ss.is_null() {
                let at = ss as usize;
                superslabs += 1;
                ensure((*ss).magic == SS_MAGIC ^ at, "SuperSlab magic", at)?;
                ensure(
                    (*ss).owner.load(Ordering::Relaxed) == self.id,
                    "SuperSlab owner",
                    at,
                )?;
                let mut used = 0usize;
                let mut used_units = 0u64;
                let mut u = 0usize;
                while u < geo.units as usize {
                    let slab = SuperSlab::slab(ss, u);
                    let s: &Slab = &*slab;
                    if s.class == NO_CLASS {
                        ensure(s.head as usize == u, "free unit head", slab as usize)?;
                        u += 1;
                        continue;
                    }
                    let c = s.class as usize;
                    let bump = s.bump.load(Ordering::Relaxed);
                    ensure(
                        s.head as usize == u && s.span >= 1,
                        "slab head",
                        slab as usize,
                    )?;
                    ensure(s.size as usize == class_size(c), "slab size", slab as usize)?;
                    ensure(
                        (*ss).class_mask & (1u128 << c) != 0,
                        "class mask",
                        slab as usize,
                    )?;
                    ensure(
                        s.start <= bump && bump <= s.end,
                        "slab bump range",
                        slab as usize,
                    )?;
                    ensure((s.end - s.start) % s.size == 0, "slab end", slab as usize)?;
                    for v in u..u + s.span as usize {
                        ensure(
                            (*SuperSlab::slab(ss, v)).head as usize == u,
                            "span head",
                            slab as usize,
                        )?;
                        used_units |= 1u64 << v;
                    }
                    // Walk the free list.
                    let mut n = 0u32;
                    let mut b = s.free;
                    while !b.is_null() {
                        let off = b as usize - at;
                        ensure(
                            off >= s.start as usize && off < bump as usize,
                            "free block in slab",
                            b as usize,
                        )?;
                        ensure(s.block_index(off).1, "free block aligned", b as usize)?;
                        ensure((*b).tag == free_tag(b.cast()), "free block tag", b as usize)?;
                        n += 1;
                        ensure(
                            n <= s.free_count,
                            "free list longer than free_count",
                            slab as usize,
                        )?;
                        b = (*b).next;
                    }
                    ensure(n == s.free_count, "free_count", slab as usize)?;
                    ensure(
                        s.used + s.free_count == s.carved(),
                        "used + free == carved",
                        slab as usize,
                    )?;
                    ensure(
                        s.used != 0 || s.free_count == 0,
                        "empty slab not released",
                        slab as usize,
                    )?;
                    ensure(
                        (s.flags & IN_PARTIAL != 0) == s.has_room(),
                        "partial iff room",
                        slab as usize,
                    )?;
                    used += s.used as usize;
                    class_used[c] += s.used as usize;
                    u += s.span as usize;
                }
                // Blocks of this SuperSlab in the magazines.
                let mut cached = 0usize;
                for m in self.mags.iter() {
                    m.for_each(|b| {
                        if b as usize & geo.superslab_mask() == at {
                            cached += 1;
                        }
                    });
                }
                ensure(
                    used == (*ss).held + cached,
                    "SuperSlab held + cached == sum of slab used",
                    at,
                )?;
                ensure(
                    used_units & (*ss).free_units == 0,
                    "free units overlap slabs",
                    at,
                )?;
                ensure(
                    (used_units | (*ss).free_units) == geo.all_free_units(),
                    "units are free or in a slab",
                    at,
                )?;
                if (*ss).held == 0 {
                    empty += 1;
                }
                ss = (*ss).next;
            }
            ensure(superslabs == self.n.superslabs, "SuperSlab count", 0)?;
            ensure(empty == self.n.empty, "empty SuperSlab count", 0)?;
            for (c, &used) in class_used.iter().enumerate() {
                ensure(
                    used == self.class_held[c] + self.mags[c].len() as usize,
                    "class held + magazine length == sum of slab used",
                    c,
                )?;
                let mut n = 0;
                self.mags[c].for_each(|_| n += 1);
                ensure(n == self.mags[c].len(), "magazine length", c)?;
                let mut p = self.partial[c];
                let mut prev = core::ptr::null_mut();
                while !p.is_null() {
                    ensure(
                        (*p).class as usize == c && (*p).prev == prev,
                        "partial list links",
                        p as usize,
                    )?;
                    prev = p;
                    p = (*p).next;
                }
            }
            let (mut count, mut bytes, mut mapped) = (0, 0, 0);
            let mut h = self.large;
            while !h.is_null() {
                count += 1;
                bytes += (*h).size;
                mapped += (*h).map_size;
                h = (*h).next;
            }
            ensure(count == self.n.large_count, "large count", 0)?;
            ensure(bytes == self.n.large_bytes, "large bytes", 0)?;
            ensure(mapped == self.n.large_mapped, "large mapped bytes", 0)?;
        }
        Ok(())
    }
}
