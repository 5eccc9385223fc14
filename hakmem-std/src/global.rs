//! `HakMem`, the `#[global_allocator]`, and the per-thread heap lookup.
//!
//! alloc = `HakMem::alloc` → `with_heap`: the thread's slot from a
//! const-initialised thread-local (no lazy init, no destructor, so it stays
//! readable during and after thread-local destruction) → `Slot::enter` →
//! `Heap::alloc` → `Slot::leave`. First call on a thread: `attach` (global
//! set-up on the very first call, then a slot; the exit guard is registered
//! only once the slot is in place, so an allocation made by that
//! registration is served normally). After the thread's exit guard ran, the
//! shared heap serves it under a spin lock. A free of a block owned by
//! another heap goes to that heap's remote list (core `Heap::dealloc`).

use core::alloc::{GlobalAlloc, Layout};
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicPtr, Ordering};

use hakmem_core::{FastFree, Fault, FreeError};

use crate::env::Config;
use crate::heaps::{self, Slot, StdHeap, ABANDONED, CLAIMED, FREE, OWNED};
use crate::linux::LinuxPages;

/// Marks a thread whose heap was already handed back.
const DEAD: usize = 1;

thread_local! {
    static EXIT: ExitGuard = const { ExitGuard };
}

/// The calling thread's slot (null: none yet; `DEAD`: handed back).
#[inline(always)]
fn current() -> *const Slot {
    crate::tls::get() as *const Slot
}

/// The calling thread's own slot, if it has one (not before its first
/// allocation, nor after its exit guard ran).
#[inline(always)]
fn own_slot() -> Option<&'static Slot> {
    let slot = current();
    // SAFETY: a slot pointer in the thread word is this thread's owned slot;
    // slots are never freed.
    (slot as usize > DEAD).then(|| unsafe { &*slot })
}

/// Its destructor hands the thread's heap back at thread exit.
struct ExitGuard;

impl Drop for ExitGuard {
    fn drop(&mut self) {
        thread_exit();
    }
}

/// Process-wide state, set up at the first allocation.
pub(crate) struct Global {
    pub pages: LinuxPages,
    pub cfg: Config,
    /// Guards the shared heap, which serves threads whose own heap is gone.
    pub shared_lock: spin::Mutex<()>,
}

static GLOBAL: spin::Once<Global> = spin::Once::new();
static BACKGROUND_STARTED: AtomicBool = AtomicBool::new(false);
/// Set in a forked child: the next slow path starts the background thread.
static RESTART_AFTER_FORK: AtomicBool = AtomicBool::new(false);
/// In a forked child, the forking thread's slot until its next call (which
/// takes the slow path and puts it back in the thread word).
static FORKED: AtomicPtr<Slot> = AtomicPtr::new(ptr::null_mut());
static FORK_HANDLERS: AtomicBool = AtomicBool::new(false);

/// The process-wide state, if any allocation happened yet.
pub(crate) fn global() -> Option<&'static Global> {
    GLOBAL.get()
}

fn init(cfg: Config) -> Option<&'static Global> {
    let g = GLOBAL.try_call_once(|| {
        let cfg = cfg.with_env();
        hakmem_core::set_fault_handler(fault_abort);
        crate::stats::register_at_exit();
        let geometry = cfg.core.geometry().map_err(|_| ())?;
        Ok::<Global, ()>(Global {
            pages: LinuxPages::new(geometry.superslab_shift as u32),
            cfg,
            shared_lock: spin::Mutex::new(()),
        })
    });
    g.ok()
}

/// The shared heap's slot, made on first use.
fn shared_slot(g: &'static Global) -> Option<&'static Slot> {
    *SHARED.call_once(|| heaps::acquire(&g.pages, g.cfg.core, CLAIMED))
}

/// The shared heap's slot, once made.
static SHARED: spin::Once<Option<&'static Slot>> = spin::Once::new();

/// The allocator. Use it as
/// `#[global_allocator] static GLOBAL: hakmem_std::HakMem = hakmem_std::HakMem::new();`
pub struct HakMem {
    cfg: Config,
}

impl HakMem {
    /// An allocator with the default [`Config`] (the `HAKMEM_*` variables
    /// still apply).
    pub const fn new() -> HakMem {
        HakMem {
            cfg: Config::DEFAULT,
        }
    }

    /// An allocator with the given configuration (the `HAKMEM_*` variables
    /// override it). Only the first `HakMem` to allocate in a process sets
    /// the process-wide configuration.
    pub const fn with_config(cfg: Config) -> HakMem {
        HakMem { cfg }
    }
}

impl Default for HakMem {
    fn default() -> Self {
        HakMem::new()
    }
}

/// Runs `f` on the calling thread's heap (or the shared heap). `AUTOSTART`:
/// a new thread heap may start the background thread from here (the Rust
/// allocator); the C ABI starts it from its library constructor instead,
/// since `malloc` may run inside the dynamic loader.
#[inline(always)]
pub(crate) fn with_heap<const AUTOSTART: bool, R>(
    cfg: &Config,
    f: impl FnOnce(&mut StdHeap) -> R,
    fail: R,
) -> R {
    if let Some(s) = own_slot() {
        s.enter();
        // SAFETY: between enter and leave the owner has the heap.
        let r = f(unsafe { s.heap() });
        s.leave();
        return r;
    }
    with_heap_slow::<AUTOSTART, R>(cfg, f, fail)
}

/// Runs the fast path `f` on the calling thread's own heap, if it has one
/// and no visitor wants it; else returns `no` without calling `f`. For
/// fast paths that change nothing when they do not apply (`alloc_fast`,
/// `free_fast`): the caller then takes the full path through
/// [`with_heap`]. No call is made here, so a fast path that makes none
/// either needs no stack frame.
#[inline(always)]
pub(crate) fn on_own_heap<R>(f: impl FnOnce(&mut StdHeap) -> R, no: R) -> R {
    let Some(s) = own_slot().filter(|s| s.try_enter()) else {
        return no;
    };
    // SAFETY: between enter and leave the owner has the heap.
    let r = f(unsafe { s.heap() });
    s.leave();
    r
}

/// `Heap::alloc_fast` on the calling thread's own heap ([`on_own_heap`]):
/// null when it does not apply, and at once without
/// [`FAST_PATHS`](hakmem_core::FAST_PATHS).
#[inline(always)]
pub(crate) fn alloc_fast(size: usize, align: usize) -> *mut u8 {
    if !hakmem_core::FAST_PATHS {
        return ptr::null_mut();
    }
    on_own_heap(
        #[inline(always)]
        |h| h.alloc_fast(size, align),
        ptr::null_mut(),
    )
}

/// `Heap::free_fast_kind` on the calling thread's own heap
/// ([`on_own_heap`]): what the fast path did with `ptr`;
/// [`FastFree::Other`] (nothing changed) when it does not apply (no heap
/// of its own, a visitor has it), and at once without
/// [`FAST_PATHS`](hakmem_core::FAST_PATHS).
///
/// # Safety
/// As `Heap::dealloc`.
#[inline(always)]
pub(crate) unsafe fn free_fast(ptr: *mut u8) -> FastFree {
    if !hakmem_core::FAST_PATHS {
        return FastFree::Other;
    }
    on_own_heap(
        #[inline(always)]
        // SAFETY: per the caller.
        |h| unsafe { h.free_fast_kind(ptr) },
        FastFree::Other,
    )
}

#[cold]
fn with_heap_slow<const AUTOSTART: bool, R>(
    cfg: &Config,
    f: impl FnOnce(&mut StdHeap) -> R,
    fail: R,
) -> R {
    let slot = current();
    let Some(g) = init(*cfg) else { return fail };
    if slot.is_null() {
        // In a forked child, the forking thread's own slot comes back first.
        let forked = FORKED.swap(ptr::null_mut(), Ordering::AcqRel);
        // SAFETY: a slot pointer in FORKED is the forking thread's slot,
        // still OWNED, and handed to exactly one thread by the swap; slots
        // are never freed.
        let s = unsafe { forked.as_ref() }.or_else(|| heaps::acquire(&g.pages, g.cfg.core, OWNED));
        if let Some(s) = s {
            crate::tls::set(s as *const Slot as usize);
            // Register the exit guard now that allocations work on this
            // thread (registration may allocate).
            EXIT.with(|_| {});
            s.enter();
            // SAFETY: we own the slot.
            let r = f(unsafe { s.heap() });
            s.leave();
            if AUTOSTART {
                register_fork_handlers();
            }
            // A forked child restarts the background thread here, on its
            // first slow path, whichever API it uses: the library
            // constructor that starts it for the C ABI does not run again.
            if AUTOSTART || RESTART_AFTER_FORK.swap(false, Ordering::AcqRel) {
                start_background(g);
            }
            return r;
        }
    }
    // No heap of our own: the thread is exiting, or no slot could be had.
    let Some(shared) = shared_slot(g) else {
        return fail;
    };
    let _lock = g.shared_lock.lock();
    // SAFETY: the shared slot is only used under `shared_lock`.
    f(unsafe { shared.heap() })
}

/// Starts the background thread unless configured off or already started.
pub(crate) fn start_background(g: &'static Global) {
    if g.cfg.background && !BACKGROUND_STARTED.swap(true, Ordering::AcqRel) {
        crate::purge::start(g);
    }
}

/// Sets the process up ahead of the first allocation (the C ABI's library
/// constructor), registers the fork handlers and starts the background
/// thread.
pub(crate) fn init_now(cfg: Config) {
    if let Some(g) = init(cfg) {
        register_fork_handlers();
        start_background(g);
    }
}

extern "C" {
    fn pthread_atfork(
        prepare: Option<unsafe extern "C" fn()>,
        parent: Option<unsafe extern "C" fn()>,
        child: Option<unsafe extern "C" fn()>,
    ) -> i32;
}

/// Registers [`before_fork`], [`after_fork_parent`] and
/// [`after_fork_child`] with `pthread_atfork`, once per process. Called
/// from the C ABI's library constructor, and from the Rust allocator's
/// first heap (outside the heap operation). Never from an early `malloc`:
/// `pthread_atfork` may allocate, and under `LD_PRELOAD` that is us.
fn register_fork_handlers() {
    unsafe extern "C" fn prepare() {
        before_fork();
    }
    unsafe extern "C" fn parent() {
        after_fork_parent();
    }
    unsafe extern "C" fn child() {
        after_fork_child();
    }
    if !FORK_HANDLERS.swap(true, Ordering::AcqRel) {
        // SAFETY: plain functions that live as long as the program (a
        // library serving allocations is never unloaded).
        unsafe { pthread_atfork(Some(prepare), Some(parent), Some(child)) };
    }
}

/// After `fork`, in the child: only the forking thread exists. Heaps of the
/// other threads become abandoned (the child's threads adopt them), except
/// one caught inside an operation, which is left untouched for good;
/// membarrier must be registered again. The background thread did not
/// survive and is not restarted here (a fork handler is no place to create
/// threads): the forking thread's slot is taken out of the thread word (kept in
/// `FORKED`), so its next call takes the slow path, which puts the slot
/// back and starts the background thread; a new thread's first call does
/// the same.
pub(crate) fn after_fork_child() {
    BACKGROUND_STARTED.store(false, Ordering::Release);
    let current = current();
    heaps::after_fork_child(current);
    if current as usize > DEAD {
        FORKED.store(current.cast_mut(), Ordering::Release);
        crate::tls::set(0);
    }
    RESTART_AFTER_FORK.store(true, Ordering::Release);
    if let Some(g) = global() {
        // SAFETY: the fork-prepare handler took this lock in the parent, and
        // the child has no other thread that could hold it.
        unsafe { g.shared_lock.force_unlock() };
    }
}

/// Before `fork`: wait for visitors (background pass, stats) to finish and
/// hold the shared heap, so the child never inherits them half done.
pub(crate) fn before_fork() {
    heaps::lock_visitors();
    if let Some(g) = global() {
        core::mem::forget(g.shared_lock.lock());
    }
}

/// After `fork`, in the parent: undo `before_fork`.
pub(crate) fn after_fork_parent() {
    if let Some(g) = global() {
        // SAFETY: `before_fork` took it on this thread.
        unsafe { g.shared_lock.force_unlock() };
    }
    heaps::unlock_visitors();
}

/// Hands the thread's heap back: flushed, trimmed, then free for reuse if
/// it holds nothing, else abandoned for another thread (or the background
/// thread) to adopt.
fn thread_exit() {
    let slot = current();
    crate::tls::set(DEAD);
    if slot as usize <= DEAD {
        return;
    }
    // SAFETY: our own slot.
    let s = unsafe { &*slot };
    s.enter();
    // SAFETY: we own the slot.
    let heap = unsafe { s.heap() };
    heap.trim();
    let empty = heap.stats().mapped_bytes == 0;
    s.state
        .store(if empty { FREE } else { ABANDONED }, Ordering::Release);
    s.leave();
}

/// hakmem-std's fault handler (`hakmem_core::set_fault_handler`): writes
/// the fault's one-line message to fd 2 with one `write(2)` from a stack
/// buffer and aborts — no allocation, so it works inside the allocator, on
/// any thread, and in a child after `fork`.
fn fault_abort(f: &Fault) -> ! {
    crate::stats::write_stderr(format_args!("{f}\n"));
    std::process::abort()
}

/// Reports an invalid free (as a [`Fault`]) and aborts, without allocating.
#[cold]
#[inline(never)]
pub(crate) fn invalid_free(e: FreeError) -> ! {
    fault_abort(&Fault::from(e))
}

/// Runs an allocation `attempt` on `h`; when it fails, gives the heap's
/// cached blocks and empty SuperSlabs (retained ones included) back with
/// `Heap::trim` and tries once more, as hakmem-bare does: under an address
/// space or memory limit, what the caches hold may be exactly what the
/// request needs. Null only if the retry fails too.
#[inline(always)]
pub(crate) fn alloc_or_trim(
    h: &mut StdHeap,
    mut attempt: impl FnMut(&mut StdHeap) -> *mut u8,
) -> *mut u8 {
    let p = attempt(h);
    if p.is_null() {
        return trim_and_retry(h, attempt);
    }
    p
}

#[cold]
#[inline(never)]
fn trim_and_retry(h: &mut StdHeap, mut attempt: impl FnMut(&mut StdHeap) -> *mut u8) -> *mut u8 {
    h.trim();
    attempt(h)
}

/// `Heap::realloc` with [`alloc_or_trim`]'s retry (a failed realloc leaves
/// the old block live and unmoved, so it may simply be tried again).
///
/// # Safety
/// As `Heap::realloc`.
#[inline]
pub(crate) unsafe fn realloc_or_trim(
    h: &mut StdHeap,
    ptr: *mut u8,
    size: usize,
    align: usize,
) -> Result<*mut u8, FreeError> {
    // SAFETY: per the caller. An invalid pointer is reported here, before
    // any trim (the core changes nothing then).
    let p = unsafe { h.realloc(ptr, size, align) }?;
    if p.is_null() {
        return Ok(trim_and_retry(h, |h| {
            // SAFETY: per the caller; the failure left `ptr` live and unmoved.
            unsafe { h.realloc(ptr, size, align) }.unwrap_or(ptr::null_mut())
        }));
    }
    Ok(p)
}

impl HakMem {
    /// [`GlobalAlloc::alloc`] from the start, for every request its fast
    /// path (`Heap::alloc_fast`) did not serve.
    #[inline(never)]
    fn alloc_general(&self, layout: Layout) -> *mut u8 {
        with_heap::<true, _>(
            &self.cfg,
            |h| alloc_or_trim(h, |h| h.alloc(layout.size(), layout.align())),
            ptr::null_mut(),
        )
    }

    /// [`GlobalAlloc::dealloc`] from the start, for every block its fast
    /// path (`Heap::free_fast`) did not take.
    ///
    /// # Safety
    /// As `GlobalAlloc::dealloc`.
    /// [`GlobalAlloc::dealloc`] of a block in none of the thread's known
    /// SuperSlabs (its fast path said [`FastFree::Unknown`]): another
    /// thread's block, a large block, or a bad pointer (reported).
    ///
    /// # Safety
    /// As `GlobalAlloc::dealloc`.
    #[inline(never)]
    unsafe fn dealloc_unknown(&self, ptr: *mut u8) {
        // SAFETY: per the caller.
        let r = with_heap::<true, _>(&self.cfg, |h| unsafe { h.dealloc_unknown(ptr) }, Ok(()));
        if let Err(e) = r {
            invalid_free(e);
        }
    }

    #[inline(never)]
    unsafe fn dealloc_general(&self, ptr: *mut u8) {
        // SAFETY: per the caller.
        let r = with_heap::<true, _>(&self.cfg, |h| unsafe { h.dealloc_general(ptr) }, Ok(()));
        if let Err(e) = r {
            invalid_free(e);
        }
    }
}

// SAFETY: every method returns memory from a hakmem heap honouring the
// layout (size and alignment), or null; dealloc/realloc accept exactly the
// pointers hakmem returned, from any thread; nothing here unwinds.
unsafe impl GlobalAlloc for HakMem {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = alloc_fast(layout.size(), layout.align());
        if !p.is_null() {
            return p;
        }
        self.alloc_general(layout)
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        with_heap::<true, _>(
            &self.cfg,
            |h| alloc_or_trim(h, |h| h.alloc_zeroed(layout.size(), layout.align())),
            ptr::null_mut(),
        )
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: GlobalAlloc's contract: `ptr` is a live block of ours; one
        // the fast path cannot vouch for goes to `dealloc_unknown` or
        // `dealloc_general`, which check it.
        unsafe {
            match free_fast(ptr) {
                FastFree::Done => {}
                FastFree::Unknown => self.dealloc_unknown(ptr),
                FastFree::Other => self.dealloc_general(ptr),
            }
        }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: GlobalAlloc's contract: `ptr` is a live block of ours.
        let r = with_heap::<true, _>(
            &self.cfg,
            |h| unsafe { realloc_or_trim(h, ptr, new_size, layout.align()) },
            Ok(ptr::null_mut()),
        );
        match r {
            Ok(p) => p,
            Err(e) => invalid_free(e),
        }
    }
}

/// Runs `f` on the calling thread's own heap (making it if needed), or the
/// shared heap.
pub(crate) fn with_current_heap<R>(f: impl FnOnce(&mut StdHeap) -> R, fail: R) -> R {
    with_heap::<true, R>(&Config::DEFAULT, f, fail)
}

/// Whether `s` is the calling thread's own slot.
pub(crate) fn is_current(s: &Slot) -> bool {
    ptr::eq(current(), s)
}

/// The shared heap's slot and its lock, if it was ever needed. (Never made
/// here: making it may adopt an abandoned heap, which a reader that just
/// counted that heap would then count twice.)
pub(crate) fn shared() -> Option<(&'static Slot, &'static spin::Mutex<()>)> {
    let g = global()?;
    Some(((*SHARED.get()?)?, &g.shared_lock))
}
