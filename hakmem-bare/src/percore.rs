//! `PerCoreHeap`: one heap per core over shared regions, as a
//! `#[global_allocator]`.
//!
//! Each core allocates from its own [`LocalHeap`] behind its own lock, so
//! cores do not contend in the common case; the core number comes from a
//! function the program supplies. The heaps map from one [`SharedRegion`].
//!
//! - free of another core's block: the freeing core's heap finds the owner
//!   through the shared region and batches the block for the owner's remote
//!   list (the core's remote-free path); the owner takes it back when its
//!   slab runs dry, when it collects or trims. The owner's figures are
//!   exact from the moment of the free.
//! - memory of an idle core: when a core's heap is out of memory it trims
//!   itself (handing its batches to their owners), then `reclaim`s: it
//!   trims every other core's heap whose lock is free at that moment
//!   (`try_lock`: a busy core is not idle, and two cores reclaiming from
//!   each other cannot deadlock), which collects their remote frees and
//!   returns their empty SuperSlabs to the shared region; then it retries,
//!   then calls the hook.
//!
//! Invariants:
//! - `state` is `READY` exactly when every heap slot is built over
//!   `region`; only the `init` that moved it from `EMPTY` to `BUILDING`
//!   touches the slots or replaces the region before that;
//! - locks are taken in one order: a core's own heap, other heaps only
//!   with `try_lock`, the region last (inside heap operations).

use core::alloc::{GlobalAlloc, Layout};
use core::ptr;
use core::sync::atomic::{AtomicU8, Ordering};

use hakmem_core::Config;

use crate::error::BareError;
use crate::local::{region_for, BareStats, LocalHeap, OomHook, BARE_CONFIG};
use crate::lock::{Locked, RawLock, SpinLock};
use crate::region::{page_shift_for, FixedRegion, RegionStats, DEFAULT_PAGE_SHIFT};
use crate::shared::{RegionSource, SharedRegion};
use crate::slot::{freed, Slot};

const EMPTY: u8 = 0;
const BUILDING: u8 = 1;
const READY: u8 = 2;

/// One core's heap: a [`LocalHeap`] over the shared region.
pub type CoreHeap<L> = LocalHeap<&'static SharedRegion<L>>;

/// A heap per core (at most `N` cores) over shared memory regions, each
/// behind its own lock `L`, usable as `#[global_allocator]`.
///
/// ```
/// use core::alloc::{GlobalAlloc, Layout};
/// use hakmem_bare::{PerCoreHeap, SpinLock, BARE_CONFIG};
///
/// fn core_id() -> usize {
///     0 // on hardware: MPIDR (Cortex-A/R), the APIC id or a per-CPU
///       // variable (x86_64), SIO CPUID (RP2040)...
/// }
/// static HEAP: PerCoreHeap<SpinLock, 2> = PerCoreHeap::new(BARE_CONFIG, None, core_id);
///
/// #[repr(C, align(16384))]
/// struct Arena([u8; 64 * 1024]);
/// static mut ARENA: Arena = Arena([0; 64 * 1024]);
///
/// // SAFETY: the arena is used by nothing but the heap from now on.
/// unsafe { HEAP.init((&raw mut ARENA).cast(), 64 * 1024) }.unwrap();
/// let layout = Layout::from_size_align(100, 8).unwrap();
/// // SAFETY: a non-zero layout; the block is freed with the same layout.
/// unsafe {
///     let p = HEAP.alloc(layout);
///     assert!(!p.is_null());
///     HEAP.dealloc(p, layout);
/// }
/// assert_eq!(HEAP.live_bytes(), 0);
/// ```
///
/// `core_id` must be cheap and must not allocate; a number `>= N` is
/// taken modulo `N` (two cores then share a heap, correctly, behind its
/// lock). With [`SpinLock`] an interrupt handler must not allocate; with a
/// lock that masks interrupts it may.
pub struct PerCoreHeap<L: RawLock + 'static = SpinLock, const N: usize = 4> {
    cfg: Config,
    hook: Option<OomHook>,
    core_id: fn() -> usize,
    state: AtomicU8,
    region: SharedRegion<L>,
    heaps: [Locked<L, Slot<&'static SharedRegion<L>>>; N],
}

impl<L: RawLock + 'static, const N: usize> PerCoreHeap<L, N> {
    /// A heap with no memory, `cfg` (checked at `init`), an out-of-memory
    /// hook for every core's heap, and the function that tells which core
    /// runs.
    pub const fn new(cfg: Config, hook: Option<OomHook>, core_id: fn() -> usize) -> Self {
        assert!(N > 0, "PerCoreHeap needs at least one core");
        let shift = if cfg.superslab_shift as u32 >= DEFAULT_PAGE_SHIFT
            && (cfg.superslab_shift as u32) < usize::BITS
        {
            cfg.superslab_shift as u32
        } else {
            DEFAULT_PAGE_SHIFT // an invalid cfg: `init` refuses it
        };
        PerCoreHeap {
            cfg,
            hook,
            core_id,
            state: AtomicU8::new(EMPTY),
            region: SharedRegion::new(FixedRegion::new(page_shift_for(shift), shift)),
            heaps: [const { Locked::new(Slot::EMPTY) }; N],
        }
    }

    /// [`new`](Self::new) with [`BARE_CONFIG`] and no hook.
    pub const fn with_core_id(core_id: fn() -> usize) -> Self {
        Self::new(BARE_CONFIG, None, core_id)
    }

    /// Gives the heaps their first region (as [`LocalHeap::claim`]) and
    /// builds every core's heap, in place.
    ///
    /// Errors: [`BareError::AlreadyInitialized`] on a second call (or one
    /// racing the first; nothing changes), an invalid configuration or a
    /// refused region (then `init` may be called again).
    ///
    /// # Safety
    /// Unless an error is returned, `[start, start + len)` must be valid for
    /// reads and writes and used by nothing but these heaps from now on.
    pub unsafe fn init(&'static self, start: *mut u8, len: usize) -> Result<(), BareError> {
        if self
            .state
            .compare_exchange(EMPTY, BUILDING, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return Err(BareError::AlreadyInitialized);
        }
        // SAFETY: forwarded caller contract.
        let r = unsafe { self.build(start, len) };
        match r {
            Ok(()) => self.state.store(READY, Ordering::Release),
            Err(_) => {
                for slot in &self.heaps {
                    slot.lock().clear();
                }
                self.state.store(EMPTY, Ordering::Release);
            }
        }
        r
    }

    /// The region and the heaps (state `BUILDING`, so no one else).
    ///
    /// # Safety
    /// As [`init`](Self::init).
    unsafe fn build(&'static self, start: *mut u8, len: usize) -> Result<(), BareError> {
        let region = region_for(&self.cfg)?;
        self.region.with_mut(|r| *r = region);
        // SAFETY: forwarded caller contract.
        unsafe { (&self.region).claim(start, len)? };
        for slot in &self.heaps {
            slot.lock().build(&self.region, self.cfg, self.hook)?;
        }
        Ok(())
    }

    /// Gives the heaps one more region (see [`LocalHeap::claim`]); every
    /// core may map from it.
    ///
    /// # Safety
    /// As [`init`](Self::init).
    pub unsafe fn claim(&self, start: *mut u8, len: usize) -> Result<usize, BareError> {
        if !self.is_initialized() {
            return Err(BareError::NotInitialized);
        }
        // SAFETY: forwarded caller contract.
        unsafe { (&self.region).claim(start, len) }
    }

    /// Whether `init` succeeded.
    pub fn is_initialized(&self) -> bool {
        self.state.load(Ordering::Acquire) == READY
    }

    /// The heap the calling core uses.
    #[inline]
    pub fn core(&self) -> usize {
        (self.core_id)() % N
    }

    /// Runs `f` on core `core`'s heap, locked (from any core); `None`
    /// before `init` or for `core >= N`. `f` must not allocate through
    /// this heap.
    pub fn with_core<R>(&self, core: usize, f: impl FnOnce(&mut CoreHeap<L>) -> R) -> Option<R> {
        let mut g = self.heaps.get(core)?.lock_live()?;
        g.get().map(f)
    }

    /// Core `core`'s exact figures. Its `live_bytes` counts what was
    /// allocated minus what was freed *through this core*, so it may be
    /// below zero (wrapped) when it freed other cores' blocks; the sum over
    /// the cores is [`live_bytes`](Self::live_bytes).
    pub fn stats(&self, core: usize) -> Option<BareStats> {
        self.with_core(core, |h| h.stats())
    }

    /// Bytes requested by live allocations, over all cores.
    pub fn live_bytes(&self) -> usize {
        (0..N)
            .filter_map(|c| self.stats(c))
            .fold(0usize, |s, st| s.wrapping_add(st.live_bytes))
    }

    /// The shared region's figures (mapped bytes of all cores).
    pub fn region_stats(&self) -> RegionStats {
        self.region.with(|r| r.stats())
    }

    /// Trims every core's heap, each under its own lock, one at a time:
    /// twice over, so that blocks one core freed for another (batched until
    /// its trim) are collected by their owner's second trim. Returns how
    /// many SuperSlabs went back to the region.
    pub fn trim(&self) -> usize {
        let mut n = 0;
        for _ in 0..2 {
            for c in 0..N {
                n += self.with_core(c, |h| h.trim()).unwrap_or(0);
            }
        }
        n
    }

    /// What a core out of memory does after trimming its own heap: trims
    /// every other core's heap that is not locked now. Says whether the
    /// region got memory back.
    #[cold]
    fn reclaim(&self, me: usize) -> bool {
        let before = self.region_stats().mapped_bytes;
        for (c, slot) in self.heaps.iter().enumerate() {
            if c == me {
                continue;
            }
            if let Some(mut g) = slot.try_lock() {
                if let Some(h) = g.get() {
                    h.trim();
                }
            }
        }
        self.region_stats().mapped_bytes < before
    }

    #[inline]
    fn alloc_with(&self, layout: Layout, zero: bool) -> *mut u8 {
        let me = self.core();
        let Some(mut g) = self.heaps[me].lock_live() else {
            return ptr::null_mut(); // poisoned
        };
        match g.get() {
            Some(h) => h.alloc_with(layout, zero, &mut || self.reclaim(me)),
            None => ptr::null_mut(),
        }
    }
}

// SAFETY: every method returns memory from the calling core's locked heap
// honouring the layout, or null; dealloc/realloc accept the pointers any
// core's heap returned (a foreign block goes to its owner through the
// core's remote-free path; the region is shared, so it is found); nothing
// unwinds and nothing panics with a lock held (`freed` reports after).
unsafe impl<L: RawLock + 'static, const N: usize> GlobalAlloc for PerCoreHeap<L, N> {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.alloc_with(layout, false)
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        self.alloc_with(layout, true)
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let r = {
            let Some(mut g) = self.heaps[self.core()].lock_live() else {
                return; // poisoned: the free is dropped
            };
            // SAFETY: GlobalAlloc's contract: `ptr` is a live block of ours,
            // allocated with `layout`.
            g.get().map(|h| unsafe { h.try_dealloc(ptr, layout) })
        };
        freed(r, ptr)
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let me = self.core();
        let r = {
            let Some(mut g) = self.heaps[me].lock_live() else {
                return ptr::null_mut(); // poisoned
            };
            // SAFETY: GlobalAlloc's contract: `ptr` is a live block of ours,
            // allocated with `layout`, and `new_size` is valid for its
            // alignment.
            g.get().map(|h| unsafe {
                h.try_realloc_with(ptr, layout, new_size, &mut || self.reclaim(me))
            })
        };
        freed(r, ptr)
    }
}
