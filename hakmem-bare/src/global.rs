//! `BareHeap`: a [`LocalHeap`] behind a [`RawLock`], as a
//! `#[global_allocator]`.
//!
//! Invariants:
//! - the slot's heap is built from a successful `init` on, for good (a
//!   second `init` changes nothing), in place (see `slot.rs`);
//! - no panic happens while the lock is held: invalid frees are reported
//!   after the guard is dropped; corruption found by the core inside a
//!   call poisons the heaps before the fault handler runs, and a poisoned
//!   heap never waits for its lock (`fault.rs`).

use core::alloc::{GlobalAlloc, Layout};
use core::ptr;

use hakmem_core::Config;

use crate::error::BareError;
use crate::local::{region_for, BareStats, LocalHeap, OomHook, BARE_CONFIG};
use crate::lock::{Locked, RawLock, SpinLock};
use crate::slot::{freed, Slot};

/// The heap for bare-metal, embedded and kernel targets: a hakmem heap over
/// caller-given memory regions, behind a lock `L`, usable as
/// `#[global_allocator]`.
///
/// ```
/// use core::alloc::{GlobalAlloc, Layout};
/// use hakmem_bare::BareHeap;
///
/// static HEAP: BareHeap = BareHeap::empty();
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
/// assert_eq!(HEAP.stats().unwrap().live_bytes, 0);
/// ```
///
/// The lock decides who may allocate:
/// - [`SpinLock`] (the default): any core, but not an interrupt handler
///   that may interrupt an allocation on its own core (it would spin
///   forever);
/// - `InterruptLock` (Cortex-M): interrupts are masked while the heap is
///   locked, so handlers may allocate too (see [`with_lock`](Self::with_lock));
/// - any [`RawLock`] of your own (another architecture's interrupt mask).
///
/// For one heap per core, see [`PerCoreHeap`](crate::PerCoreHeap).
pub struct BareHeap<L: RawLock = SpinLock> {
    cfg: Config,
    hook: Option<OomHook>,
    heap: Locked<L, Slot<crate::FixedRegion>>,
}

impl BareHeap {
    /// A spin-locked heap with no memory, configured with [`BARE_CONFIG`]
    /// (16 KiB SuperSlabs) and no out-of-memory hook: every allocation
    /// returns null until [`init`](Self::init).
    pub const fn empty() -> BareHeap {
        BareHeap::new(BARE_CONFIG, None)
    }

    /// A spin-locked heap with no memory, the given configuration (checked
    /// at `init`) and out-of-memory hook (installed at `init`).
    pub const fn new(cfg: Config, hook: Option<OomHook>) -> BareHeap {
        BareHeap::with_lock(cfg, hook)
    }
}

impl<L: RawLock> BareHeap<L> {
    /// As [`new`](BareHeap::new), behind the lock `L`:
    /// `static HEAP: BareHeap<InterruptLock> = BareHeap::with_lock(BARE_CONFIG, None);`
    pub const fn with_lock(cfg: Config, hook: Option<OomHook>) -> Self {
        BareHeap {
            cfg,
            hook,
            heap: Locked::new(Slot::EMPTY),
        }
    }

    /// Gives the heap its first region, `[start, start + len)` (see
    /// [`LocalHeap::claim`] for how it is used and what is refused). The
    /// heap is built in its place in `self`, not on the stack.
    ///
    /// Errors: [`BareError::AlreadyInitialized`] on a second call (nothing
    /// changes, the new memory is not touched), an invalid configuration, or
    /// a refused region (the heap stays uninitialised and `init` may be
    /// called again).
    ///
    /// # Safety
    /// Unless an error is returned, `[start, start + len)` must be valid for
    /// reads and writes and used by nothing but this heap from now on.
    pub unsafe fn init(&self, start: *mut u8, len: usize) -> Result<(), BareError> {
        let mut g = self.heap.lock_live().ok_or(BareError::Poisoned)?;
        if g.is_ready() {
            return Err(BareError::AlreadyInitialized);
        }
        let h = g.build(region_for(&self.cfg)?, self.cfg, self.hook)?;
        // SAFETY: forwarded caller contract.
        if let Err(e) = unsafe { h.claim(start, len) } {
            g.clear();
            return Err(e);
        }
        Ok(())
    }

    /// Gives the heap one more region (at most [`MAX_REGIONS`](crate::MAX_REGIONS)
    /// in all; they need not touch). Returns the bytes the heap may use of it.
    ///
    /// # Safety
    /// As [`init`](Self::init).
    pub unsafe fn claim(&self, start: *mut u8, len: usize) -> Result<usize, BareError> {
        let mut g = self.heap.lock_live().ok_or(BareError::Poisoned)?;
        let h = g.get().ok_or(BareError::NotInitialized)?;
        // SAFETY: forwarded caller contract.
        unsafe { h.claim(start, len) }
    }

    /// Replaces the out-of-memory hook of an initialised heap.
    pub fn set_oom_hook(&self, hook: Option<OomHook>) -> Result<(), BareError> {
        self.with(|h| h.set_oom_hook(hook))
            .ok_or(BareError::NotInitialized)
    }

    /// Whether `init` succeeded.
    pub fn is_initialized(&self) -> bool {
        self.heap.lock_live().is_some_and(|g| g.is_ready())
    }

    /// Runs `f` on the heap, locked; `None` before `init`, or once a fault
    /// poisoned the heaps ([`is_poisoned`](crate::is_poisoned)). `f` must
    /// not allocate through this heap (it would deadlock).
    pub fn with<R>(&self, f: impl FnOnce(&mut LocalHeap) -> R) -> Option<R> {
        let mut g = self.heap.lock_live()?;
        g.get().map(f)
    }

    /// Exact figures; `None` before `init`.
    pub fn stats(&self) -> Option<BareStats> {
        self.with(|h| h.stats())
    }

    /// Returns cached blocks and empty SuperSlabs to the regions now (see
    /// [`LocalHeap::trim`]).
    pub fn trim(&self) -> usize {
        self.with(|h| h.trim()).unwrap_or(0)
    }
}

// SAFETY: every method returns memory from the locked hakmem heap honouring
// the layout (size and alignment), or null; dealloc/realloc accept the
// pointers it returned, from any core (the lock serialises them); nothing
// unwinds (`freed` reports with an `extern "C"` panic) and nothing panics
// with the lock held.
unsafe impl<L: RawLock> GlobalAlloc for BareHeap<L> {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.with(|h| h.alloc(layout)).unwrap_or(ptr::null_mut())
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        self.with(|h| h.alloc_zeroed(layout))
            .unwrap_or(ptr::null_mut())
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let Some(mut g) = self.heap.lock_live() else {
            return; // poisoned: the free is dropped
        };
        // SAFETY: GlobalAlloc's contract: `ptr` is a live block of ours,
        // allocated with `layout`.
        let r = g.get().map(|h| unsafe { h.try_dealloc(ptr, layout) });
        drop(g);
        freed(r, ptr)
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Some(mut g) = self.heap.lock_live() else {
            return ptr::null_mut(); // poisoned
        };
        // SAFETY: GlobalAlloc's contract: `ptr` is a live block of ours,
        // allocated with `layout`, and `new_size` is valid for its alignment.
        let r = g
            .get()
            .map(|h| unsafe { h.try_realloc(ptr, layout, new_size) });
        drop(g);
        freed(r, ptr)
    }
}
