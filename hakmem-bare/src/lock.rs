//! Locks: what serialises the operations on a heap, and what the heap's
//! `const` construction needs of them.
//!
//! [`RawLock`] is the small contract: a `const` unlocked value, `lock` that
//! returns some saved state (the interrupt mask, for a critical section),
//! `try_lock`, and `unlock` that takes the state back. [`Locked`] puts a
//! value behind one, with a guard that unlocks on drop.
//!
//! - [`SpinLock`]: the default. Safe across cores; *not* safe against
//!   interrupts: a handler that allocates while the code it interrupted holds
//!   the lock spins forever.
//! - `InterruptLock` (on `arm` targets with `target_os = "none"`, Cortex-M):
//!   saves PRIMASK and masks interrupts (`cpsid i`) before taking a
//!   [`SpinLock`], and restores PRIMASK after releasing it. No handler can
//!   run on the core while the heap is locked, so handlers may allocate; the
//!   spin lock inside keeps it sound on a multi-core part too.
//!
//! Other targets (Cortex-A/R, x86_64, RISC-V) implement [`RawLock`] with
//! their own interrupt mask, in the same shape as `InterruptLock`.
//!
//! Invariants:
//! - a [`Locked`]'s value is reached only through a guard, and at most one
//!   guard of a lock exists at a time (the lock is held while it lives);
//! - the state `lock` or `try_lock` returned is handed back, once, to the
//!   `unlock` that ends that hold.

use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicBool, Ordering};

/// A lock without data, `const`-constructible, possibly carrying state from
/// `lock` to `unlock` (an interrupt mask).
///
/// # Safety
/// Implementors promise that between a `lock` (or a `try_lock` that
/// returned `Some`) and the matching `unlock`, no other `lock` or
/// `try_lock` of the same lock returns, on any core or in any interrupt
/// handler that can run while it is held; and that `UNLOCKED` is unlocked.
/// The type must be `Sync` only where that holds across cores.
pub unsafe trait RawLock: Sync {
    /// An unlocked lock.
    const UNLOCKED: Self;
    /// What `lock` saves for `unlock` (`()` for a spin lock, the interrupt
    /// mask for a critical section).
    type State;
    /// Waits until the lock is held.
    fn lock(&self) -> Self::State;
    /// Takes the lock if it is free now; `None` (and nothing changed) if not.
    fn try_lock(&self) -> Option<Self::State>;
    /// Releases the lock.
    ///
    /// # Safety
    /// The lock is held by the caller, and `state` is what the `lock` or
    /// `try_lock` that took it returned.
    unsafe fn unlock(&self, state: Self::State);
}

/// A spin lock: an atomic flag, acquire on lock, release on unlock. Safe
/// across cores; not across an interrupt handler that allocates (see the
/// module documentation).
pub struct SpinLock(AtomicBool);

// SAFETY: a successful compare-exchange from false to true is the only way
// in, and only `unlock` (of the holder) stores false, so one holder at a
// time on every core and in every handler; `UNLOCKED` holds false.
unsafe impl RawLock for SpinLock {
    const UNLOCKED: SpinLock = SpinLock(AtomicBool::new(false));
    type State = ();

    #[inline]
    fn lock(&self) {
        while self.try_lock().is_none() {
            while self.0.load(Ordering::Relaxed) {
                core::hint::spin_loop();
            }
        }
    }

    #[inline]
    fn try_lock(&self) -> Option<()> {
        self.0
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .ok()
            .map(|_| ())
    }

    #[inline]
    unsafe fn unlock(&self, _: ()) {
        self.0.store(false, Ordering::Release);
    }
}

/// A critical section for Cortex-M: saves PRIMASK, masks interrupts
/// (`cpsid i`), then takes a [`SpinLock`]; `unlock` releases the spin lock
/// and restores PRIMASK, so interrupts masked before stay masked.
///
/// With it an interrupt handler may allocate and free: while the heap is
/// locked no handler runs on this core. The cost is interrupt latency: the
/// longest heap operation (a SuperSlab map, an out-of-memory hook) runs
/// with interrupts masked. Only code running at a privilege level that may
/// write PRIMASK can use it (privileged thread mode, handlers).
#[cfg(all(target_arch = "arm", target_os = "none"))]
pub struct InterruptLock(SpinLock);

#[cfg(all(target_arch = "arm", target_os = "none"))]
mod primask {
    /// Reads PRIMASK, then masks interrupts. Returns the old PRIMASK.
    #[inline(always)]
    pub fn save_and_mask() -> u32 {
        let old: u32;
        // SAFETY: reads PRIMASK and sets it; touches no memory and no other
        // register. The compiler fence that `asm!` implies by default (no
        // `nomem`) keeps heap accesses from moving before the mask.
        unsafe { core::arch::asm!("mrs {0}, PRIMASK", "cpsid i", out(reg) old) };
        old
    }

    /// Restores a PRIMASK that `save_and_mask` returned.
    #[inline(always)]
    pub fn restore(old: u32) {
        if old & 1 == 0 {
            // SAFETY: unmasks interrupts, as they were before the matching
            // `save_and_mask`; the implied compiler fence keeps heap
            // accesses from moving after it.
            unsafe { core::arch::asm!("cpsie i") };
        }
    }
}

// SAFETY: interrupts are masked on this core before the spin lock is tried
// and until after it is released, so no handler of this core can run while
// it is held; other cores are kept out by the spin lock (`SpinLock`'s
// promise). `UNLOCKED` holds an unlocked spin lock.
#[cfg(all(target_arch = "arm", target_os = "none"))]
unsafe impl RawLock for InterruptLock {
    const UNLOCKED: InterruptLock = InterruptLock(SpinLock::UNLOCKED);
    type State = u32;

    #[inline]
    fn lock(&self) -> u32 {
        let old = primask::save_and_mask();
        self.0.lock();
        old
    }

    #[inline]
    fn try_lock(&self) -> Option<u32> {
        let old = primask::save_and_mask();
        if self.0.try_lock().is_some() {
            Some(old)
        } else {
            primask::restore(old);
            None
        }
    }

    #[inline]
    unsafe fn unlock(&self, old: u32) {
        // SAFETY: held by the caller, taken by `lock`/`try_lock` above.
        unsafe { self.0.unlock(()) };
        primask::restore(old);
    }
}

/// A value behind a [`RawLock`], reached through a [`LockedGuard`].
pub struct Locked<L: RawLock, T> {
    lock: L,
    value: UnsafeCell<T>,
}

// SAFETY: the value is reached only through a guard, one at a time (the
// lock's promise), so sharing the `Locked` shares exclusive access to a
// `Send` value, moved between cores at most.
unsafe impl<L: RawLock, T: Send> Sync for Locked<L, T> {}

impl<L: RawLock, T> Locked<L, T> {
    /// `value`, unlocked.
    pub const fn new(value: T) -> Self {
        Locked {
            lock: L::UNLOCKED,
            value: UnsafeCell::new(value),
        }
    }

    /// Waits for the lock.
    #[inline]
    pub fn lock(&self) -> LockedGuard<'_, L, T> {
        let state = self.lock.lock();
        LockedGuard {
            owner: self,
            state: core::mem::ManuallyDrop::new(state),
        }
    }

    /// Waits for the lock unless a fault poisoned the heaps (then, or if it
    /// happens while waiting, `None`): never waits forever on a lock that a
    /// faulting call holds (see `fault.rs`).
    #[inline]
    pub(crate) fn lock_live(&self) -> Option<LockedGuard<'_, L, T>> {
        loop {
            if crate::fault::is_poisoned() {
                return None;
            }
            if let Some(g) = self.try_lock() {
                if crate::fault::is_poisoned() {
                    return None;
                }
                return Some(g);
            }
            core::hint::spin_loop();
        }
    }

    /// Takes the lock if it is free now.
    #[inline]
    pub fn try_lock(&self) -> Option<LockedGuard<'_, L, T>> {
        let state = self.lock.try_lock()?;
        Some(LockedGuard {
            owner: self,
            state: core::mem::ManuallyDrop::new(state),
        })
    }

    /// The value, without locking: the `&mut` proves nobody holds it.
    pub fn get_mut(&mut self) -> &mut T {
        self.value.get_mut()
    }
}

/// Exclusive access to a [`Locked`] value; unlocks on drop.
pub struct LockedGuard<'a, L: RawLock, T> {
    owner: &'a Locked<L, T>,
    state: core::mem::ManuallyDrop<L::State>,
}

impl<L: RawLock, T> Deref for LockedGuard<'_, L, T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: the guard holds the lock (invariant): no other reference.
        unsafe { &*self.owner.value.get() }
    }
}

impl<L: RawLock, T> DerefMut for LockedGuard<'_, L, T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`, and `&mut self` excludes the guard's readers.
        unsafe { &mut *self.owner.value.get() }
    }
}

impl<L: RawLock, T> Drop for LockedGuard<'_, L, T> {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: taken once, here, on the guard's only drop.
        let state = unsafe { core::mem::ManuallyDrop::take(&mut self.state) };
        // SAFETY: this guard holds the lock and `state` is what took it.
        unsafe { self.owner.lock.unlock(state) };
    }
}
