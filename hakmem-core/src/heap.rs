//! The heap: one owner's SuperSlabs, slabs and large blocks, and the two
//! fast paths. The rest of the heap's work lives beside the noun it is about:
//! the slab life cycle in `slab.rs`, the SuperSlab list and its release in
//! `superslab.rs`, the counts in `account.rs`, remote frees (push, batching
//! and collection) in `remote.rs`, giving memory back in `purge.rs`, large
//! blocks in `large.rs`, figures in `stats.rs`, invariant checks in
//! `check.rs`.
//!
//! Life of a small block (the names are functions):
//! - alloc: [`Heap::alloc`] → class by shift → `alloc_class`: the class's
//!   current slab (head of its partial list), pop its free list, count it
//!   (`account::count_alloc_current`) → else `alloc_refill`: carve from the
//!   bump pointer (the rest of that page onto the free list,
//!   `carve_batch`), take the slab's remote frees, or the next partial slab → else
//!   `new_slab_slow`: collect remote frees, carve a slab from free units of
//!   an owned SuperSlab → else `map_superslab` → `PageSource::map`.
//! - free: [`Heap::dealloc`] → SuperSlab by mask → owned? (`known` cache,
//!   else `locate` through `PageSource::contains`) → not owned: checks, then
//!   the outgoing batch for its slab (`remote::send`) → owned: checks, push
//!   on the slab's free list, count it (`account::count_free`) → the slab
//!   emptied: the SuperSlab's live-slab count down → zero: `on_empty` →
//!   retain (at most `Config::retain` empty) or `release_superslab` →
//!   `PageSource::unmap`.
//!
//! There is no cache in front of the slabs: a slab's own free list is the
//! cache, so the slab's `used` is exact at every moment and a free touches
//! the block and its slab's record only (mimalloc's design, chosen and
//! measured in docs/performance.md).
//!
//! Invariants (checked by [`Heap::check`]):
//! - per slab: `used + (length of free) == carved`;
//! - per SuperSlab: `live` = number of its slabs with `used > 0` or current
//!   (pinned, `account.rs`); its held blocks are `Σ slab.used − remote_count`;
//!   `live == 0` for exactly `Counters::empty` of them;
//! - every slab with room is in its class's partial list;
//! - no SuperSlab with `live == 0` stays mapped beyond `Config::retain` of
//!   them, except during one call.

use core::ptr;
use core::sync::atomic::{AtomicUsize, Ordering};

use crate::config::{Config, ConfigError, Geometry};
use crate::error::{FreeError, FreeErrorKind};
use crate::large::{LargeBlock, LargeCache, LARGE_LIVE};
use crate::locate::{self, Found};
use crate::medium::{Arena, MediumIndex, MEDIUM_CLASS};
use crate::page_source::PageSource;
use crate::remote::Outgoing;
#[cfg(not(feature = "hardened"))]
use crate::size_class::{class_for, class_size, natural_align};
use crate::size_class::{class_of_table, MIN_ALIGN, NUM_CLASSES, TABLE_MAX};
use crate::slab::{corrupted, free_tag, Block, Slab, FRESH, IN_PARTIAL};
use crate::superslab::SuperSlab;

/// Source of heap ids; 0 is never used, so it can mean "no heap".
static NEXT_HEAP_ID: AtomicUsize = AtomicUsize::new(1);

/// Entries in the cache of owned SuperSlab bases (direct-mapped by address:
/// SuperSlabs mapped one after another fill it without collisions up to
/// this many): 256 (512 MiB of 2 MiB SuperSlabs, 2 KiB of heap) on 64-bit
/// targets, 16 on 32-bit ones, whose heaps are small (and whose heap
/// struct may live on a small stack while it is built).
pub(crate) const KNOWN: usize = if usize::BITS == 64 { 256 } else { 16 };

/// An empty `known` entry: no masked address equals it (masked addresses
/// have their low bits clear), so a pointer below the first SuperSlab-sized
/// boundary — `1 as *mut u8`, a dangling zero-size pointer — never matches
/// (0 would: its mask is 0).
pub(crate) const NO_SUPERSLAB: usize = 1;

/// Bytes a refill carves at most onto a slab's free list at once: to the end
/// of the 4 KiB stretch the handed-out block ends in (`Heap::carve_batch`).
#[cfg(not(feature = "hardened"))]
const CARVE_SPAN: u32 = 4096;

/// Lists of slabs: one partial list per class, then the medium slabs.
pub(crate) const LISTS: usize = NUM_CLASSES + 1;

/// Whether [`Heap::alloc_fast`] and [`Heap::free_fast`] can serve a call:
/// false in the `hardened` build (its blocks carry canaries, and every
/// free is checked in full), where callers need not try them.
pub const FAST_PATHS: bool = !cfg!(feature = "hardened");

/// Counters of the heap as a whole, kept on the paths that change them.
#[derive(Default)]
pub(crate) struct Counters {
    /// SuperSlabs mapped now.
    pub superslabs: usize,
    /// SuperSlabs ever mapped.
    pub created: usize,
    /// SuperSlabs ever returned.
    pub released: usize,
    /// SuperSlabs with no live slab (retained).
    pub empty: usize,
    /// Live large blocks, their requested and mapped bytes.
    pub large_count: usize,
    pub large_bytes: usize,
    pub large_mapped: usize,
    /// Bytes of freed large regions kept for reuse (`large.rs`).
    pub large_cached: usize,
    /// Committed bytes live large blocks kept past twice their size when
    /// they took a cached region (the sum of their `kept`; `large.rs`).
    pub large_kept: usize,
}

/// A single-owner heap over a [`PageSource`].
///
/// Not `Sync`: one thread uses it at a time. It is `Send` (when the source
/// is), so a heap can be handed to another owner, for instance at thread
/// exit, with its pending remote frees intact: they live in its slabs.
/// Other threads free its blocks with [`free_remote`](crate::free_remote)
/// (or through their own heap's `dealloc`, which batches them).
pub struct Heap<P: PageSource> {
    /// The geometry, first: the fast paths read its mask and shifts.
    pub(crate) geo: Geometry,
    /// Per class: slabs that may have a free or uncarved block (doubly
    /// linked); the head is the slab allocations come from.
    /// The last list (`MEDIUM_CLASS`) holds every medium slab.
    pub(crate) partial: [*mut Slab; LISTS],
    /// Direct-mapped cache of owned SuperSlab bases ([`NO_SUPERSLAB`]:
    /// none), so a local free needs no `PageSource::contains`.
    pub(crate) known: [usize; KNOWN],
    /// Per class: the tail of `partial`, where slabs that regain room go.
    pub(crate) partial_tail: [*mut Slab; LISTS],
    /// Blocks of other heaps freed here, batched per slab before one
    /// compare-and-swap hands each batch to its owner.
    pub(crate) outgoing: Outgoing,
    pub(crate) source: P,
    pub(crate) cfg: Config,
    pub(crate) id: usize,
    /// Every SuperSlab this heap owns (doubly linked).
    pub(crate) superslabs: *mut SuperSlab,
    /// Every live large block this heap owns (doubly linked).
    pub(crate) large: *mut LargeBlock,
    /// Freed large regions kept for reuse.
    pub(crate) large_cache: LargeCache,
    /// Medium slabs by their non-empty bins.
    pub(crate) medium: MediumIndex,
    pub(crate) n: Counters,
}

// SAFETY: a heap's raw pointers all point into regions it owns (or, for the
// outgoing batches, into blocks the application gave up, whose SuperSlabs
// stay mapped while they are counted used), which move with it; other
// threads reach those regions only through the atomic remote lists. Moving
// the heap to another thread is therefore sound when the page source may be
// used there too.
unsafe impl<P: PageSource + Send> Send for Heap<P> {}

/// What [`Heap::free_fast_kind`] did with a pointer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FastFree {
    /// Freed by the fast path: on its slab's free list, counted free.
    Done,
    /// In no SuperSlab the heap's `known` cache holds (another heap's
    /// block, a large block, null, not a block): nothing changed, and
    /// [`Heap::dealloc_unknown`] frees or reports it.
    Unknown,
    /// In a known SuperSlab but not a block the fast path takes (the
    /// slab's last block, one not listed partial, a bad pointer): nothing
    /// changed, and [`Heap::dealloc_general`] frees or reports it.
    Other,
}

impl<P: PageSource> Heap<P> {
    /// Makes an empty heap; maps nothing until the first allocation.
    pub fn new(source: P, cfg: Config) -> Result<Self, ConfigError> {
        let geo = cfg.geometry()?;
        Ok(Heap {
            geo,
            partial: [ptr::null_mut(); LISTS],
            known: [NO_SUPERSLAB; KNOWN],
            partial_tail: [ptr::null_mut(); LISTS],
            outgoing: Outgoing::EMPTY,
            source,
            cfg,
            id: NEXT_HEAP_ID.fetch_add(1, Ordering::Relaxed),
            superslabs: ptr::null_mut(),
            large: ptr::null_mut(),
            large_cache: LargeCache::EMPTY,
            medium: MediumIndex::EMPTY,
            n: Counters::default(),
        })
    }

    /// Makes an empty heap in `slot`, field by field, so the heap is never
    /// held on the stack as a whole (it is several KiB: on a small stack,
    /// building it in a static's slot is what makes `init` cheap).
    pub fn new_in(
        slot: &mut core::mem::MaybeUninit<Self>,
        source: P,
        cfg: Config,
    ) -> Result<&mut Self, ConfigError> {
        let geo = cfg.geometry()?;
        let h = slot.as_mut_ptr();
        // SAFETY: every field is written once through a raw pointer into
        // the slot (arrays element by element), before the slot is read.
        unsafe {
            ptr::addr_of_mut!((*h).geo).write(geo);
            let partial = ptr::addr_of_mut!((*h).partial).cast::<*mut Slab>();
            let tail = ptr::addr_of_mut!((*h).partial_tail).cast::<*mut Slab>();
            for c in 0..LISTS {
                partial.add(c).write(ptr::null_mut());
                tail.add(c).write(ptr::null_mut());
            }
            let known = ptr::addr_of_mut!((*h).known).cast::<usize>();
            for i in 0..KNOWN {
                known.add(i).write(NO_SUPERSLAB);
            }
            ptr::addr_of_mut!((*h).outgoing).write(Outgoing::EMPTY);
            ptr::addr_of_mut!((*h).source).write(source);
            ptr::addr_of_mut!((*h).cfg).write(cfg);
            ptr::addr_of_mut!((*h).id).write(NEXT_HEAP_ID.fetch_add(1, Ordering::Relaxed));
            ptr::addr_of_mut!((*h).superslabs).write(ptr::null_mut());
            ptr::addr_of_mut!((*h).large).write(ptr::null_mut());
            ptr::addr_of_mut!((*h).large_cache).write(LargeCache::EMPTY);
            ptr::addr_of_mut!((*h).medium).write(MediumIndex::EMPTY);
            ptr::addr_of_mut!((*h).n).write(Counters::default());
            Ok(slot.assume_init_mut())
        }
    }

    /// The page source.
    pub fn source(&self) -> &P {
        &self.source
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The geometry derived from the configuration.
    pub fn geometry(&self) -> &Geometry {
        &self.geo
    }

    /// This heap's id, as recorded in the SuperSlabs it owns.
    pub fn id(&self) -> usize {
        self.id
    }

    /// Changes how many empty SuperSlabs are kept; releases any excess now.
    pub fn set_retain(&mut self, retain: usize) {
        self.cfg.retain = retain;
        if self.n.empty > retain {
            self.release_empty(retain);
        }
    }

    // ----- allocation -------------------------------------------------

    /// Allocates `size` bytes aligned to `align` (a power of two). Returns
    /// null when out of memory, on an invalid alignment or a size too large;
    /// the heap stays fully usable. Size 0 gets a unique minimal block.
    #[inline(always)]
    pub fn alloc(&mut self, size: usize, align: usize) -> *mut u8 {
        self.alloc_any(size, align, false)
    }

    /// Like [`alloc`](Self::alloc), with the bytes zeroed. Fresh memory from a
    /// page source that maps zeroed pages is not cleared again.
    #[inline]
    pub fn alloc_zeroed(&mut self, size: usize, align: usize) -> *mut u8 {
        self.alloc_any(size, align, true)
    }

    #[inline(always)]
    fn alloc_any(&mut self, size: usize, align: usize, zero: bool) -> *mut u8 {
        #[cfg(feature = "hardened")]
        return self.alloc_hardened(size, align, zero);
        #[cfg(not(feature = "hardened"))]
        self.alloc_plain(size, align, zero)
    }

    /// [`alloc_any`](Self::alloc_any) without the hardened canaries.
    #[cfg(not(feature = "hardened"))]
    #[inline(always)]
    fn alloc_plain(&mut self, size: usize, align: usize, zero: bool) -> *mut u8 {
        // Common sizes at the default alignment: one table load. (Every
        // class is a multiple of 16, so any class serves alignment 16.)
        if size <= TABLE_MAX && align <= MIN_ALIGN && align.is_power_of_two() {
            let c = class_of_table(size);
            if c < self.geo.slab_classes {
                return self.alloc_class(c, zero);
            }
            // Past the slab classes (a heap with the medium tier and few or
            // no classes, as on bare metal): the medium tier directly, as
            // `alloc_aligned_or_large` would, without its checks (sizes up
            // to the table are far from overflow).
            if size < self.geo.medium_max {
                let p = self.alloc_medium(size, MIN_ALIGN, zero);
                if !p.is_null() {
                    return p;
                }
                return self.alloc_large(size, MIN_ALIGN, zero);
            }
        }
        self.alloc_aligned_or_large(size, align, zero)
    }

    /// Over-aligned requests, and sizes past the table or the slab classes.
    #[cfg(not(feature = "hardened"))]
    #[inline(never)]
    fn alloc_aligned_or_large(&mut self, size: usize, align: usize, zero: bool) -> *mut u8 {
        if !align.is_power_of_two() || size > (isize::MAX as usize).saturating_sub(align) {
            return ptr::null_mut();
        }
        let align = align.max(MIN_ALIGN);
        if align <= self.geo.unit_size() && self.geo.slab_classes != 0 {
            if let Some(c) = class_for(size, align) {
                if c < self.geo.slab_classes {
                    return self.alloc_class(c, zero);
                }
            }
        }
        // (`medium_max` is 0 when the tier is off.)
        if size < self.geo.medium_max && align <= self.geo.unit_size() {
            let p = self.alloc_medium(size, align, zero);
            if !p.is_null() {
                return p;
            }
        }
        self.alloc_large(size, align, zero)
    }

    /// The allocation fast path: pop the current slab's free list.
    #[inline(always)]
    pub(crate) fn alloc_class(&mut self, c: usize, zero: bool) -> *mut u8 {
        let b = self.pop_current(c);
        if b.is_null() {
            return self.alloc_refill(c, zero);
        }
        if zero {
            // SAFETY: `b` was just popped from the current slab of class
            // `c`, whose blocks are its size.
            unsafe { ptr::write_bytes(b, 0, (*self.partial[c]).size as usize) };
        }
        b
    }

    /// The allocation fast path alone, for callers that bracket it with
    /// their own cheap entry and exit (the C ABI, the Rust allocator): a
    /// request of a size in the class table at an alignment every class has
    /// (at most 16 B), popped from the current slab's free list. Null when
    /// that path does not apply (another tier, no free block at hand, a
    /// link that fails its check): nothing changed, and
    /// [`alloc`](Self::alloc) serves (or reports) the request. Always null
    /// without [`FAST_PATHS`].
    #[inline(always)]
    pub fn alloc_fast(&mut self, size: usize, align: usize) -> *mut u8 {
        if !FAST_PATHS || size > TABLE_MAX || align > MIN_ALIGN {
            return ptr::null_mut();
        }
        // (Classes past the heap's slab classes never have a current slab.)
        self.pop_current(class_of_table(size))
    }

    /// Pops the head of class `c`'s current slab's free list, counted held;
    /// null (nothing changed) when there is no current slab, its list is
    /// empty, or the head fails [`head_intact`](Self::head_intact) — then
    /// [`alloc_refill`](Self::alloc_refill) takes the same head through
    /// [`take_free`](Self::take_free), which reports it.
    #[inline(always)]
    fn pop_current(&mut self, c: usize) -> *mut u8 {
        // SAFETY: `c < NUM_CLASSES` (callers derive it from the class table).
        let slab = unsafe { *self.partial.get_unchecked(c) };
        if slab.is_null() {
            return ptr::null_mut();
        }
        // SAFETY: partial slabs are assigned slabs of live owned
        // SuperSlabs; their free-list blocks are free blocks of theirs, and
        // the head slab of a partial list is the pinned current one.
        unsafe {
            let b = (*slab).free;
            if b.is_null() || !self.head_intact(slab, b) {
                return ptr::null_mut();
            }
            self.pop_head(slab, b);
            b.cast()
        }
    }

    /// Pops `b`, the head of `slab`'s free list, for the application; a
    /// head that fails its check is reported (the heap is corrupted).
    ///
    /// # Safety
    /// `slab` is the current (pinned) slab of its class, of a live owned
    /// SuperSlab, and `b` its free list's head, not null.
    #[inline(always)]
    unsafe fn take_free(&mut self, slab: *mut Slab, b: *mut Block) {
        // SAFETY: per the caller.
        unsafe {
            if !self.head_intact(slab, b) {
                corrupted(b.cast());
            }
            self.pop_head(slab, b);
        }
    }

    /// Whether `b`, the head of `slab`'s free list, is intact: its tag says
    /// the link is ours (and, hardened, its poison and canary hold).
    ///
    /// # Safety
    /// As [`take_free`](Self::take_free).
    #[inline(always)]
    unsafe fn head_intact(&self, slab: *mut Slab, b: *mut Block) -> bool {
        // SAFETY: per the caller: `b` is a free block, its link words ours.
        unsafe {
            if (*b).tag != free_tag(b.cast()) {
                return false;
            }
            #[cfg(feature = "hardened")]
            if !crate::hardened::check_reuse(self.superslab_of(b.cast()), slab, b) {
                return false;
            }
        }
        let _ = slab;
        true
    }

    /// Unlinks the checked head `b` of `slab`'s free list and counts it
    /// held.
    ///
    /// # Safety
    /// As [`take_free`](Self::take_free), and `b` passed
    /// [`head_intact`](Self::head_intact).
    #[inline(always)]
    unsafe fn pop_head(&mut self, slab: *mut Slab, b: *mut Block) {
        // SAFETY: per the caller.
        unsafe {
            (*slab).free = (*b).next;
            (*b).tag = 0;
            self.count_alloc_current(slab);
        }
    }

    /// The current slab of class `c` has no free block: carve one, take its
    /// remote frees, move to the next partial slab, or make a slab.
    #[inline(never)]
    fn alloc_refill(&mut self, c: usize, zero: bool) -> *mut u8 {
        loop {
            let mut slab = self.partial[c];
            if slab.is_null() {
                slab = self.new_slab_slow(c);
                if slab.is_null() {
                    return self.alloc_class_elsewhere(c, zero);
                }
            }
            let ss = self.superslab_of(slab.cast());
            // SAFETY: partial slabs are assigned slabs of live owned
            // SuperSlabs. Fields are accessed through the raw pointer, never
            // a `&mut Slab`: other threads may read the block-geometry
            // fields and push to `remote` concurrently.
            unsafe {
                let size = (*slab).size as usize;
                let b = (*slab).free;
                if !b.is_null() {
                    self.take_free(slab, b);
                    if zero {
                        ptr::write_bytes(b.cast::<u8>(), 0, size);
                    }
                    return b.cast();
                }
                let bump = (*slab).bump.load(Ordering::Relaxed);
                if bump < (*slab).end {
                    let b = ss.cast::<u8>().add(bump as usize).cast::<Block>();
                    let next = bump + size as u32;
                    #[cfg(not(feature = "hardened"))]
                    let next = if zero {
                        next
                    } else {
                        self.carve_batch(ss, slab, next)
                    };
                    (*slab).bump.store(next, Ordering::Relaxed);
                    let fresh = (*slab).flags & FRESH != 0;
                    if !fresh {
                        (*b).tag = 0;
                    }
                    self.count_alloc_current(slab);
                    if zero && !(fresh && P::MAPS_ZEROED) {
                        ptr::write_bytes(b.cast::<u8>(), 0, size);
                    }
                    return b.cast();
                }
                // Exhausted: blocks other threads freed into it, else the
                // next partial slab.
                if self.collect_slab(ss, slab).0 == 0 {
                    self.unlink_partial(slab);
                }
            }
        }
    }

    /// Carves the blocks of `slab` from offset `from` (its new bump
    /// pointer, the free list empty) to the end of the page the block
    /// before `from` ends in (a [`CARVE_SPAN`] stretch; no page a block
    /// handed out did not touch) onto its free list, in address order, so
    /// the allocations that follow stay on the fast path (mimalloc extends a
    /// page's free list the same way). Returns the new bump offset. The
    /// blocks are free, not held: `used` does not change.
    ///
    /// # Safety
    /// `slab` is an assigned slab of the live owned SuperSlab `ss` with an
    /// empty free list, and `from` a block boundary in `[start, end]`.
    #[cfg(not(feature = "hardened"))]
    #[inline(always)]
    unsafe fn carve_batch(&mut self, ss: *mut SuperSlab, slab: *mut Slab, from: u32) -> u32 {
        // SAFETY: per the caller; every block carved lies in `[from, end)`.
        unsafe {
            let size = (*slab).size;
            let lim = from.next_multiple_of(CARVE_SPAN).min((*slab).end);
            let mut off = from;
            let mut tail: *mut *mut Block = ptr::addr_of_mut!((*slab).free);
            while off + size <= lim {
                let q = ss.cast::<u8>().add(off as usize).cast::<Block>();
                (*q).tag = free_tag(q.cast());
                *tail = q;
                tail = ptr::addr_of_mut!((*q).next);
                off += size;
            }
            *tail = ptr::null_mut();
            off
        }
    }

    /// No slab of class `c` can be had: a medium block of the class's size
    /// and alignment, where the medium tier is on.
    #[cold]
    fn alloc_class_elsewhere(&mut self, c: usize, zero: bool) -> *mut u8 {
        // The hardened build keeps its canaries in slab and large blocks
        // only: it serves no medium block.
        #[cfg(feature = "hardened")]
        {
            let _ = (c, zero);
            ptr::null_mut()
        }
        #[cfg(not(feature = "hardened"))]
        self.alloc_class_medium(c, zero)
    }

    /// A medium block of class `c`'s size and alignment.
    #[cfg(not(feature = "hardened"))]
    fn alloc_class_medium(&mut self, c: usize, zero: bool) -> *mut u8 {
        let size = class_size(c);
        if size > self.geo.medium_max {
            return ptr::null_mut();
        }
        self.alloc_medium(size, natural_align(c).min(self.geo.unit_size()), zero)
    }

    // ----- free ---------------------------------------------------------

    /// Frees a block. Null is ignored. A block owned by another heap is
    /// freed remotely (batched, then pushed to its slab's remote list).
    ///
    /// Errors — a pointer that is not a live block (never allocated, interior,
    /// already freed) — leave every piece of state unchanged.
    ///
    /// # Safety
    /// If `ptr` is a live block, nothing uses it afterwards. Without the
    /// `hardened` feature, `ptr` must also not point into the body of a live
    /// large block beyond its first SuperSlab-sized window (an address there
    /// is read as a header; see docs/design.md).
    #[inline(always)]
    pub unsafe fn dealloc(&mut self, ptr: *mut u8) -> Result<(), FreeError> {
        // SAFETY: forwarded caller contract.
        if unsafe { self.free_fast(ptr) } {
            return Ok(());
        }
        // SAFETY: forwarded caller contract.
        unsafe { self.dealloc_general(ptr) }
    }

    /// The free fast path alone, for callers that bracket it with their own
    /// cheap entry and exit (the C ABI, the Rust allocator): `true` when
    /// `ptr` was a held block of a slab of one of this heap's SuperSlabs
    /// (the `known` cache) that keeps its place (listed partial, not turning
    /// empty), now on that slab's free list, counted free. `false`: nothing
    /// changed, and [`dealloc`](Self::dealloc) frees (or reports) it — every
    /// check a free makes is made there again, so a bad pointer is refused
    /// here without a report. Always false without [`FAST_PATHS`].
    ///
    /// # Safety
    /// As [`dealloc`](Self::dealloc).
    #[inline(always)]
    pub unsafe fn free_fast(&mut self, ptr: *mut u8) -> bool {
        if !FAST_PATHS {
            return false;
        }
        let Some(ss) = self.known_superslab(ptr) else {
            return false;
        };
        // SAFETY: forwarded caller contract; `known` holds only live
        // SuperSlabs of this heap, and `ptr` lies inside `ss`.
        unsafe { self.free_known_fast(ss, ptr) }
    }

    /// [`free_fast`](Self::free_fast), saying why it did not apply: for a
    /// pointer in no SuperSlab the `known` cache holds
    /// ([`FastFree::Unknown`]) the caller goes to
    /// [`dealloc_unknown`](Self::dealloc_unknown) without a second look at
    /// the cache — a cross-thread free's first step. Always
    /// [`FastFree::Other`] without [`FAST_PATHS`].
    ///
    /// # Safety
    /// As [`dealloc`](Self::dealloc).
    #[inline(always)]
    pub unsafe fn free_fast_kind(&mut self, ptr: *mut u8) -> FastFree {
        if !FAST_PATHS {
            return FastFree::Other;
        }
        let Some(ss) = self.known_superslab(ptr) else {
            return FastFree::Unknown;
        };
        // SAFETY: as in `free_fast`.
        if unsafe { self.free_known_fast(ss, ptr) } {
            FastFree::Done
        } else {
            FastFree::Other
        }
    }

    /// The free fast path on `ss`, the known SuperSlab holding `ptr`:
    /// `true` when `ptr` was a held block of a slab that keeps its place
    /// (listed partial, not turning empty), now on that slab's free list,
    /// counted free; `false` with nothing changed otherwise.
    ///
    /// # Safety
    /// As [`dealloc`](Self::dealloc); `ss` is a live SuperSlab of this
    /// heap's `known` cache and `ptr` lies inside it.
    #[inline(always)]
    unsafe fn free_known_fast(&mut self, ss: *mut SuperSlab, ptr: *mut u8) -> bool {
        let p = ptr as usize;
        // SAFETY: per the caller; a block that passes `check_carved` is a
        // block boundary of the slab's carved range, whose first words are
        // ours to read (and, free, our links).
        unsafe {
            let slab = SuperSlab::slab_of(ss, p, self.geo.unit_shift);
            if locate::check_carved(slab, p - ss as usize).is_err()
                || (*ptr.cast::<Block>()).tag == free_tag(ptr)
                || (*slab).flags & IN_PARTIAL == 0
                || !Self::free_keeps_live(slab)
            {
                return false;
            }
            Self::link_free(slab, ptr);
            self.count_free_kept(slab);
        }
        true
    }

    /// [`dealloc`](Self::dealloc) without trying its fast path first: for
    /// callers that have just tried [`free_fast`](Self::free_fast) (which
    /// changed nothing), and for every block that path does not take.
    ///
    /// # Safety
    /// As [`dealloc`](Self::dealloc).
    // (Out of line where it follows the fast path; in the hardened build,
    // which has none, it is the whole of `dealloc`.)
    #[cfg_attr(not(feature = "hardened"), inline(never))]
    #[cfg_attr(feature = "hardened", inline(always))]
    pub unsafe fn dealloc_general(&mut self, ptr: *mut u8) -> Result<(), FreeError> {
        if let Some(ss) = self.known_superslab(ptr) {
            // SAFETY: `known` holds only live SuperSlabs of this heap.
            return unsafe { self.free_local(ss, ptr) };
        }
        // SAFETY: forwarded caller contract.
        unsafe { self.dealloc_unknown(ptr) }
    }

    /// The free of a pointer in no SuperSlab the `known` cache holds:
    /// null, a block found through the page source (of another heap's
    /// SuperSlab, a large block, one of this heap's SuperSlabs the cache
    /// lost), or an error, as from [`dealloc`](Self::dealloc). For callers
    /// that were just told [`FastFree::Unknown`]; correct for any pointer,
    /// since everything the cache holds is found through the page source
    /// too.
    ///
    /// # Safety
    /// As [`dealloc`](Self::dealloc).
    #[inline(never)]
    pub unsafe fn dealloc_unknown(&mut self, ptr: *mut u8) -> Result<(), FreeError> {
        // The common case first, in this frame, which saves no registers:
        // a block of another heap's SuperSlab joining its class's batch.
        // Not in the hardened build: it reads the header at the masked
        // address, which `locate` there does only at a region's start (a
        // large block's body could hold a forged header).
        // SAFETY: forwarded caller contract.
        if FAST_PATHS && unsafe { self.send_remote_batched(ptr) } {
            return Ok(());
        }
        // SAFETY: forwarded caller contract.
        unsafe { self.dealloc_unknown_slow(ptr) }
    }

    /// [`dealloc_unknown`](Self::dealloc_unknown) from the start, every
    /// check made again, for what its common case did not take.
    ///
    /// # Safety
    /// As [`dealloc`](Self::dealloc).
    #[inline(never)]
    unsafe fn dealloc_unknown_slow(&mut self, ptr: *mut u8) -> Result<(), FreeError> {
        if ptr.is_null() {
            return Ok(());
        }
        // SAFETY: forwarded caller contract.
        unsafe { self.dealloc_slow(ptr) }
    }

    /// The rest of [`dealloc_unknown_slow`](Self::dealloc_unknown_slow),
    /// its only caller: `locate`, then the owner's free, the remote path or
    /// the large block's.
    ///
    /// # Safety
    /// As [`dealloc`](Self::dealloc); `ptr` is not null.
    #[inline(always)]
    unsafe fn dealloc_slow(&mut self, ptr: *mut u8) -> Result<(), FreeError> {
        // SAFETY: `locate` reads only headers that `contains` vouched for.
        let found = unsafe { locate::locate(&self.source, &self.geo, ptr) };
        let err = |kind| FreeError {
            ptr: ptr as usize,
            kind,
        };
        let found = found.map_err(err)?;
        #[cfg(feature = "hardened")]
        if let Found::Large(h) = found {
            // SAFETY: `locate` returned a live large block.
            unsafe {
                if (*h).state.load(Ordering::Acquire) != LARGE_LIVE {
                    return Err(err(FreeErrorKind::DoubleFree));
                }
                crate::hardened::check_large(h).map_err(err)?;
            }
        }
        match found {
            // SAFETY: `locate` returned a live SuperSlab and its slab.
            Found::Small { ss, slab } => unsafe {
                if (*ss).owner.load(Ordering::Relaxed) == self.id {
                    self.free_local(ss, ptr)
                } else {
                    self.send_remote(ss, slab, ptr)
                }
            },
            // SAFETY: `locate` returned a live large block.
            Found::Large(h) => unsafe {
                if (*h).owner.load(Ordering::Relaxed) == self.id {
                    if (*h).state.load(Ordering::Acquire) != LARGE_LIVE {
                        return Err(err(FreeErrorKind::DoubleFree));
                    }
                    self.free_large(h);
                    Ok(())
                } else {
                    crate::remote::free_large(&self.source, h)
                }
            },
        }
    }

    /// The free fast path: a block of an owned SuperSlab goes on its slab's
    /// free list.
    ///
    /// # Safety
    /// `ss` is a live SuperSlab of this heap and `ptr` lies inside it.
    #[inline(always)]
    unsafe fn free_local(&mut self, ss: *mut SuperSlab, ptr: *mut u8) -> Result<(), FreeError> {
        let p = ptr as usize;
        // SAFETY: `ss` is live and ours, `ptr` inside it (caller).
        unsafe {
            let slab = SuperSlab::slab_of(ss, p, self.geo.unit_shift);
            if let Err(kind) = locate::check_carved(slab, p - ss as usize) {
                return self.free_uncarved(ss, slab, ptr, kind);
            }
            let b = ptr.cast::<Block>();
            if (*b).tag == free_tag(ptr) {
                return Err(FreeError {
                    ptr: p,
                    kind: FreeErrorKind::DoubleFree,
                });
            }
            #[cfg(feature = "hardened")]
            if let Err(kind) = crate::hardened::check_free(ss, slab, ptr) {
                return Err(FreeError { ptr: p, kind });
            }
            self.push_free(slab, ptr);
        }
        Ok(())
    }

    /// The SuperSlab holding `ptr` when the `known` cache says it is one
    /// of this heap's and `ptr` is not its first byte (its header); `None`
    /// for null and everything else.
    #[inline(always)]
    fn known_superslab(&self, ptr: *mut u8) -> Option<*mut SuperSlab> {
        let p = ptr as usize;
        let base = p & self.geo.superslab_mask();
        // SAFETY: the index is reduced modulo KNOWN.
        let known = unsafe {
            *self
                .known
                .get_unchecked((base >> self.geo.superslab_shift) % KNOWN)
        };
        (base != p && known == base).then(|| ptr.with_addr(base).cast::<SuperSlab>())
    }

    /// Puts the checked block `ptr` of `slab` on the slab's free list and
    /// counts it free.
    ///
    /// # Safety
    /// `slab` is an assigned slab of a live SuperSlab of this heap and
    /// `ptr` one of its held blocks, checked (carved, not free).
    #[inline(always)]
    unsafe fn push_free(&mut self, slab: *mut Slab, ptr: *mut u8) {
        // SAFETY: per the caller.
        unsafe {
            Self::link_free(slab, ptr);
            if (*slab).flags & IN_PARTIAL == 0 {
                self.link_partial_tail(slab);
            }
            // Last: counting may empty the SuperSlab and release it.
            self.count_free(slab, 1);
        }
    }

    /// Links the checked block `ptr` at the head of `slab`'s free list,
    /// tagged free (and, hardened, poisoned); counts nothing.
    ///
    /// # Safety
    /// As [`push_free`](Self::push_free).
    #[inline(always)]
    unsafe fn link_free(slab: *mut Slab, ptr: *mut u8) {
        let b = ptr.cast::<Block>();
        // SAFETY: per the caller.
        unsafe {
            (*b).tag = free_tag(ptr);
            (*b).next = (*slab).free;
            #[cfg(feature = "hardened")]
            crate::hardened::poison(ptr, (*slab).size as usize);
            (*slab).free = b;
        }
    }

    // ----- queries --------------------------------------------------------

    /// The usable size of a live block (at least the size requested).
    ///
    /// # Safety
    /// Same pointer rules as [`dealloc`](Self::dealloc).
    pub unsafe fn usable_size(&self, ptr: *mut u8) -> Result<usize, FreeError> {
        // SAFETY: forwarded caller contract.
        unsafe { self.live_block(ptr) }.map(|live| live.usable())
    }

    /// Checks that `ptr` is a live block; says which tier holds it.
    ///
    /// # Safety
    /// Same pointer rules as [`dealloc`](Self::dealloc).
    unsafe fn live_block(&self, ptr: *mut u8) -> Result<Live, FreeError> {
        let err = |kind| FreeError {
            ptr: ptr as usize,
            kind,
        };
        let p = ptr as usize;
        let base = p & self.geo.superslab_mask();
        let found = if base != p && self.known[(base >> self.geo.superslab_shift) % KNOWN] == base {
            // An owned SuperSlab (the `known` cache): no need to ask the
            // page source.
            let ss = ptr.with_addr(base).cast::<SuperSlab>();
            // SAFETY: `known` holds only live SuperSlabs of this heap, and
            // `ptr` lies inside `ss`.
            let slab = unsafe { SuperSlab::slab_of(ss, p, self.geo.unit_shift) };
            // SAFETY: as above. A medium block: its check and size from one
            // bitmap read.
            unsafe {
                if (*slab).class == MEDIUM_CLASS {
                    let (i, g) =
                        Arena::held_block(crate::medium::arena_of(ss, slab), p).map_err(err)?;
                    return Ok(Live::Medium { ss, slab, i, g });
                }
            }
            // SAFETY: as above.
            unsafe { locate::check_block(ss, slab, p) }.map_err(err)?;
            Found::Small { ss, slab }
        } else {
            // SAFETY: `locate` reads only headers that `contains` vouched for.
            unsafe { locate::locate(&self.source, &self.geo, ptr) }.map_err(err)?
        };
        match found {
            // SAFETY: a live SuperSlab and its slab; a medium block was
            // checked held by `check_block`.
            Found::Small { ss, slab } => unsafe {
                if (*slab).class == MEDIUM_CLASS {
                    let a = crate::medium::arena_of(ss, slab);
                    let i = Arena::index_of(a, p).ok_or(err(FreeErrorKind::NotAllocated))?;
                    let g = Arena::block_granules(a, i);
                    return Ok(Live::Medium { ss, slab, i, g });
                }
                if (*ptr.cast::<Block>()).tag == free_tag(ptr) {
                    return Err(err(FreeErrorKind::DoubleFree));
                }
                #[cfg(feature = "hardened")]
                {
                    let _ = ss;
                    // The request, not the class: the slack is the canary's.
                    // (A free block's tail word says so: `DoubleFree`.)
                    crate::hardened::held_size(ptr, (*slab).size as usize)
                        .map(Live::Small)
                        .map_err(err)
                }
                #[cfg(not(feature = "hardened"))]
                Ok(Live::Small((*slab).size as usize))
            },
            // SAFETY: a live large block.
            Found::Large(h) => unsafe {
                if (*h).state.load(Ordering::Acquire) != LARGE_LIVE {
                    return Err(err(FreeErrorKind::DoubleFree));
                }
                #[cfg(feature = "hardened")]
                {
                    crate::hardened::check_large(h).map_err(err)?;
                    Ok(Live::Large((*h).size, h))
                }
                #[cfg(not(feature = "hardened"))]
                Ok(Live::Large(LargeBlock::usable(h), h))
            },
        }
    }

    /// Resizes a block, in place when its class, its medium arena (a free
    /// neighbour) or its large mapping allows, else by allocating, copying
    /// and freeing. Returns `Ok(null)` when out of memory, leaving the old
    /// block untouched; a null `ptr` allocates.
    ///
    /// # Safety
    /// Same pointer rules as [`dealloc`](Self::dealloc).
    #[inline(always)]
    pub unsafe fn realloc(
        &mut self,
        ptr: *mut u8,
        new_size: usize,
        align: usize,
    ) -> Result<*mut u8, FreeError> {
        #[cfg(not(feature = "hardened"))]
        if align.is_power_of_two() && align <= MIN_ALIGN {
            if let Some(ss) = self.known_superslab(ptr) {
                // SAFETY: `known` holds only live SuperSlabs of this heap,
                // and `ptr` lies inside `ss`.
                if let Some(p) = unsafe { self.realloc_known(ss, ptr, new_size, align) } {
                    return Ok(p);
                }
            }
        }
        // SAFETY: forwarded caller contract.
        unsafe { self.realloc_general(ptr, new_size, align) }
    }

    /// [`realloc`](Self::realloc) for every block its fast path does not
    /// take (and every block in the hardened build).
    ///
    /// # Safety
    /// As [`realloc`](Self::realloc).
    #[inline(never)]
    unsafe fn realloc_general(
        &mut self,
        ptr: *mut u8,
        new_size: usize,
        align: usize,
    ) -> Result<*mut u8, FreeError> {
        if ptr.is_null() {
            return Ok(self.alloc(new_size, align));
        }
        // SAFETY: forwarded caller contract.
        let live = unsafe { self.live_block(ptr)? };
        let old = live.usable();
        let aligned = align.is_power_of_two() && (ptr as usize) & (align - 1) == 0;
        match live {
            // Hardened: the request is the usable size, so growth within
            // the class's room stays in place too.
            #[cfg(feature = "hardened")]
            // SAFETY: `ptr` is the caller's live small block.
            Live::Small(_) if aligned && unsafe { self.resize_small_in_place(ptr, new_size) } => {
                return Ok(ptr);
            }
            // A small block stays unless the new size would fit a class at
            // most half its size.
            Live::Small(_) if aligned && new_size <= old && old <= 2 * new_size.max(MIN_ALIGN) => {
                #[cfg(feature = "hardened")]
                // SAFETY: `ptr` is the caller's live block, now `new_size` bytes.
                unsafe {
                    self.rearm(ptr, None, new_size)
                };
                return Ok(ptr);
            }
            // A medium block shrinks in place, and grows into a free
            // neighbour.
            Live::Medium { ss, slab, i, g }
                if aligned
                    // SAFETY: `live_block` found the held block at `i`.
                    && unsafe { self.resize_medium(ss, slab, i, g, new_size) } =>
            {
                return Ok(ptr);
            }
            Live::Large(_, h) if aligned => {
                let still_large =
                    new_size > self.geo.max_tiered_size() || align > self.geo.unit_size();
                // A large block that still needs one shrinks in place where
                // the source takes its tail pages back.
                if new_size <= old
                    && still_large
                    && P::CAN_REMAP
                    // SAFETY: `h` is the block's live header.
                    && unsafe { self.shrink_large(h, new_size) }
                {
                    #[cfg(feature = "hardened")]
                    // SAFETY: `ptr` is the caller's live block, now `new_size` bytes.
                    unsafe {
                        self.rearm(ptr, Some(h), new_size)
                    };
                    return Ok(ptr);
                }
                // A large block stays if the new size still needs a large
                // block and uses at least half the mapping. Over-aligned
                // large blocks stay as long as they shrink by at most half.
                if new_size <= old
                    && (new_size > self.geo.max_slab_size() || align > self.geo.unit_size())
                    && new_size >= old / 2
                    // SAFETY: `h` is the block's live header.
                    && unsafe { self.resize_large_in_place(h, new_size) }
                {
                    #[cfg(feature = "hardened")]
                    // SAFETY: `ptr` is the caller's live block, now `new_size` bytes.
                    unsafe {
                        self.rearm(ptr, Some(h), new_size)
                    };
                    return Ok(ptr);
                }
                // Growth that still needs a large block: move pages, not bytes.
                if new_size > old && new_size > self.geo.max_slab_size() {
                    // SAFETY: `h` is the live header of the caller's block,
                    // whose address is `aligned`.
                    if let Some(p) = unsafe { self.grow_large(h, new_size, align.max(MIN_ALIGN)) } {
                        return Ok(p);
                    }
                }
            }
            _ => {}
        }
        let new = self.alloc(new_size, align);
        if new.is_null() {
            return Ok(new);
        }
        // SAFETY: both blocks are live, distinct, and at least this long.
        unsafe {
            ptr::copy_nonoverlapping(ptr, new, old.min(new_size));
            match live {
                // An owned medium block, as `live_block` found it (the
                // allocation changed no held block).
                Live::Medium { ss, slab, i, g }
                    if (*ss).owner.load(Ordering::Relaxed) == self.id =>
                {
                    self.free_medium_at(ss, slab, i, g)
                }
                _ => self.dealloc(ptr)?,
            }
        }
        Ok(new)
    }

    /// [`realloc`](Self::realloc)'s fast path for a slab block of an owned
    /// SuperSlab at an alignment every block has: one lookup of the slab
    /// serves the checks, the size and, when the block moves, the free.
    /// `None` when the block is not a checked slab block (a medium block,
    /// or an invalid pointer the general path reports); `Some(null)` when
    /// out of memory, the old block untouched.
    ///
    /// # Safety
    /// `ss` is a live SuperSlab of this heap and `ptr` lies inside it;
    /// `align` is a power of two at most [`MIN_ALIGN`].
    #[cfg(not(feature = "hardened"))]
    #[inline(always)]
    unsafe fn realloc_known(
        &mut self,
        ss: *mut SuperSlab,
        ptr: *mut u8,
        new_size: usize,
        align: usize,
    ) -> Option<*mut u8> {
        let p = ptr as usize;
        // SAFETY: `ss` is live and ours, `ptr` inside it (caller).
        let slab = unsafe { SuperSlab::slab_of(ss, p, self.geo.unit_shift) };
        // SAFETY: as above; the same checks as `free_local`'s.
        unsafe {
            if (*slab).class == MEDIUM_CLASS
                || locate::check_carved(slab, p - ss as usize).is_err()
                || (*ptr.cast::<Block>()).tag == free_tag(ptr)
            {
                return None;
            }
        }
        // SAFETY: an assigned slab of a live SuperSlab.
        let old = unsafe { (*slab).size } as usize;
        // It stays unless the new size would fit a class at most half its
        // size (as in the general path).
        if new_size <= old && old <= 2 * new_size.max(MIN_ALIGN) {
            return Some(ptr);
        }
        let new = self.alloc(new_size, align);
        if !new.is_null() {
            // SAFETY: both blocks are live, distinct, and at least this
            // long; the allocation freed no held block, so `slab` is still
            // the assigned slab holding `ptr`, which was checked above.
            unsafe {
                ptr::copy_nonoverlapping(ptr, new, old.min(new_size));
                self.push_free(slab, ptr);
            }
        }
        Some(new)
    }

    /// Whether the heap owns no held block, large or small (free and
    /// retained memory may remain; blocks freed by other threads and not
    /// yet collected count as held here).
    pub fn is_unused(&self) -> bool {
        if self.n.large_count != 0 {
            return false;
        }
        // Empty current slabs hold nothing but count live, one each.
        let mut live = 0usize;
        let mut ss = self.superslabs;
        while !ss.is_null() {
            // SAFETY: list members are live owned SuperSlabs.
            unsafe {
                live += (*ss).live as usize;
                ss = (*ss).next;
            }
        }
        live == self.partial[..NUM_CLASSES]
            .iter()
            // SAFETY: partial slabs are assigned slabs of live owned SuperSlabs.
            .filter(|&&s| !s.is_null() && unsafe { (*s).used } == 0)
            .count()
    }

    /// The SuperSlab containing `p` (by mask; no check).
    #[inline(always)]
    pub(crate) fn superslab_of(&self, p: *mut u8) -> *mut SuperSlab {
        p.map_addr(|a| a & self.geo.superslab_mask()).cast()
    }
}

/// A live block, by tier (what `realloc` needs to resize it).
enum Live {
    /// A slab block of this usable size.
    Small(usize),
    /// A medium block: its SuperSlab, slab, first granule and granules.
    Medium {
        ss: *mut SuperSlab,
        slab: *mut Slab,
        i: u32,
        g: u32,
    },
    /// A large block: usable bytes and header.
    Large(usize, *mut LargeBlock),
}

impl Live {
    /// Usable bytes.
    fn usable(&self) -> usize {
        match *self {
            Live::Small(n) | Live::Large(n, _) => n,
            Live::Medium { g, .. } => (g as usize) << crate::medium::GRANULE_SHIFT,
        }
    }
}

impl<P: PageSource> Drop for Heap<P> {
    /// Hands every batched remote free to its owner and returns every empty
    /// SuperSlab. SuperSlabs and large blocks that still hold blocks stay
    /// mapped (the application may still use them): a heap that should
    /// leave nothing behind must be empty when dropped.
    fn drop(&mut self) {
        self.trim();
    }
}
