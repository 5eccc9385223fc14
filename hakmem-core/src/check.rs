//! Whole-heap invariant checks, for tests, debugging and `hardened` builds.
//!
//! [`Heap::check`] walks every SuperSlab, slab, free and remote list, the
//! outgoing batches and every large block, and verifies the sums that the
//! accounting promises (see the
//! Invariants of `heap.rs`, `slab.rs` and `superslab.rs`). It costs a pass
//! over all metadata and every free block, so it is not called on
//! any allocation path.

use core::fmt;
use core::sync::atomic::Ordering;

use crate::heap::{Heap, LISTS};
use crate::medium::{arena_of, Arena, MEDIUM_CLASS};
use crate::page_source::PageSource;
use crate::size_class::class_size;
use crate::slab::{free_tag, Slab, IN_PARTIAL, NO_CLASS, PINNED};
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
        let mut superslabs = 0;
        let mut empty = 0;
        let mut in_partial = 0usize;
        let geo = &self.geo;
        let mut ss = self.superslabs;
        // SAFETY: list members are live owned SuperSlabs; slab metadata and
        // free lists inside them are the heap's own; remote lists are only
        // ever prepended to by other threads, so walking them from a loaded
        // head is sound.
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
                let mut live = 0u32;
                let mut remote = 0usize;
                let mut used_units = 0u64;
                let mut empty_units = 0u64;
                let mut u = 0usize;
                while u < geo.units as usize {
                    let slab = SuperSlab::slab(ss, u);
                    let s: &Slab = &*slab;
                    if s.class == NO_CLASS {
                        ensure(s.head as usize == u, "free unit head", slab as usize)?;
                        ensure(s.start == 0 && s.end == 0, "free unit range", slab as usize)?;
                        u += 1;
                        continue;
                    }
                    if s.class == MEDIUM_CLASS {
                        let units = self.check_medium(ss, slab, u, &mut remote)?;
                        used_units |= units;
                        if s.used > 0 {
                            live += 1;
                        } else {
                            empty_units |= units;
                        }
                        ensure(
                            s.flags & IN_PARTIAL != 0,
                            "medium slabs are listed",
                            slab as usize,
                        )?;
                        in_partial += 1;
                        u += s.span as usize;
                        continue;
                    }
                    let c = s.class as usize;
                    // (So the partial lists of classes past the heap's are
                    // empty: `alloc_fast` relies on it.)
                    ensure(c < geo.slab_classes, "slab class", slab as usize)?;
                    let bump = s.bump.load(Ordering::Relaxed);
                    ensure(
                        s.head as usize == u && s.span >= 1,
                        "slab head",
                        slab as usize,
                    )?;
                    ensure(s.size as usize == class_size(c), "slab size", slab as usize)?;
                    ensure(
                        s.start <= bump && bump <= s.end,
                        "slab bump range",
                        slab as usize,
                    )?;
                    ensure((s.end - s.start) % s.size == 0, "slab end", slab as usize)?;
                    let mut units = 0u64;
                    for v in u..u + s.span as usize {
                        ensure(
                            (*SuperSlab::slab(ss, v)).head as usize == u,
                            "span head",
                            slab as usize,
                        )?;
                        units |= 1u64 << v;
                    }
                    used_units |= units;
                    // Walk the free list.
                    let mut n = 0u32;
                    let mut b = s.free;
                    let carved = s.carved();
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
                        ensure(n <= carved, "free list longer than carved", slab as usize)?;
                        b = (*b).next;
                    }
                    ensure(
                        s.used + n == carved,
                        "used + free list length == carved",
                        slab as usize,
                    )?;
                    let (mut r, listed) = s.remote.peek(ss);
                    let mut on_remote = 0u32;
                    while !r.is_null() {
                        let off = r as usize - at;
                        ensure(
                            off >= s.start as usize && off < bump as usize,
                            "remote block in slab",
                            r as usize,
                        )?;
                        remote += 1;
                        on_remote += 1;
                        ensure(
                            on_remote <= s.used,
                            "remote list within used",
                            slab as usize,
                        )?;
                        r = (*r).next;
                    }
                    ensure(
                        on_remote == listed,
                        "remote list as long as its count",
                        slab as usize,
                    )?;
                    ensure(
                        (s.flags & PINNED != 0) == (self.partial[c] == slab),
                        "pinned iff its class's current slab",
                        slab as usize,
                    )?;
                    if s.used > 0 || s.flags & PINNED != 0 {
                        live += 1;
                    } else {
                        empty_units |= units;
                    }
                    if s.flags & IN_PARTIAL != 0 {
                        in_partial += 1;
                    } else {
                        ensure(!s.has_room(), "a slab with room is partial", slab as usize)?;
                    }
                    u += s.span as usize;
                }
                ensure(
                    live == (*ss).live,
                    "live == slabs with used > 0 or pinned",
                    at,
                )?;
                ensure(
                    empty_units == (*ss).empty_units,
                    "empty units == units of slabs with used == 0",
                    at,
                )?;
                ensure(
                    remote <= (*ss).remote_count.load(Ordering::Acquire),
                    "remote lists no longer than remote_count",
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
                if (*ss).live == 0 {
                    empty += 1;
                }
                ss = (*ss).next;
            }
            ensure(superslabs == self.n.superslabs, "SuperSlab count", 0)?;
            ensure(empty == self.n.empty, "empty SuperSlab count", 0)?;
            let mut linked = 0usize;
            for c in 0..LISTS {
                let mut p = self.partial[c];
                let mut prev = core::ptr::null_mut();
                while !p.is_null() {
                    ensure(
                        (*p).class as usize == c && (*p).prev == prev,
                        "partial list links",
                        p as usize,
                    )?;
                    ensure((*p).flags & IN_PARTIAL != 0, "partial flag", p as usize)?;
                    linked += 1;
                    prev = p;
                    p = (*p).next;
                }
                ensure(self.partial_tail[c] == prev, "partial list tail", c)?;
            }
            ensure(linked == in_partial, "flagged slabs are linked", 0)?;
            ensure(self.outgoing.check(), "outgoing batch lengths add up", 0)?;
            ensure(
                self.medium_index_ok(),
                "medium index agrees with the arenas",
                0,
            )?;
            let (mut count, mut bytes, mut mapped, mut kept) = (0, 0, 0, 0);
            let mut h = self.large;
            while !h.is_null() {
                count += 1;
                bytes += (*h).size;
                mapped += (*h).map_size;
                kept += (*h).kept;
                h = (*h).next;
            }
            ensure(count == self.n.large_count, "large count", 0)?;
            ensure(bytes == self.n.large_bytes, "large bytes", 0)?;
            ensure(mapped == self.n.large_mapped, "large mapped bytes", 0)?;
            ensure(
                kept == self.n.large_kept && kept <= crate::large::LARGE_CACHE_COMMITTED,
                "large blocks' kept pages add up, within their bound",
                0,
            )?;
            let cache = &self.large_cache;
            ensure(
                cache.len <= self.cfg.large_cache.min(crate::large::LARGE_CACHE_MAX),
                "large cache within its bound",
                0,
            )?;
            let cached: usize = cache.regions[..cache.len].iter().map(|r| r.size).sum();
            ensure(cached == self.n.large_cached, "large cached bytes", 0)?;
            for r in &cache.regions[..cache.len] {
                ensure(
                    self.source.contains(r.base as usize) && *r.base.cast::<usize>() == 0,
                    "cached region mapped, without a header",
                    r.base as usize,
                )?;
            }
        }
        Ok(())
    }

    /// Checks medium slab `slab` (first unit `u`) of `ss`: its record, its
    /// arena, its held blocks against `used`, its remote list (added to
    /// `remote`). Returns its units.
    ///
    /// # Safety
    /// `slab` is a medium slab of the live owned SuperSlab `ss`.
    unsafe fn check_medium(
        &self,
        ss: *mut SuperSlab,
        slab: *mut Slab,
        u: usize,
        remote: &mut usize,
    ) -> Result<u64, CheckError> {
        let at = slab as usize;
        // SAFETY: per the caller; remote lists are only prepended to.
        unsafe {
            let s: &Slab = &*slab;
            ensure(
                s.head as usize == u
                    && s.span >= 1
                    && u + s.span as usize <= self.geo.units as usize,
                "medium slab head",
                at,
            )?;
            ensure(
                s.start == 0 && s.bump.load(Ordering::Relaxed) == 0 && s.free.is_null(),
                "medium slab has no slab blocks",
                at,
            )?;
            let mut units = 0u64;
            for v in u..u + s.span as usize {
                ensure(
                    (*SuperSlab::slab(ss, v)).head as usize == u,
                    "span head",
                    at,
                )?;
                units |= 1u64 << v;
            }
            let a = arena_of(ss, slab);
            let (held, _, _) = Arena::check(a).map_err(|what| CheckError { what, at })?;
            ensure(held == s.used, "medium held blocks == used", at)?;
            let (mut r, listed) = s.remote.peek(ss);
            let mut on_remote = 0u32;
            while !r.is_null() {
                ensure(
                    Arena::check_held(a, r as usize).is_ok(),
                    "remote medium block held",
                    r as usize,
                )?;
                ensure(
                    (*r).tag == free_tag(r.cast()),
                    "remote block tag",
                    r as usize,
                )?;
                *remote += 1;
                on_remote += 1;
                ensure(on_remote <= s.used, "remote list within used", at)?;
                r = (*r).next;
            }
            ensure(on_remote == listed, "remote list as long as its count", at)?;
            Ok(units)
        }
    }
}
