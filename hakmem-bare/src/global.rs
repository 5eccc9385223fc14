//! `BareHeap`: a [`LocalHeap`] behind a spin lock, as a `#[global_allocator]`.
//!
//! Invariants:
//! - the slot's heap is initialised exactly when `ready`: from a successful
//!   `init` on, for good (a second `init` changes nothing);
//! - the heap is built in its slot (one temporary copy at most), not moved
//!   around: it is 3 KiB on 32-bit targets, and a board's stack is small;
//! - no panic happens while the lock is held: invalid frees are reported
//!   after the guard is dropped.

use core::alloc::{GlobalAlloc, Layout};
use core::mem::MaybeUninit;
use core::ptr;

use hakmem_core::{Config, FreeError, FreeErrorKind};

use crate::error::BareError;
use crate::local::{BareStats, LocalHeap, OomHook, BARE_CONFIG};

/// The heap for bare-metal, embedded and kernel targets: a hakmem heap over
/// caller-given memory regions, behind a spin lock, usable as
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
/// Not interrupt-safe: an allocation from an interrupt handler that
/// interrupted an allocation on the same core would spin forever. Code that
/// must allocate there can own a [`LocalHeap`] inside its own critical
/// section instead.
pub struct BareHeap {
    cfg: Config,
    hook: Option<OomHook>,
    heap: spin::Mutex<Slot>,
}

/// Where the heap lives: built in place by `init`.
struct Slot {
    ready: bool,
    heap: MaybeUninit<LocalHeap>,
}

impl Slot {
    fn get(&mut self) -> Option<&mut LocalHeap> {
        // SAFETY: `heap` is initialised when `ready` (invariant).
        self.ready.then(|| unsafe { self.heap.assume_init_mut() })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if self.ready {
            // SAFETY: initialised (invariant), and dropped once.
            unsafe { self.heap.assume_init_drop() }
        }
    }
}

impl BareHeap {
    /// A heap with no memory, configured with [`BARE_CONFIG`] (16 KiB
    /// SuperSlabs) and no out-of-memory hook: every allocation returns null
    /// until [`init`](Self::init).
    pub const fn empty() -> BareHeap {
        BareHeap::new(BARE_CONFIG, None)
    }

    /// A heap with no memory, the given configuration (checked at `init`)
    /// and out-of-memory hook (installed at `init`).
    pub const fn new(cfg: Config, hook: Option<OomHook>) -> BareHeap {
        BareHeap {
            cfg,
            hook,
            heap: spin::Mutex::new(Slot {
                ready: false,
                heap: MaybeUninit::uninit(),
            }),
        }
    }

    /// Gives the heap its first region, `[start, start + len)` (see
    /// [`LocalHeap::claim`] for how it is used and what is refused).
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
        let mut g = self.heap.lock();
        if g.ready {
            return Err(BareError::AlreadyInitialized);
        }
        LocalHeap::new_in(&mut g.heap, self.cfg)?;
        g.ready = true;
        let h = g.get().expect("just initialised");
        h.set_oom_hook(self.hook);
        // SAFETY: forwarded caller contract.
        if let Err(e) = unsafe { h.claim(start, len) } {
            g.ready = false;
            // SAFETY: initialised just above; `ready` is false again, so it
            // is dropped once.
            unsafe { g.heap.assume_init_drop() };
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
        let mut g = self.heap.lock();
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
        self.heap.lock().ready
    }

    /// Runs `f` on the heap, locked; `None` before `init`. `f` must not
    /// allocate through this heap (it would deadlock).
    pub fn with<R>(&self, f: impl FnOnce(&mut LocalHeap) -> R) -> Option<R> {
        self.heap.lock().get().map(f)
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

/// Reports an invalid free by panicking with hakmem's message. `extern "C"`
/// so the panic cannot unwind out of the allocator: where panics unwind it
/// aborts after the message; on bare metal the panic handler gets it.
#[cold]
#[inline(never)]
#[allow(improper_ctypes_definitions)] // called from Rust only
extern "C" fn invalid_free(e: FreeError) -> ! {
    panic!("{e}")
}

// SAFETY: every method returns memory from the locked hakmem heap honouring
// the layout (size and alignment), or null; dealloc/realloc accept the
// pointers it returned, from any core (the lock serialises them); nothing
// unwinds (`invalid_free` cannot) and nothing panics with the lock held.
unsafe impl GlobalAlloc for BareHeap {
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
        // SAFETY: GlobalAlloc's contract: `ptr` is a live block of ours,
        // allocated with `layout`.
        let r = self.with(|h| unsafe { h.try_dealloc(ptr, layout) });
        match r {
            Some(Ok(())) => {}
            Some(Err(e)) => invalid_free(e),
            None => invalid_free(FreeError {
                ptr: ptr.addr(),
                kind: FreeErrorKind::NotOurs,
            }),
        }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: GlobalAlloc's contract: `ptr` is a live block of ours,
        // allocated with `layout`, and `new_size` is valid for its alignment.
        let r = self.with(|h| unsafe { h.try_realloc(ptr, layout, new_size) });
        match r {
            Some(Ok(p)) => p,
            Some(Err(e)) => invalid_free(e),
            None => invalid_free(FreeError {
                ptr: ptr.addr(),
                kind: FreeErrorKind::NotOurs,
            }),
        }
    }
}
