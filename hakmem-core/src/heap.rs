//! The heap: one owner's SuperSlabs, slabs, magazines and large blocks, with
//! exact accounting.
//!
//! Life of a small block (the names are this file's functions):
//! - alloc: [`Heap::alloc`] → class by shift → magazine pop (`take_cached`)
//!   → else `alloc_from_slab`: the class's first partial slab, its free list
//!   or its bump pointer → else `new_slab_slow`: collect remote frees, find a
//!   free run of units in an owned SuperSlab (`carve_slab`) → else
//!   `map_superslab` → `PageSource::map`.
//! - free: [`Heap::dealloc`] → SuperSlab by mask → owned? (`known` cache, else
//!   `locate` through `PageSource::contains`) → not owned: `remote::push` →
//!   owned: checks, held counts down, magazine push (`drain_magazine` half of
//!   it to the slabs first when full) → SuperSlab held reaches 0: `on_empty`
//!   → retain (at most `Config::retain` empty) or `release_superslab`
//!   (evict its blocks from the magazines, unlink its slabs) →
//!   `PageSource::unmap`.
//!
//! Invariants (checked by [`Heap::check`]):
//! - per slab: `used + free_count == carved`;
//! - per SuperSlab: `held + (its blocks in magazines) == Σ slab.used`;
//!   `held == 0` for exactly `empty` of them (the retained ones);
//! - per class: `class_held[c] + magazine length == Σ slab.used` over the
//!   slabs of class `c`;
//! - no SuperSlab with `held == 0` stays mapped beyond `Config::retain` of
//!   them, except during one call.

use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use crate::config::{Config, ConfigError, Geometry};
use crate::error::{FreeError, FreeErrorKind};
use crate::large::{LargeBlock, LARGE_LIVE};
use crate::locate::{self, Found};
use crate::magazine::Magazine;
use crate::page_source::PageSource;
use crate::remote;
use crate::size_class::{class_for, class_size, natural_align, EXACT_MAX, MIN_ALIGN, NUM_CLASSES};
use crate::slab::{corrupted, free_tag, reciprocal, Block, Slab, FRESH, IN_PARTIAL, NO_CLASS};
use crate::stats::Stats;
use crate::superslab::{find_run, run_mask, SuperSlab};

/// Source of heap ids; 0 is never used, so it can mean "no heap".
static NEXT_HEAP_ID: AtomicUsize = AtomicUsize::new(1);

/// Entries in the cache of owned SuperSlab bases.
const KNOWN: usize = 16;

/// Counters kept on the paths that change them.
#[derive(Default)]
pub(crate) struct Counters {
    /// SuperSlabs mapped now.
    pub superslabs: usize,
    /// SuperSlabs ever mapped.
    pub created: usize,
    /// SuperSlabs ever returned.
    pub released: usize,
    /// SuperSlabs with `held == 0` (retained).
    pub empty: usize,
    /// Live large blocks, their requested and mapped bytes.
    pub large_count: usize,
    pub large_bytes: usize,
    pub large_mapped: usize,
}

/// A single-owner heap over a [`PageSource`].
///
/// Not `Sync`: one thread uses it at a time. It is `Send` (when the source
/// is), so a heap can be handed to another owner, for instance at thread
/// exit, with its pending remote frees intact: they live in its SuperSlabs.
/// Other threads free its blocks with [`free_remote`](crate::free_remote)
/// (or through their own heap's `dealloc`, which forwards).
pub struct Heap<P: PageSource> {
    pub(crate) source: P,
    pub(crate) cfg: Config,
    pub(crate) geo: Geometry,
    pub(crate) id: usize,
    pub(crate) mags: [Magazine; NUM_CLASSES],
    /// Per class: slabs with a free or uncarved block (doubly linked).
    pub(crate) partial: [*mut Slab; NUM_CLASSES],
    /// Per class: blocks held by the application or pending remote.
    pub(crate) class_held: [usize; NUM_CLASSES],
    /// Every SuperSlab this heap owns (doubly linked).
    pub(crate) superslabs: *mut SuperSlab,
    /// Every live large block this heap owns (doubly linked).
    pub(crate) large: *mut LargeBlock,
    /// Direct-mapped cache of owned SuperSlab bases (0: none), so a local
    /// free needs no `PageSource::contains`.
    known: [usize; KNOWN],
    pub(crate) n: Counters,
}

// SAFETY: a heap's raw pointers all point into regions it owns, which move
// with it; other threads reach those regions only through the atomic remote
// lists. Moving the heap to another thread is therefore sound when the page
// source may be used there too.
unsafe impl<P: PageSource + Send> Send for Heap<P> {}

impl<P: PageSource> Heap<P> {
    /// Makes an empty heap; maps nothing until the first allocation.
    pub fn new(source: P, cfg: Config) -> Result<Self, ConfigError> {
        let geo = cfg.geometry()?;
        Ok(Heap {
            source,
            cfg,
            geo,
            id: NEXT_HEAP_ID.fetch_add(1, Ordering::Relaxed),
            mags: [const { Magazine::EMPTY }; NUM_CLASSES],
            partial: [ptr::null_mut(); NUM_CLASSES],
            class_held: [0; NUM_CLASSES],
            superslabs: ptr::null_mut(),
            large: ptr::null_mut(),
            known: [0; KNOWN],
            n: Counters::default(),
        })
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
    #[inline]
    pub fn alloc(&mut self, size: usize, align: usize) -> *mut u8 {
        if size <= EXACT_MAX && align <= MIN_ALIGN && align.is_power_of_two() {
            let c = if size == 0 { 0 } else { (size - 1) / MIN_ALIGN };
            return self.alloc_class(c, false);
        }
        self.alloc_general(size, align, false)
    }

    /// Like [`alloc`](Self::alloc), with the bytes zeroed. Fresh memory from a
    /// page source that maps zeroed pages is not cleared again.
    pub fn alloc_zeroed(&mut self, size: usize, align: usize) -> *mut u8 {
        if size <= EXACT_MAX && align <= MIN_ALIGN && align.is_power_of_two() {
            let c = if size == 0 { 0 } else { (size - 1) / MIN_ALIGN };
            return self.alloc_class(c, true);
        }
        self.alloc_general(size, align, true)
    }

    fn alloc_general(&mut self, size: usize, align: usize, zero: bool) -> *mut u8 {
        if !align.is_power_of_two() || size > isize::MAX as usize - align {
            return ptr::null_mut();
        }
        let align = align.max(MIN_ALIGN);
        if align <= self.geo.unit_size() {
            if let Some(c) = class_for(size, align) {
                if c < self.geo.slab_classes {
                    return self.alloc_class(c, zero);
                }
            }
        }
        self.alloc_large(size, align, zero)
    }

    #[inline(always)]
    fn alloc_class(&mut self, c: usize, zero: bool) -> *mut u8 {
        if let Some(b) = self.mags[c].pop() {
            // SAFETY: magazine blocks are cached blocks of owned SuperSlabs.
            unsafe { self.take_cached(b, c) };
            if zero {
                // SAFETY: the block is ours and `class_size(c)` bytes long.
                unsafe { ptr::write_bytes(b.cast::<u8>(), 0, class_size(c)) };
            }
            return b.cast();
        }
        self.alloc_from_slab(c, zero)
    }

    /// Accounts a block leaving a magazine for the application.
    ///
    /// # Safety
    /// `b` was just popped from the magazine of class `c`.
    #[inline(always)]
    unsafe fn take_cached(&mut self, b: *mut Block, c: usize) {
        let ss = self.superslab_of(b.cast());
        // SAFETY: `b` lies in a live owned SuperSlab (magazine invariant).
        unsafe {
            self.hold(ss);
            (*b).tag = 0;
            #[cfg(feature = "hardened")]
            SuperSlab::mark_allocated(ss, self.geo.units, b as usize - ss as usize);
        }
        self.class_held[c] += 1;
    }

    /// Counts one more held block in `ss`.
    ///
    /// # Safety
    /// `ss` is a live owned SuperSlab.
    #[inline(always)]
    unsafe fn hold(&mut self, ss: *mut SuperSlab) {
        // SAFETY: per the caller.
        unsafe {
            if (*ss).held == 0 {
                self.n.empty -= 1;
            }
            (*ss).held += 1;
        }
    }

    fn alloc_from_slab(&mut self, c: usize, zero: bool) -> *mut u8 {
        let mut slab = self.partial[c];
        if slab.is_null() {
            slab = self.new_slab_slow(c);
            if slab.is_null() {
                return ptr::null_mut();
            }
        }
        let ss = self.superslab_of(slab.cast());
        // SAFETY: partial slabs are assigned slabs of live owned SuperSlabs
        // with a free or uncarved block.
        // Fields are accessed through the raw pointer, never a `&mut Slab`:
        // other threads may read the block-geometry fields concurrently.
        unsafe {
            let size = (*slab).size as usize;
            let (b, fresh) = if !(*slab).free.is_null() {
                let b = (*slab).free;
                if (*b).tag != free_tag(b.cast()) {
                    corrupted(b.cast());
                }
                (*slab).free = (*b).next;
                (*slab).free_count -= 1;
                (*b).tag = 0;
                (b, false)
            } else {
                let bump = (*slab).bump.load(Ordering::Relaxed);
                let b = ss.cast::<u8>().add(bump as usize).cast::<Block>();
                (*slab).bump.store(bump + size as u32, Ordering::Relaxed);
                let fresh = (*slab).flags & FRESH != 0;
                if !fresh {
                    (*b).tag = 0;
                }
                (b, fresh)
            };
            (*slab).used += 1;
            if !(*slab).has_room() {
                self.unlink_partial(slab);
            }
            self.hold(ss);
            self.class_held[c] += 1;
            #[cfg(feature = "hardened")]
            SuperSlab::mark_allocated(ss, self.geo.units, b as usize - ss as usize);
            if zero && !(fresh && P::MAPS_ZEROED) {
                ptr::write_bytes(b.cast::<u8>(), 0, size);
            }
            b.cast()
        }
    }

    /// Finds or makes a slab for class `c`; null when out of memory.
    #[cold]
    fn new_slab_slow(&mut self, c: usize) -> *mut Slab {
        // Remote frees may have refilled this class: collect them first.
        self.collect();
        if !self.partial[c].is_null() {
            return self.partial[c];
        }
        let mut ss = self.superslabs;
        while !ss.is_null() {
            // SAFETY: list members are live owned SuperSlabs.
            if let Some(slab) = unsafe { self.carve_slab(ss, c) } {
                return slab;
            }
            // SAFETY: as above.
            ss = unsafe { (*ss).next };
        }
        match self.map_superslab() {
            // SAFETY: a fresh SuperSlab has every unit free, and every slab
            // class fits (geometry invariant).
            Some(ss) => unsafe { self.carve_slab(ss, c).unwrap_or(ptr::null_mut()) },
            None => ptr::null_mut(),
        }
    }

    /// Assigns a free run of units of `ss` to a new slab of class `c` and
    /// links it as partial.
    ///
    /// # Safety
    /// `ss` is a live owned SuperSlab.
    unsafe fn carve_slab(&mut self, ss: *mut SuperSlab, c: usize) -> Option<*mut Slab> {
        let span = self.geo.spans[c] as u32;
        let size = class_size(c);
        let unit = self.geo.unit_size();
        // SAFETY: `ss` is live and ours (caller).
        unsafe {
            let mut candidates = (*ss).free_units;
            loop {
                let first = find_run(candidates, span)?;
                let lo = (first as usize * unit).max(self.geo.header_bytes as usize);
                let start = lo.next_multiple_of(natural_align(c).min(unit));
                let limit = (first + span) as usize * unit;
                let capacity = limit.saturating_sub(start) / size;
                if capacity == 0 {
                    candidates &= !(1u64 << first);
                    continue;
                }
                let mask = run_mask(first, span);
                if (*ss).clean_units & mask != 0 {
                    // Decommitted units may need their pages back first.
                    if !self.recommit_units(ss, first, span) {
                        return None;
                    }
                    (*ss).clean_units &= !mask;
                }
                let fresh = (*ss).fresh_units & mask == mask;
                (*ss).free_units &= !mask;
                (*ss).fresh_units &= !mask;
                (*ss).class_mask |= 1u128 << c;
                for u in first..first + span {
                    (*SuperSlab::slab(ss, u as usize)).head = first as u8;
                }
                let slab = SuperSlab::slab(ss, first as usize);
                slab.write(Slab {
                    free: ptr::null_mut(),
                    next: ptr::null_mut(),
                    prev: ptr::null_mut(),
                    inv: reciprocal(size as u32),
                    start: start as u32,
                    bump: AtomicU32::new(start as u32),
                    end: (start + capacity * size) as u32,
                    size: size as u32,
                    used: 0,
                    free_count: 0,
                    class: c as u8,
                    span: span as u8,
                    head: first as u8,
                    flags: if fresh { FRESH } else { 0 },
                });
                self.link_partial(slab);
                return Some(slab);
            }
        }
    }

    /// Maps, initialises and links a new SuperSlab.
    fn map_superslab(&mut self) -> Option<*mut SuperSlab> {
        let size = self.geo.superslab_size();
        let base = self.source.map(size, size)?;
        // SAFETY: the source handed us `size` bytes aligned to `size`.
        let ss = unsafe { SuperSlab::init(base.as_ptr(), &self.geo, self.id, P::MAPS_ZEROED) };
        // SAFETY: `ss` is live and not yet in any list.
        unsafe { self.link_superslab(ss) };
        self.n.superslabs += 1;
        self.n.created += 1;
        self.n.empty += 1; // held == 0 until the caller carves from it
        Some(ss)
    }

    // ----- free ---------------------------------------------------------

    /// Frees a block. Null is ignored. A block owned by another heap is
    /// freed remotely (pushed to its SuperSlab's remote list).
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
        let p = ptr as usize;
        let base = p & self.geo.superslab_mask();
        if base != p && self.known[(base >> self.geo.superslab_shift) % KNOWN] == base {
            let ss = ptr.with_addr(base).cast::<SuperSlab>();
            // SAFETY: `known` holds only live SuperSlabs of this heap.
            return unsafe { self.free_local(ss, ptr) };
        }
        if ptr.is_null() {
            return Ok(());
        }
        // SAFETY: forwarded caller contract.
        unsafe { self.dealloc_slow(ptr) }
    }

    #[cold]
    unsafe fn dealloc_slow(&mut self, ptr: *mut u8) -> Result<(), FreeError> {
        // SAFETY: `locate` reads only headers that `contains` vouched for.
        let found = unsafe { locate::locate(&self.source, &self.geo, ptr) };
        let err = |kind| FreeError {
            ptr: ptr as usize,
            kind,
        };
        match found.map_err(err)? {
            // SAFETY: `locate` returned a live SuperSlab.
            Found::Small { ss, slab } => unsafe {
                if (*ss).owner.load(Ordering::Relaxed) == self.id {
                    self.free_local(ss, ptr)
                } else {
                    remote::push(ss, slab, ptr, self.geo.units)
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
                    remote::free_large(&self.source, h)
                }
            },
        }
    }

    /// Frees a block of an owned SuperSlab.
    ///
    /// # Safety
    /// `ss` is a live SuperSlab of this heap and `ptr` lies inside it.
    #[inline(always)]
    unsafe fn free_local(&mut self, ss: *mut SuperSlab, ptr: *mut u8) -> Result<(), FreeError> {
        let p = ptr as usize;
        let off = p - ss as usize;
        // SAFETY: `ss` is live and ours, `ptr` inside it (caller).
        unsafe {
            let slab = SuperSlab::slab_of(ss, p, self.geo.unit_shift);
            if let Err(kind) = locate::check_block(slab, off) {
                return Err(FreeError { ptr: p, kind });
            }
            if off >= (*slab).bump.load(Ordering::Relaxed) as usize {
                return Err(FreeError {
                    ptr: p,
                    kind: FreeErrorKind::NotAllocated,
                });
            }
            let b = ptr.cast::<Block>();
            #[cfg(feature = "hardened")]
            if !SuperSlab::mark_free(ss, self.geo.units, off) {
                return Err(FreeError {
                    ptr: p,
                    kind: FreeErrorKind::DoubleFree,
                });
            }
            #[cfg(not(feature = "hardened"))]
            if (*b).tag == free_tag(ptr) {
                return Err(FreeError {
                    ptr: p,
                    kind: FreeErrorKind::DoubleFree,
                });
            }
            (*b).tag = free_tag(ptr);
            let c = (*slab).class as usize;
            (*ss).held -= 1;
            // An assigned slab's class is below NUM_CLASSES (check_block
            // refused NO_CLASS), so these indexings need no bounds check.
            *self.class_held.get_unchecked_mut(c) -= 1;
            let cap = self.cfg.magazine_capacity;
            if cap != 0 {
                if self.mags.get_unchecked(c).len() >= cap {
                    self.drain_magazine(c);
                }
                self.mags.get_unchecked_mut(c).push(b);
            } else {
                self.slab_push_free(ss, slab, b);
            }
            if (*ss).held == 0 {
                self.on_empty(ss);
            }
        }
        Ok(())
    }

    /// Moves the older half of a full magazine back to the slabs.
    #[cold]
    fn drain_magazine(&mut self, c: usize) {
        let keep = self.mags[c].len() / 2;
        let (list, _) = self.mags[c].split_off(keep);
        // SAFETY: the detached blocks were cached blocks of owned SuperSlabs.
        unsafe { self.return_cached(list) };
    }

    /// Hands a detached list of cached blocks back to their slabs.
    ///
    /// # Safety
    /// Every block on `list` was cached (counted in its slab's `used`, not in `held`).
    unsafe fn return_cached(&mut self, mut list: *mut Block) {
        while !list.is_null() {
            // SAFETY: per the caller, each block is a cached block of a live
            // owned SuperSlab.
            unsafe {
                let next = (*list).next;
                let ss = self.superslab_of(list.cast());
                let slab = SuperSlab::slab_of(ss, list as usize, self.geo.unit_shift);
                self.slab_push_free(ss, slab, list);
                list = next;
            }
        }
    }

    /// Puts a block that is neither held nor cached on its slab's free list;
    /// releases the slab's units if that empties it.
    ///
    /// # Safety
    /// `slab` is an assigned slab of the live owned SuperSlab `ss`, and `b`
    /// one of its blocks, still counted in `used`, no longer in `held`.
    unsafe fn slab_push_free(&mut self, ss: *mut SuperSlab, slab: *mut Slab, b: *mut Block) {
        // SAFETY: per the caller.
        unsafe {
            (*b).next = (*slab).free;
            (*slab).free = b;
            (*slab).free_count += 1;
            (*slab).used -= 1;
            if (*slab).used == 0 {
                self.release_slab(ss, slab);
            } else if (*slab).flags & IN_PARTIAL == 0 {
                self.link_partial(slab);
            }
        }
    }

    /// Returns an empty slab's units to its SuperSlab.
    ///
    /// # Safety
    /// `slab` is an assigned slab of `ss` with `used == 0`.
    unsafe fn release_slab(&mut self, ss: *mut SuperSlab, slab: *mut Slab) {
        // SAFETY: per the caller.
        unsafe {
            if (*slab).flags & IN_PARTIAL != 0 {
                self.unlink_partial(slab);
            }
            let first = SuperSlab::unit_index(ss, slab) as u32;
            let span = (*slab).span as u32;
            for u in first..first + span {
                SuperSlab::slab(ss, u as usize).write(Slab::unassigned(u as u8));
            }
            (*ss).free_units |= run_mask(first, span);
        }
    }

    /// A SuperSlab's held count just reached zero.
    ///
    /// # Safety
    /// `ss` is a live owned SuperSlab with `held == 0`.
    unsafe fn on_empty(&mut self, ss: *mut SuperSlab) {
        self.n.empty += 1;
        if self.n.empty > self.cfg.retain {
            // SAFETY: per the caller.
            unsafe { self.release_superslab(ss) };
        }
    }

    /// Removes every trace of an empty SuperSlab from the heap — its blocks
    /// from the magazines (one pass over each magazine of a class it served)
    /// and its slabs from the partial lists — and unmaps it.
    ///
    /// # Safety
    /// `ss` is a live owned SuperSlab with `held == 0`.
    pub(crate) unsafe fn release_superslab(&mut self, ss: *mut SuperSlab) {
        // SAFETY: per the caller; `held == 0` means no block is held or
        // pending, so nothing outside this heap refers to the SuperSlab.
        unsafe {
            self.detach_superslab(ss);
            self.unlink_superslab(ss);
            (*ss).magic = 0;
            self.source
                .unmap(NonNull::new_unchecked(ss.cast()), self.geo.superslab_size());
        }
        self.n.empty -= 1;
        self.n.superslabs -= 1;
        self.n.released += 1;
    }

    /// Evicts an empty SuperSlab's cached blocks and unlinks its slabs.
    ///
    /// # Safety
    /// `ss` is a live owned SuperSlab with `held == 0`.
    unsafe fn detach_superslab(&mut self, ss: *mut SuperSlab) {
        let mask = self.geo.superslab_mask();
        let base = ss as usize;
        // SAFETY: per the caller.
        unsafe {
            let mut classes = (*ss).class_mask;
            while classes != 0 {
                let c = classes.trailing_zeros() as usize;
                classes &= classes - 1;
                self.mags[c].evict(|b| b as usize & mask == base, |_| {});
            }
            for u in 0..self.geo.units as usize {
                let slab = SuperSlab::slab(ss, u);
                if (*slab).head as usize == u
                    && (*slab).class != NO_CLASS
                    && (*slab).flags & IN_PARTIAL != 0
                {
                    self.unlink_partial(slab);
                }
            }
        }
    }

    /// Releases empty SuperSlabs until at most `keep` remain.
    fn release_empty(&mut self, keep: usize) -> usize {
        let mut released = 0;
        let mut ss = self.superslabs;
        while !ss.is_null() && self.n.empty > keep {
            // SAFETY: list members are live owned SuperSlabs; `next` is read
            // before `ss` may be released.
            unsafe {
                let next = (*ss).next;
                if (*ss).held == 0 {
                    self.release_superslab(ss);
                    released += 1;
                }
                ss = next;
            }
        }
        released
    }

    // ----- remote frees, flushing, trimming ------------------------------

    /// Collects the blocks other threads freed into this heap's SuperSlabs
    /// and the large blocks they freed, making the accounting exact again
    /// and releasing what became empty. Returns how many blocks it took.
    /// Work: one look at each owned SuperSlab and large block, plus one step
    /// per collected block.
    pub fn collect(&mut self) -> usize {
        let mut n = 0;
        let mut ss = self.superslabs;
        while !ss.is_null() {
            // SAFETY: list members are live owned SuperSlabs; `next` is read
            // before `ss` may be released.
            unsafe {
                let next = (*ss).next;
                if (*ss).remote_count.load(Ordering::Relaxed) != 0 {
                    n += self.collect_superslab(ss);
                }
                ss = next;
            }
        }
        n + self.collect_large()
    }

    /// # Safety
    /// `ss` is a live owned SuperSlab.
    unsafe fn collect_superslab(&mut self, ss: *mut SuperSlab) -> usize {
        let mut n = 0;
        // SAFETY: the swap hands us the whole list; pushers publish each
        // block with Release before it is reachable, so its `next` is
        // visible after our Acquire; each is a block of `ss` counted held.
        unsafe {
            let mut b = (*ss).remote_head.swap(ptr::null_mut(), Ordering::Acquire);
            while !b.is_null() {
                if (*b).tag != free_tag(b.cast()) {
                    corrupted(b.cast());
                }
                let next = (*b).next;
                let slab = SuperSlab::slab_of(ss, b as usize, self.geo.unit_shift);
                (*ss).held -= 1;
                self.class_held[(*slab).class as usize] -= 1;
                self.slab_push_free(ss, slab, b);
                n += 1;
                b = next;
            }
            (*ss).remote_count.fetch_sub(n, Ordering::Release);
            if n != 0 && (*ss).held == 0 {
                self.on_empty(ss);
            }
        }
        n
    }

    /// Empties every magazine into the slabs, then collects remote frees.
    /// Afterwards no block is cached, and every empty SuperSlab beyond the
    /// retain policy has been released.
    pub fn flush(&mut self) {
        for c in 0..NUM_CLASSES {
            let (list, _) = self.mags[c].split_off(0);
            // SAFETY: the detached blocks were cached blocks.
            unsafe { self.return_cached(list) };
        }
        self.collect();
    }

    /// Flushes, then returns every empty SuperSlab to the page source,
    /// whatever the retain policy. Returns how many were released.
    pub fn trim(&mut self) -> usize {
        self.flush();
        self.release_empty(0)
    }

    /// Gives free memory's pages back to the page source while keeping the
    /// address ranges: flushes the magazines (so slabs holding only cached
    /// blocks empty out), resets every retained (empty) SuperSlab, and
    /// decommits every free slab unit not already decommitted, in retained
    /// and in-use SuperSlabs alike. A no-op where the source cannot
    /// decommit. Returns the bytes decommitted.
    pub fn decommit_free(&mut self) -> usize {
        if !P::CAN_DECOMMIT {
            return 0;
        }
        self.flush();
        let mut bytes = 0;
        let mut ss = self.superslabs;
        while !ss.is_null() {
            // SAFETY: list members are live owned SuperSlabs.
            unsafe {
                if (*ss).held == 0 && (*ss).free_units != self.geo.all_free_units() {
                    self.detach_superslab(ss);
                    SuperSlab::reset(ss, &self.geo);
                }
                bytes += self.decommit_units(ss);
                ss = (*ss).next;
            }
        }
        bytes
    }

    /// Decommits the free, not yet clean units of `ss`, run by run.
    ///
    /// # Safety
    /// `ss` is a live owned SuperSlab.
    unsafe fn decommit_units(&mut self, ss: *mut SuperSlab) -> usize {
        let page = self.source.page_size();
        let unit = self.geo.unit_size();
        let header_end = (self.geo.header_bytes as usize).next_multiple_of(page);
        let mut bytes = 0;
        // SAFETY: per the caller.
        unsafe {
            let mut dirty = (*ss).free_units & !(*ss).clean_units;
            while dirty != 0 {
                let first = dirty.trailing_zeros();
                let run = (dirty >> first).trailing_ones();
                let mask = run_mask(first, run);
                dirty &= !mask;
                // Whole pages only (units may be smaller than a page).
                let lo = (first as usize * unit)
                    .max(header_end)
                    .next_multiple_of(page);
                let hi = ((first + run) as usize * unit) & !(page - 1);
                if lo < hi {
                    // SAFETY: free units hold no block, and no metadata
                    // past the header.
                    self.source
                        .decommit(NonNull::new_unchecked(ss.cast::<u8>().add(lo)), hi - lo);
                    bytes += hi - lo;
                    // Units wholly decommitted read as zero again.
                    for u in first..first + run {
                        if u as usize * unit >= lo && (u as usize + 1) * unit <= hi {
                            (*ss).fresh_units |= 1u64 << u;
                        }
                    }
                }
                (*ss).clean_units |= mask;
            }
        }
        bytes
    }

    /// SuperSlabs with free memory still committed: free units not yet
    /// decommitted, or an empty SuperSlab's slabs. What
    /// [`decommit_free`](Self::decommit_free) would give back.
    pub fn committed_free(&self) -> usize {
        let all = self.geo.all_free_units();
        let mut n = 0;
        let mut ss = self.superslabs;
        while !ss.is_null() {
            // SAFETY: list members are live owned SuperSlabs.
            unsafe {
                if (*ss).free_units & !(*ss).clean_units != 0
                    || ((*ss).held == 0 && (*ss).free_units != all)
                {
                    n += 1;
                }
                ss = (*ss).next;
            }
        }
        n
    }

    /// Whether other threads freed blocks (small or large) into this heap
    /// that [`collect`](Self::collect) has not taken yet. Reads one atomic per
    /// SuperSlab and large block.
    pub fn has_pending(&self) -> bool {
        let mut ss = self.superslabs;
        while !ss.is_null() {
            // SAFETY: list members are live owned SuperSlabs.
            unsafe {
                if (*ss).remote_count.load(Ordering::Relaxed) != 0 {
                    return true;
                }
                ss = (*ss).next;
            }
        }
        let mut h = self.large;
        while !h.is_null() {
            // SAFETY: list members are live large block headers.
            unsafe {
                if (*h).state.load(Ordering::Relaxed) != LARGE_LIVE {
                    return true;
                }
                h = (*h).next;
            }
        }
        false
    }

    /// Recommits units `first .. first + span` of `ss` (past its header).
    ///
    /// # Safety
    /// `ss` is a live owned SuperSlab and the units are free.
    unsafe fn recommit_units(&mut self, ss: *mut SuperSlab, first: u32, span: u32) -> bool {
        let page = self.source.page_size();
        let unit = self.geo.unit_size();
        // Outward to whole pages (a decommit may have covered a page shared
        // with neighbouring units), never into the header.
        let header_end = (self.geo.header_bytes as usize).next_multiple_of(page);
        let lo = ((first as usize * unit) & !(page - 1)).max(header_end);
        let hi = ((first + span) as usize * unit)
            .next_multiple_of(page)
            .min(self.geo.superslab_size());
        if lo >= hi {
            return true;
        }
        // SAFETY: the range lies inside the live SuperSlab, past its header.
        unsafe {
            self.source
                .recommit(NonNull::new_unchecked(ss.cast::<u8>().add(lo)), hi - lo)
        }
    }

    // ----- queries --------------------------------------------------------

    /// The usable size of a live block (at least the size requested).
    ///
    /// # Safety
    /// Same pointer rules as [`dealloc`](Self::dealloc).
    pub unsafe fn usable_size(&self, ptr: *mut u8) -> Result<usize, FreeError> {
        // SAFETY: forwarded caller contract.
        unsafe { self.live_block(ptr) }.map(|(size, _)| size)
    }

    /// Checks that `ptr` is a live block; returns its usable size and, for a
    /// large block, its header.
    ///
    /// # Safety
    /// Same pointer rules as [`dealloc`](Self::dealloc).
    unsafe fn live_block(
        &self,
        ptr: *mut u8,
    ) -> Result<(usize, Option<*mut LargeBlock>), FreeError> {
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
            // SAFETY: as above.
            unsafe { locate::check_block(slab, p - base) }.map_err(err)?;
            Found::Small { ss, slab }
        } else {
            // SAFETY: `locate` reads only headers that `contains` vouched for.
            unsafe { locate::locate(&self.source, &self.geo, ptr) }.map_err(err)?
        };
        match found {
            // SAFETY: a live SuperSlab and its slab.
            Found::Small { ss, slab } => unsafe {
                let off = ptr as usize - ss as usize;
                if off >= (*slab).bump.load(Ordering::Relaxed) as usize {
                    return Err(err(FreeErrorKind::NotAllocated));
                }
                #[cfg(not(feature = "hardened"))]
                if (*ptr.cast::<Block>()).tag == free_tag(ptr) {
                    return Err(err(FreeErrorKind::DoubleFree));
                }
                #[cfg(feature = "hardened")]
                if !SuperSlab::is_allocated(ss, self.geo.units, off) {
                    return Err(err(FreeErrorKind::DoubleFree));
                }
                Ok(((*slab).size as usize, None))
            },
            // SAFETY: a live large block.
            Found::Large(h) => unsafe {
                if (*h).state.load(Ordering::Acquire) != LARGE_LIVE {
                    return Err(err(FreeErrorKind::DoubleFree));
                }
                Ok((LargeBlock::usable(h), Some(h)))
            },
        }
    }

    /// Resizes a block, in place when its class (or its large mapping)
    /// allows, else by allocating, copying and freeing. Returns `Ok(null)`
    /// when out of memory, leaving the old block untouched; a null `ptr`
    /// allocates.
    ///
    /// # Safety
    /// Same pointer rules as [`dealloc`](Self::dealloc).
    pub unsafe fn realloc(
        &mut self,
        ptr: *mut u8,
        new_size: usize,
        align: usize,
    ) -> Result<*mut u8, FreeError> {
        if ptr.is_null() {
            return Ok(self.alloc(new_size, align));
        }
        // SAFETY: forwarded caller contract.
        let (old, large) = unsafe { self.live_block(ptr)? };
        let aligned = align.is_power_of_two() && (ptr as usize) % align == 0;
        if aligned && new_size <= old {
            let in_place = match large {
                // A small block stays unless the new size would fit a class
                // at most half its size.
                None => old <= 2 * new_size.max(MIN_ALIGN),
                // A large block stays if the new size still needs a large
                // block and uses at least half the mapping. Over-aligned large
                // blocks stay as long as they shrink by at most half.
                Some(h) => {
                    (new_size > self.geo.max_slab_size() || align > self.geo.unit_size())
                        && new_size >= old / 2
                        // SAFETY: `h` is the block's live header.
                        && unsafe { self.resize_large_in_place(h, new_size) }
                }
            };
            if in_place {
                return Ok(ptr);
            }
        }
        let new = self.alloc(new_size, align);
        if new.is_null() {
            return Ok(new);
        }
        // SAFETY: both blocks are live, distinct, and at least this long.
        unsafe {
            ptr::copy_nonoverlapping(ptr, new, old.min(new_size));
            self.dealloc(ptr)?;
        }
        Ok(new)
    }

    /// An exact snapshot of this heap's figures.
    pub fn stats(&self) -> Stats {
        let mut s = Stats::ZERO;
        let mut pending = 0;
        let mut ss = self.superslabs;
        while !ss.is_null() {
            // SAFETY: list members are live owned SuperSlabs.
            unsafe {
                pending += (*ss).remote_count.load(Ordering::Acquire);
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
        let mut held_blocks = 0;
        let mut held_bytes = 0;
        for c in 0..NUM_CLASSES {
            let cs = &mut s.classes[c];
            cs.held_blocks = self.class_held[c];
            cs.cached_blocks = self.mags[c].len() as usize;
            s.cached_blocks += cs.cached_blocks;
            held_blocks += cs.held_blocks;
            held_bytes += cs.held_blocks * class_size(c);
        }
        s.pending_remote = pending;
        s.held_blocks = held_blocks + self.n.large_count - pending;
        s.held_bytes = held_bytes + self.n.large_bytes;
        s.superslabs_mapped = self.n.superslabs;
        s.superslabs_created = self.n.created;
        s.superslabs_released = self.n.released;
        s.superslabs_retained = self.n.empty;
        s.large_count = self.n.large_count;
        s.large_bytes = self.n.large_bytes;
        s.large_mapped_bytes = self.n.large_mapped;
        s.mapped_bytes = self.n.superslabs * self.geo.superslab_size() + self.n.large_mapped;
        s
    }

    /// Whether the heap owns no held block, large or small (cached and
    /// retained memory may remain).
    pub fn is_unused(&self) -> bool {
        self.n.large_count == 0 && self.class_held.iter().all(|&h| h == 0)
    }

    // ----- lists and lookups ----------------------------------------------

    /// The SuperSlab containing `p` (by mask; no check).
    #[inline(always)]
    pub(crate) fn superslab_of(&self, p: *mut u8) -> *mut SuperSlab {
        p.map_addr(|a| a & self.geo.superslab_mask()).cast()
    }

    /// # Safety
    /// `slab` is an assigned slab not in its partial list.
    unsafe fn link_partial(&mut self, slab: *mut Slab) {
        // SAFETY: per the caller; list members are assigned slabs.
        unsafe {
            let c = (*slab).class as usize;
            let head = self.partial[c];
            (*slab).prev = ptr::null_mut();
            (*slab).next = head;
            if !head.is_null() {
                (*head).prev = slab;
            }
            self.partial[c] = slab;
            (*slab).flags |= IN_PARTIAL;
        }
    }

    /// # Safety
    /// `slab` is in its class's partial list.
    unsafe fn unlink_partial(&mut self, slab: *mut Slab) {
        // SAFETY: per the caller; neighbours are list members.
        unsafe {
            let c = (*slab).class as usize;
            let (prev, next) = ((*slab).prev, (*slab).next);
            if prev.is_null() {
                self.partial[c] = next;
            } else {
                (*prev).next = next;
            }
            if !next.is_null() {
                (*next).prev = prev;
            }
            (*slab).next = ptr::null_mut();
            (*slab).prev = ptr::null_mut();
            (*slab).flags &= !IN_PARTIAL;
        }
    }

    /// # Safety
    /// `ss` is live, owned and in no list.
    unsafe fn link_superslab(&mut self, ss: *mut SuperSlab) {
        // SAFETY: per the caller.
        unsafe {
            (*ss).prev = ptr::null_mut();
            (*ss).next = self.superslabs;
            if !self.superslabs.is_null() {
                (*self.superslabs).prev = ss;
            }
        }
        self.superslabs = ss;
        let base = ss as usize;
        let slot = (base >> self.geo.superslab_shift) % KNOWN;
        self.known[slot] = base;
    }

    /// # Safety
    /// `ss` is in the heap's SuperSlab list.
    unsafe fn unlink_superslab(&mut self, ss: *mut SuperSlab) {
        // SAFETY: per the caller.
        unsafe {
            let (prev, next) = ((*ss).prev, (*ss).next);
            if prev.is_null() {
                self.superslabs = next;
            } else {
                (*prev).next = next;
            }
            if !next.is_null() {
                (*next).prev = prev;
            }
        }
        let base = ss as usize;
        let slot = (base >> self.geo.superslab_shift) % KNOWN;
        if self.known[slot] == base {
            self.known[slot] = 0;
        }
    }
}

impl<P: PageSource> Drop for Heap<P> {
    /// Returns every empty SuperSlab. SuperSlabs and large blocks that still
    /// hold blocks stay mapped (the application may still use them): a heap
    /// that should leave nothing behind must be empty when dropped.
    fn drop(&mut self) {
        self.trim();
    }
}
