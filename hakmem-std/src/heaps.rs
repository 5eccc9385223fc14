//! Thread heaps: the slots that hold them, the registry of all slots, and
//! the owner/visitor protocol that lets the background thread work on an
//! idle thread's heap while that thread's fast paths stay free of locks and
//! atomic read-modify-writes.
//!
//! A [`Slot`] holds one core `Heap` for its whole life; slots live in
//! chunks mapped directly with mmap (never through an allocator) and are
//! never unmapped, so a pointer to one stays valid. A thread takes a slot at
//! its first allocation — an abandoned one first (a dead thread's heap, whose
//! blocks it then serves), else a free one, else a new one — and gives it
//! back at exit.
//!
//! **The protocol.** The owner brackets every heap operation with plain
//! stores to `busy` (`enter` / `leave`) and one load of `want`. A visitor
//! (the background thread, `stats()`) takes the slot's `visit` lock, sets
//! `want`, and issues `membarrier(PRIVATE_EXPEDITED)`, which runs a full
//! fence on every thread of the process: after it, either the owner's
//! `busy = true` is visible to the visitor, or the owner's next load of
//! `want` sees `true` and the owner waits in `enter_slow`. A visitor that
//! finds `busy` set skips the heap (or waits, for stats). Where the kernel
//! refuses membarrier, visitors leave owned heaps alone.
//!
//! macOS and FreeBSD have no `membarrier` (in rustix): there the owner's
//! `enter` issues a real `fence(SeqCst)` between its store to `busy` and its
//! load of `want`, and the visitor one between its store to `want` and its
//! load of `busy` (the classic store-buffer pattern: one of the two loads
//! sees the other side's store). The protocol is the same and every owned
//! heap can be visited; the cost is one full fence per heap operation on
//! those systems (`mfence`/`dmb ish`), which Linux avoids.
//!
//! Invariants:
//! - a slot's heap is touched only by its owner between `enter` and
//!   `leave`, or by a visitor holding `visit` with `want` set and `busy`
//!   seen clear after the membarrier, or by whoever moved `state` away from
//!   `ABANDONED` by compare-and-swap;
//! - slots are never freed; the registry only grows.

use core::cell::UnsafeCell;
use core::mem::{size_of, MaybeUninit};
use core::ptr;
#[cfg(hakmem_std_linux)]
use core::sync::atomic::compiler_fence;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU8, Ordering};

use hakmem_core::Heap;

use crate::linux::LinuxPages;

/// The heap type of this backend.
pub(crate) type StdHeap = Heap<&'static LinuxPages>;

/// Slot states.
pub(crate) const FREE: u8 = 0;
/// Owned by a live thread.
pub(crate) const OWNED: u8 = 1;
/// Its thread exited while blocks were still held.
pub(crate) const ABANDONED: u8 = 2;
/// Taken by a visitor from `ABANDONED`, or the shared heap.
pub(crate) const CLAIMED: u8 = 3;
/// In a forked child: its owner was inside an operation at the fork, so the
/// heap may be inconsistent; never used again.
pub(crate) const RETIRED: u8 = 4;

/// One heap and its protocol flags.
#[repr(C, align(64))]
pub(crate) struct Slot {
    /// The owner is inside a heap operation.
    pub busy: AtomicBool,
    /// A visitor wants the heap.
    pub want: AtomicBool,
    /// `FREE`, `OWNED`, `ABANDONED`, `CLAIMED`.
    pub state: AtomicU8,
    /// Background thread's note: retained memory was seen on the last pass.
    pub armed: AtomicBool,
    /// Serialises visitors.
    pub visit: spin::Mutex<()>,
    /// Next slot in the registry.
    pub next: AtomicPtr<Slot>,
    /// The heap, initialised when the slot is first taken.
    heap: UnsafeCell<MaybeUninit<StdHeap>>,
    initialised: AtomicBool,
}

// SAFETY: the heap inside is only reached under the protocol above.
unsafe impl Sync for Slot {}

/// Head of the registry of every slot ever made.
static REGISTRY: AtomicPtr<Slot> = AtomicPtr::new(ptr::null_mut());

/// Slots per mapped chunk.
const SLOTS_PER_CHUNK: usize = 16;

impl Slot {
    /// The heap. Callers hold the right to it per the protocol.
    ///
    /// # Safety
    /// The caller owns or has claimed the slot, and the heap is initialised.
    #[inline(always)]
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn heap(&self) -> &mut StdHeap {
        // SAFETY: per the caller.
        unsafe { (*self.heap.get()).assume_init_mut() }
    }

    /// Starts an owner operation, waiting while a visitor has the heap.
    #[inline(always)]
    pub fn enter(&self) {
        if !self.try_enter() {
            self.enter_slow();
        }
    }

    /// Starts an owner operation unless a visitor wants the heap: `false`
    /// (and `busy` clear again) then, for callers that take their slow
    /// path instead of waiting here.
    ///
    /// On Linux the visitors make the store-to-load ordering real with
    /// membarrier (module doc), so a compiler fence suffices here. Where no
    /// membarrier exists the owner orders its store to `busy` before its
    /// load of `want` itself, with a `SeqCst` fence, matched by the
    /// visitor's fence between its store of `want` and its load of `busy`:
    /// with a fence on each side, one of the two loads sees the other
    /// side's store. (A `SeqCst` swap of `busy` instead measured no faster
    /// on x86_64.)
    #[inline(always)]
    pub fn try_enter(&self) -> bool {
        self.busy.store(true, Ordering::Relaxed);
        #[cfg(hakmem_std_linux)]
        compiler_fence(Ordering::SeqCst);
        #[cfg(not(hakmem_std_linux))]
        core::sync::atomic::fence(Ordering::SeqCst);
        if self.want.load(Ordering::Acquire) {
            self.busy.store(false, Ordering::Release);
            return false;
        }
        true
    }

    /// [`enter`](Self::enter) while a visitor has the heap: waits until it
    /// is done, then enters as [`try_enter`](Self::try_enter) does.
    #[cold]
    fn enter_slow(&self) {
        loop {
            while self.want.load(Ordering::Acquire) {
                std::thread::yield_now();
            }
            if self.try_enter() {
                return;
            }
        }
    }

    /// Ends an owner operation.
    #[inline(always)]
    pub fn leave(&self) {
        self.busy.store(false, Ordering::Release);
    }

    /// Initialises the heap of a never-used slot.
    fn init_heap(&self, pages: &'static LinuxPages, cfg: hakmem_core::Config) -> bool {
        if self.initialised.load(Ordering::Acquire) {
            return true;
        }
        match Heap::new(pages, cfg) {
            Ok(h) => {
                // SAFETY: the slot is exclusively ours (just taken) and empty.
                unsafe { (*self.heap.get()).write(h) };
                self.initialised.store(true, Ordering::Release);
                true
            }
            Err(_) => false,
        }
    }

    /// Whether the heap was ever initialised.
    pub fn is_initialised(&self) -> bool {
        self.initialised.load(Ordering::Acquire)
    }
}

/// Every slot ever made, newest first.
pub(crate) fn registry() -> impl Iterator<Item = &'static Slot> {
    let mut p = REGISTRY.load(Ordering::Acquire);
    core::iter::from_fn(move || {
        // SAFETY: registry slots are never freed.
        let s = unsafe { p.as_ref()? };
        p = s.next.load(Ordering::Acquire);
        Some(s)
    })
}

/// Takes a slot for a thread (or the shared heap): an abandoned one, else a
/// free one, else a new one. Returns it in state `want_state`, its heap
/// initialised. `None` when memory for a new slot cannot be had.
pub(crate) fn acquire(
    pages: &'static LinuxPages,
    cfg: hakmem_core::Config,
    want_state: u8,
) -> Option<&'static Slot> {
    for from in [ABANDONED, FREE] {
        for s in registry() {
            if s.state
                .compare_exchange(from, want_state, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                if s.init_heap(pages, cfg) {
                    return Some(s);
                }
                s.state.store(FREE, Ordering::Release);
                return None;
            }
        }
    }
    let s = new_chunk()?;
    // `new_chunk` hands back its first slot already in state CLAIMED.
    s.state.store(want_state, Ordering::Release);
    if s.init_heap(pages, cfg) {
        Some(s)
    } else {
        s.state.store(FREE, Ordering::Release);
        None
    }
}

/// Maps a chunk of slots, links them into the registry (all `FREE` but the
/// first, which is returned `CLAIMED`).
fn new_chunk() -> Option<&'static Slot> {
    let bytes = (SLOTS_PER_CHUNK * size_of::<Slot>()).next_multiple_of(crate::linux::page_size());
    let base = LinuxPages::raw_map(bytes)?.cast::<Slot>();
    for i in 0..SLOTS_PER_CHUNK {
        // SAFETY: `base` is a fresh mapping of `bytes` bytes, aligned to a
        // page (beyond the slot's 64-byte alignment), holding these slots.
        unsafe {
            let s = base.add(i);
            s.write(Slot {
                busy: AtomicBool::new(false),
                want: AtomicBool::new(false),
                state: AtomicU8::new(if i == 0 { CLAIMED } else { FREE }),
                armed: AtomicBool::new(false),
                visit: spin::Mutex::new(()),
                next: AtomicPtr::new(ptr::null_mut()),
                heap: UnsafeCell::new(MaybeUninit::uninit()),
                initialised: AtomicBool::new(false),
            });
        }
    }
    // Link the chunk's slots (last first, so the head ends at slot 0).
    for i in (0..SLOTS_PER_CHUNK).rev() {
        // SAFETY: as above; slots are initialised and never freed.
        let s = unsafe { &*base.add(i) };
        let mut head = REGISTRY.load(Ordering::Acquire);
        loop {
            s.next.store(head, Ordering::Relaxed);
            match REGISTRY.compare_exchange_weak(
                head,
                base.wrapping_add(i),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(h) => head = h,
            }
        }
    }
    // SAFETY: as above.
    Some(unsafe { &*base })
}

/// Held by whoever visits heaps (a background pass, `stats()`), and by
/// `fork` preparation, so a child never inherits a visit half done.
static VISITORS: spin::Mutex<()> = spin::Mutex::new(());

/// Serialises heap visits; see [`VISITORS`].
pub(crate) fn visitors() -> spin::MutexGuard<'static, ()> {
    VISITORS.lock()
}

/// Takes the visitors' lock for `fork` (released by `unlock_visitors`).
pub(crate) fn lock_visitors() {
    core::mem::forget(VISITORS.lock());
}

/// Releases the lock `lock_visitors` took.
pub(crate) fn unlock_visitors() {
    // SAFETY: `lock_visitors` took it, on the thread that forked.
    unsafe { VISITORS.force_unlock() };
}

/// In a forked child: every other thread is gone. Their idle heaps are
/// abandoned (adoptable); a heap whose owner was inside an operation at the
/// fork may be half updated and is retired for good. Membarrier is asked
/// for again.
pub(crate) fn after_fork_child(current: *const Slot) {
    unlock_visitors();
    MEMBARRIER.store(0, Ordering::Release);
    for s in registry() {
        if core::ptr::eq(s, current) {
            continue;
        }
        s.want.store(false, Ordering::Relaxed);
        if s.state.load(Ordering::Relaxed) == OWNED {
            let next = if s.busy.load(Ordering::Relaxed) {
                RETIRED
            } else {
                ABANDONED
            };
            s.state.store(next, Ordering::Release);
        }
    }
}

/// Whether membarrier-based visits of owned heaps are possible.
static MEMBARRIER: AtomicU8 = AtomicU8::new(0); // 0 unknown, 1 yes, 2 no

/// Registers for expedited membarrier once; whether owned heaps can be
/// visited (always on macOS and FreeBSD, where owners fence themselves).
#[cfg(not(hakmem_std_linux))]
pub(crate) fn membarrier_ready() -> bool {
    true
}

/// Registers for expedited membarrier once; whether it is available.
#[cfg(hakmem_std_linux)]
pub(crate) fn membarrier_ready() -> bool {
    match MEMBARRIER.load(Ordering::Acquire) {
        1 => true,
        2 => false,
        _ => {
            use rustix::thread::{membarrier, MembarrierCommand};
            let ok = membarrier(MembarrierCommand::RegisterPrivateExpedited).is_ok();
            MEMBARRIER.store(if ok { 1 } else { 2 }, Ordering::Release);
            ok
        }
    }
}

/// The visitor's side of the protocol where owners fence themselves: a
/// full fence between the store to `want` and the load of `busy`.
#[cfg(not(hakmem_std_linux))]
fn barrier() -> bool {
    core::sync::atomic::fence(Ordering::SeqCst);
    true
}

/// Issues the process-wide barrier of the protocol.
#[cfg(hakmem_std_linux)]
fn barrier() -> bool {
    use rustix::thread::{membarrier, MembarrierCommand};
    membarrier_ready() && membarrier(MembarrierCommand::PrivateExpedited).is_ok()
}

/// Runs `f` on the heap of an owned slot while its owner is outside
/// hakmem. With `wait`, waits for the owner to leave; without, gives up if
/// the owner is inside. `None` when the heap could not be had.
pub(crate) fn visit_owned<R>(s: &Slot, wait: bool, f: impl FnOnce(&mut StdHeap) -> R) -> Option<R> {
    if !s.is_initialised() {
        return None;
    }
    let _guard = s.visit.lock();
    s.want.store(true, Ordering::SeqCst);
    if !barrier() {
        s.want.store(false, Ordering::Release);
        return None;
    }
    while s.busy.load(Ordering::Acquire) {
        if !wait {
            s.want.store(false, Ordering::Release);
            return None;
        }
        std::thread::yield_now();
    }
    // SAFETY: the protocol gives us the heap: the owner is outside and will
    // wait for `want` to clear before entering.
    let r = f(unsafe { s.heap() });
    s.want.store(false, Ordering::Release);
    Some(r)
}

/// Runs `f` on an abandoned slot's heap, claiming it for the duration.
/// Returns what `f` returned and whether the slot was claimed.
pub(crate) fn visit_abandoned<R>(s: &Slot, f: impl FnOnce(&mut StdHeap) -> (R, bool)) -> Option<R> {
    if s.state
        .compare_exchange(ABANDONED, CLAIMED, Ordering::AcqRel, Ordering::Relaxed)
        .is_err()
    {
        return None;
    }
    // SAFETY: the CAS made the heap ours; an abandoned slot's heap is initialised.
    let (r, emptied) = f(unsafe { s.heap() });
    s.state
        .store(if emptied { FREE } else { ABANDONED }, Ordering::Release);
    Some(r)
}
