//! `BareHeap<L>` over a lock of the user's own: every heap operation takes
//! it and hands back, to the matching unlock, the state its lock returned
//! (the saved interrupt mask of a critical section); a `Locked` value is
//! reached by one guard at a time.

mod common;

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};

use common::Arena;
use hakmem_bare::{BareHeap, Locked, RawLock, BARE_CONFIG};

static TAKEN: AtomicUsize = AtomicUsize::new(0);
static WRONG_STATE: AtomicUsize = AtomicUsize::new(0);
static NEXT: AtomicU32 = AtomicU32::new(1);

/// A spin lock that counts its holds and checks the state it gets back.
struct Recording {
    held: AtomicBool,
    state: AtomicU32,
}

// SAFETY: a compare-exchange of `held` from false to true is the only way
// in, and only the holder's `unlock` clears it.
unsafe impl RawLock for Recording {
    const UNLOCKED: Recording = Recording {
        held: AtomicBool::new(false),
        state: AtomicU32::new(0),
    };
    type State = u32;
    fn lock(&self) -> u32 {
        loop {
            if let Some(s) = self.try_lock() {
                return s;
            }
            std::hint::spin_loop();
        }
    }
    fn try_lock(&self) -> Option<u32> {
        self.held
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .ok()?;
        TAKEN.fetch_add(1, Ordering::Relaxed);
        let s = NEXT.fetch_add(1, Ordering::Relaxed);
        self.state.store(s, Ordering::Relaxed);
        Some(s)
    }
    unsafe fn unlock(&self, s: u32) {
        if self.state.load(Ordering::Relaxed) != s {
            WRONG_STATE.fetch_add(1, Ordering::Relaxed);
        }
        self.held.store(false, Ordering::Release);
    }
}

#[test]
fn every_operation_takes_the_users_lock_and_restores_its_state() {
    let arena = Arena::aligned(64 * 1024, 16 * 1024);
    let heap: BareHeap<Recording> = BareHeap::with_lock(BARE_CONFIG, None);
    // SAFETY: the arena is used by nothing but the heap, which it outlives.
    unsafe { heap.init(arena.start(), arena.len()) }.unwrap();
    let l = Layout::from_size_align(100, 8).unwrap();
    let before = TAKEN.load(Ordering::Relaxed);
    // SAFETY: a non-zero layout; the block is freed with it.
    unsafe {
        let p = heap.alloc(l);
        assert!(!p.is_null());
        assert_eq!(TAKEN.load(Ordering::Relaxed), before + 1, "alloc locks");
        let q = heap.realloc(p, l, 300);
        assert_eq!(TAKEN.load(Ordering::Relaxed), before + 2, "realloc locks");
        heap.dealloc(q, Layout::from_size_align(300, 8).unwrap());
        assert_eq!(TAKEN.load(Ordering::Relaxed), before + 3, "dealloc locks");
    }
    assert_eq!(heap.stats().unwrap().live_bytes, 0);
    assert_eq!(WRONG_STATE.load(Ordering::Relaxed), 0);
    drop(heap);
    arena.check_guards();
}

#[test]
fn a_locked_value_has_one_guard_at_a_time() {
    let v: Locked<hakmem_bare::SpinLock, u32> = Locked::new(7);
    let mut g = v.lock();
    assert!(v.try_lock().is_none(), "a second guard while one lives");
    *g += 1;
    drop(g);
    assert_eq!(*v.try_lock().expect("free again"), 8);
}
