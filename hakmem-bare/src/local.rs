//! `LocalHeap`: the heap without a lock, for the one core that owns it, with
//! the out-of-memory path and the figures the core heap does not keep.
//!
//! An allocation that the core heap cannot serve goes down the slow path:
//! 1. `trim`: remote frees are collected, slabs that hold nothing give
//!    their units back, and every empty SuperSlab (the retained one too) is
//!    unmapped, so its memory may serve another class or a large block;
//! 2. the out-of-memory hook, if any, is called and may claim more memory;
//!    while it returns `true` the allocation is retried, and the hook called
//!    again when the retry fails.
//!
//!    Between the two, a heap among several (one per core) first asks the
//!    others to give back what they hold empty (`reclaim`, see `percore.rs`).
//!
//! Invariants:
//! - `live` is the sum of the sizes requested by the live allocations made
//!   through this heap (realloc counts the new size), minus the sizes of the
//!   blocks freed through it, modulo 2^BITS: a heap among several may free
//!   more than it allocated (another core's blocks), so only the sum over
//!   the heaps is a count; alone, `live` is one and `peak >= live`;
//! - every state change of a failed call is in the counters only.

use core::alloc::Layout;
use core::fmt;
use core::mem::MaybeUninit;
use core::ptr;

use hakmem_core::{Config, FreeError, Heap, Stats};

use hakmem_core::PageSource;

use crate::error::BareError;
use crate::region::{page_shift_for, FixedRegion, RegionStats};
use crate::shared::RegionSource;

/// The configuration of [`BareHeap::empty`](crate::BareHeap::empty) and
/// [`LocalHeap::new`] users usually want: 16 KiB SuperSlabs of 1 KiB slab
/// units, one empty SuperSlab retained
/// ([`Config::SMALL`]). A 64 KiB board holds up to four SuperSlabs; requests
/// above 896 B are large blocks, each starting on a SuperSlab boundary.
pub const BARE_CONFIG: Config = Config::SMALL;

/// Room kept for the core's large-block header in front of the data (80 B
/// on 64-bit targets, less on 32-bit ones): used to refuse regions that could
/// not hold even the smallest large block.
const LARGE_HEADER_ROOM: usize = 128;

/// The out-of-memory hook: called with the heap (which it may give more
/// memory through [`OomCtx::claim`]) and the layout that could not be
/// served. Returning `true` asks for a retry; the hook is called again if
/// the retry fails, so it must return `false` once it has nothing more to
/// give (a hook that always returns `true` without adding memory spins
/// forever).
///
/// It runs with the heap locked: it must not allocate or free through the
/// same heap (that would deadlock on [`BareHeap`](crate::BareHeap)).
pub type OomHook = fn(&mut OomCtx<'_>, Layout) -> bool;

/// What the out-of-memory hook may do to the heap.
pub struct OomCtx<'a> {
    source: &'a dyn RegionSource,
}

impl OomCtx<'_> {
    /// Gives the heap another region, as [`LocalHeap::claim`].
    ///
    /// # Safety
    /// As [`FixedRegion::claim`]: unless an error is returned, the region is
    /// valid for reads and writes and used by nothing else while the heap
    /// lives.
    pub unsafe fn claim(&mut self, start: *mut u8, len: usize) -> Result<usize, BareError> {
        // SAFETY: forwarded caller contract.
        unsafe { self.source.claim(start, len) }
    }

    /// The page source's figures (regions, managed and mapped bytes).
    pub fn region_stats(&self) -> RegionStats {
        self.source.stats()
    }
}

/// A heap over [`FixedRegion`]s with no lock: for single-core code that owns
/// it (a `static mut` behind its own critical section, a kernel's per-CPU
/// heap, a test). [`BareHeap`](crate::BareHeap) is this behind a spin lock.
///
/// The API follows `GlobalAlloc` (a [`Layout`] on every call), which lets it
/// count the bytes the application holds and their peak.
///
/// `S` is the page source: a [`FixedRegion`] of its own (the default), or a
/// [`&SharedRegion`](crate::SharedRegion) that heaps on other cores map
/// from too ([`PerCoreHeap`](crate::PerCoreHeap)).
pub struct LocalHeap<S: PageSource + RegionSource = FixedRegion> {
    heap: Heap<S>,
    oom: Option<OomHook>,
    live: usize,
    peak: usize,
    allocs: u64,
    frees: u64,
    failed: u64,
    oom_calls: u64,
}

/// Exact figures of a [`LocalHeap`] or [`BareHeap`](crate::BareHeap).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BareStats {
    /// The core heap's exact figures (held blocks and bytes, SuperSlabs,
    /// large blocks, per class).
    pub heap: Stats,
    /// The page source's figures: regions, managed bytes, mapped bytes now
    /// and at peak.
    pub region: RegionStats,
    /// Bytes requested by the live allocations.
    pub live_bytes: usize,
    /// The most bytes ever requested by live allocations at once.
    pub peak_live_bytes: usize,
    /// Successful allocations (alloc, alloc_zeroed, realloc that moved or
    /// allocated).
    pub allocs: u64,
    /// Successful frees.
    pub frees: u64,
    /// Allocations (and reallocs) that returned null.
    pub failed_allocs: u64,
    /// Calls of the out-of-memory hook.
    pub oom_hook_calls: u64,
}

impl fmt::Display for BareStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "hakmem-bare: {} regions, {} B managed, {} B mapped (peak {} B)",
            self.region.regions,
            self.region.managed_bytes,
            self.region.mapped_bytes,
            self.region.peak_mapped_bytes
        )?;
        writeln!(
            f,
            "  live {} B requested (peak {} B), {} blocks held ({} B), {} free",
            self.live_bytes,
            self.peak_live_bytes,
            self.heap.held_blocks,
            self.heap.held_bytes,
            self.heap.free_blocks
        )?;
        write!(
            f,
            "  {} allocs, {} frees, {} failed, {} oom-hook calls; superslabs {} mapped, {} large blocks",
            self.allocs,
            self.frees,
            self.failed_allocs,
            self.oom_hook_calls,
            self.heap.superslabs_mapped,
            self.heap.large_count
        )
    }
}

/// The page source [`LocalHeap::new`] builds for `cfg`: pages of an eighth
/// of a SuperSlab (at least 256 B; [`page_shift_for`]),
/// chunks of the SuperSlab size, regions refused below the smallest large
/// block.
pub(crate) fn region_for(cfg: &Config) -> Result<FixedRegion, BareError> {
    let geo = cfg.geometry()?;
    let ss = geo.superslab_shift as u32;
    Ok(FixedRegion::new(page_shift_for(ss), ss)
        .with_min_claim(geo.max_slab_size() + 1 + LARGE_HEADER_ROOM))
}

impl LocalHeap {
    /// A heap with no memory yet (every allocation fails until
    /// [`claim`](Self::claim)).
    ///
    /// The heap is about 2 KiB on 32-bit targets (4 KiB on 64-bit ones);
    /// where the stack is small, build it in place with
    /// [`new_in`](Self::new_in).
    pub fn new(cfg: Config) -> Result<LocalHeap, BareError> {
        let mut slot = MaybeUninit::uninit();
        Self::new_in(&mut slot, cfg)?;
        // SAFETY: `new_in` succeeded, so the slot is initialised.
        Ok(unsafe { slot.assume_init() })
    }

    /// Builds a heap with no memory in `slot` (a static, say), holding at
    /// most one copy of the core heap on the stack on the way.
    #[inline(never)]
    pub fn new_in(
        slot: &mut MaybeUninit<LocalHeap>,
        cfg: Config,
    ) -> Result<&mut LocalHeap, BareError> {
        LocalHeap::new_in_with(slot, region_for(&cfg)?, cfg)
    }

    /// A heap over `[start, start + len)`.
    ///
    /// # Safety
    /// As [`claim`](Self::claim).
    pub unsafe fn with_region(
        start: *mut u8,
        len: usize,
        cfg: Config,
    ) -> Result<LocalHeap, BareError> {
        let mut h = LocalHeap::new(cfg)?;
        // SAFETY: forwarded caller contract.
        unsafe { h.claim(start, len)? };
        Ok(h)
    }
}

impl<S: PageSource + RegionSource> LocalHeap<S> {
    /// Builds a heap with no memory of its own over `source` in `slot`,
    /// holding at most one copy of the core heap on the stack on the way.
    #[inline(never)]
    pub fn new_in_with(
        slot: &mut MaybeUninit<LocalHeap<S>>,
        source: S,
        cfg: Config,
    ) -> Result<&mut LocalHeap<S>, BareError> {
        crate::fault::install();
        let p = slot.as_mut_ptr();
        // SAFETY: every field of the slot is written once, through raw
        // pointers into it, before it is read.
        unsafe {
            // The core heap is built in place too (never whole on the stack).
            let heap = &mut *ptr::addr_of_mut!((*p).heap).cast::<MaybeUninit<Heap<S>>>();
            Heap::new_in(heap, source, cfg)?;
            ptr::addr_of_mut!((*p).oom).write(None);
            ptr::addr_of_mut!((*p).live).write(0);
            ptr::addr_of_mut!((*p).peak).write(0);
            ptr::addr_of_mut!((*p).allocs).write(0);
            ptr::addr_of_mut!((*p).frees).write(0);
            ptr::addr_of_mut!((*p).failed).write(0);
            ptr::addr_of_mut!((*p).oom_calls).write(0);
            Ok(slot.assume_init_mut())
        }
    }

    /// Gives the heap the region `[start, start + len)`, which need not touch
    /// the others. Returns the bytes the heap may use of it.
    ///
    /// The region is rounded inwards to pages of an eighth of a SuperSlab
    /// (at least 256 B), tracked by two bitmaps of one bit per page: inside
    /// the heap for the first [`INLINE_REGIONS`](crate::INLINE_REGIONS)
    /// regions of up to 64 SuperSlabs,
    /// else in the region (before its first SuperSlab boundary when they fit
    /// there, else in its last pages). SuperSlabs go on SuperSlab boundaries
    /// inside it; large blocks start on one and may run past the next.
    /// A region that cannot hold even the smallest large block from a
    /// SuperSlab boundary is refused ([`BareError::TooSmall`]); see
    /// [`BareError`] for the other refusals. A refused region is not written.
    ///
    /// # Safety
    /// Unless an error is returned, `[start, start + len)` must be valid for
    /// reads and writes and used by nothing but this heap for as long as the
    /// heap lives.
    pub unsafe fn claim(&mut self, start: *mut u8, len: usize) -> Result<usize, BareError> {
        // SAFETY: forwarded caller contract.
        unsafe { RegionSource::claim(self.heap.source(), start, len) }
    }

    /// Sets (or removes) the out-of-memory hook.
    pub fn set_oom_hook(&mut self, hook: Option<OomHook>) {
        self.oom = hook;
    }

    /// Allocates a block for `layout`; null when out of memory (after the
    /// slow path: trim, then the hook).
    #[inline]
    pub fn alloc(&mut self, layout: Layout) -> *mut u8 {
        self.alloc_with(layout, false, &mut || false)
    }

    /// Like [`alloc`](Self::alloc), with the bytes zeroed.
    pub fn alloc_zeroed(&mut self, layout: Layout) -> *mut u8 {
        self.alloc_with(layout, true, &mut || false)
    }

    /// `alloc` or `alloc_zeroed`; `reclaim` runs on the slow path, after
    /// this heap's own trim and before the hook, and says whether it freed
    /// anything (other cores' heaps trimmed).
    #[inline]
    pub(crate) fn alloc_with(
        &mut self,
        layout: Layout,
        zero: bool,
        reclaim: &mut dyn FnMut() -> bool,
    ) -> *mut u8 {
        let p = if zero {
            self.heap.alloc_zeroed(layout.size(), layout.align())
        } else {
            self.heap.alloc(layout.size(), layout.align())
        };
        if p.is_null() {
            return self.alloc_slow(layout, zero, reclaim);
        }
        self.count_alloc(layout.size());
        p
    }

    #[cold]
    fn alloc_slow(
        &mut self,
        layout: Layout,
        zero: bool,
        reclaim: &mut dyn FnMut() -> bool,
    ) -> *mut u8 {
        let r = self.retry(layout, reclaim, |h| {
            Ok(if zero {
                h.alloc_zeroed(layout.size(), layout.align())
            } else {
                h.alloc(layout.size(), layout.align())
            })
        });
        let p = r.unwrap_or(ptr::null_mut());
        if !p.is_null() {
            self.count_alloc(layout.size());
        }
        p
    }

    /// Frees a block.
    ///
    /// # Safety
    /// `ptr` was returned by this heap for `layout` (same size and
    /// alignment) and is not used afterwards.
    ///
    /// # Panics
    /// On a pointer that is not a live block of this heap (never allocated,
    /// interior, already freed), with hakmem's message naming it.
    #[inline]
    pub unsafe fn dealloc(&mut self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded caller contract.
        if let Err(e) = unsafe { self.try_dealloc(ptr, layout) } {
            panic!("{e}");
        }
    }

    /// Frees a block, reporting an invalid pointer instead of panicking
    /// (nothing changes then). A null pointer is ignored.
    ///
    /// # Safety
    /// If `ptr` is a live block of this heap, it was allocated for `layout`
    /// and is not used afterwards; it must not point into the body of a live
    /// large block beyond its first SuperSlab (see `Heap::dealloc`).
    #[inline]
    pub unsafe fn try_dealloc(&mut self, ptr: *mut u8, layout: Layout) -> Result<(), FreeError> {
        if ptr.is_null() {
            return Ok(());
        }
        // SAFETY: forwarded caller contract.
        unsafe { self.heap.dealloc(ptr)? };
        self.live = self.live.wrapping_sub(layout.size());
        self.frees += 1;
        Ok(())
    }

    /// Resizes a block to `new_size` bytes (alignment `layout.align()`), in
    /// place when it can; null when out of memory, the old block untouched.
    ///
    /// # Safety
    /// As [`dealloc`](Self::dealloc), and `new_size` rounded up to the
    /// alignment does not overflow `isize`.
    ///
    /// # Panics
    /// On a pointer that is not a live block of this heap.
    pub unsafe fn realloc(&mut self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded caller contract.
        match unsafe { self.try_realloc(ptr, layout, new_size) } {
            Ok(p) => p,
            Err(e) => panic!("{e}"),
        }
    }

    /// [`realloc`](Self::realloc), reporting an invalid pointer instead of
    /// panicking (nothing changes then). A null `ptr` allocates.
    ///
    /// # Safety
    /// As [`try_dealloc`](Self::try_dealloc).
    pub unsafe fn try_realloc(
        &mut self,
        ptr: *mut u8,
        layout: Layout,
        new_size: usize,
    ) -> Result<*mut u8, FreeError> {
        // SAFETY: forwarded caller contract.
        unsafe { self.try_realloc_with(ptr, layout, new_size, &mut || false) }
    }

    /// `try_realloc`, with `reclaim` as in `alloc_with`.
    ///
    /// # Safety
    /// As [`try_dealloc`](Self::try_dealloc).
    pub(crate) unsafe fn try_realloc_with(
        &mut self,
        ptr: *mut u8,
        layout: Layout,
        new_size: usize,
        reclaim: &mut dyn FnMut() -> bool,
    ) -> Result<*mut u8, FreeError> {
        let align = layout.align();
        // SAFETY: forwarded caller contract.
        let mut p = unsafe { self.heap.realloc(ptr, new_size, align)? };
        if p.is_null() {
            // SAFETY: as above; a failed realloc left `ptr` live and unmoved.
            p = self.retry(layout, reclaim, |h| unsafe {
                h.realloc(ptr, new_size, align)
            })?;
            if p.is_null() {
                return Ok(p);
            }
        }
        if ptr.is_null() {
            self.count_alloc(new_size);
        } else {
            self.live = self.live.wrapping_sub(layout.size()).wrapping_add(new_size);
            if (self.live as isize) > (self.peak as isize) {
                self.peak = self.live;
            }
            if p != ptr {
                self.allocs += 1;
                self.frees += 1;
            }
        }
        Ok(p)
    }

    /// The usable size of a live block (at least the size requested).
    ///
    /// # Safety
    /// As [`try_dealloc`](Self::try_dealloc)'s pointer rules.
    pub unsafe fn usable_size(&self, ptr: *mut u8) -> Result<usize, FreeError> {
        // SAFETY: forwarded caller contract.
        unsafe { self.heap.usable_size(ptr) }
    }

    /// Returns cached blocks to their slabs and every empty SuperSlab to the
    /// regions (the allocation slow path does this by itself). Returns how
    /// many SuperSlabs went back.
    pub fn trim(&mut self) -> usize {
        self.heap.trim()
    }

    /// Exact figures.
    pub fn stats(&self) -> BareStats {
        BareStats {
            heap: self.heap.stats(),
            region: RegionSource::stats(self.heap.source()),
            live_bytes: self.live,
            peak_live_bytes: self.peak,
            allocs: self.allocs,
            frees: self.frees,
            failed_allocs: self.failed,
            oom_hook_calls: self.oom_calls,
        }
    }

    /// The core heap, to read (its `check`, `geometry`, `source`).
    pub fn core(&self) -> &Heap<S> {
        &self.heap
    }

    #[inline]
    fn count_alloc(&mut self, size: usize) {
        self.allocs += 1;
        self.live = self.live.wrapping_add(size);
        // Signed: a heap among several may be below zero (see the module).
        if (self.live as isize) > (self.peak as isize) {
            self.peak = self.live;
        }
    }

    /// The slow path of a failed allocation: trim and retry, `reclaim` and
    /// retry, then the hook while it asks for retries.
    #[cold]
    fn retry(
        &mut self,
        layout: Layout,
        reclaim: &mut dyn FnMut() -> bool,
        mut attempt: impl FnMut(&mut Heap<S>) -> Result<*mut u8, FreeError>,
    ) -> Result<*mut u8, FreeError> {
        // Cached blocks keep their slabs, and retained SuperSlabs their
        // chunks, from serving other classes and large blocks: give them back.
        self.heap.trim();
        let p = attempt(&mut self.heap)?;
        if !p.is_null() {
            return Ok(p);
        }
        if reclaim() {
            let p = attempt(&mut self.heap)?;
            if !p.is_null() {
                return Ok(p);
            }
        }
        while let Some(hook) = self.oom {
            self.oom_calls += 1;
            if !hook(
                &mut OomCtx {
                    source: self.heap.source(),
                },
                layout,
            ) {
                break;
            }
            let p = attempt(&mut self.heap)?;
            if !p.is_null() {
                return Ok(p);
            }
        }
        self.failed += 1;
        Ok(ptr::null_mut())
    }
}
