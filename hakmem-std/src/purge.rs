//! The background thread: returns memory that no thread call would return.
//!
//! Every `purge_delay / 2` (at least 10 ms) it passes over all heaps:
//! - an idle thread's heap (visited under the `heaps` protocol): collects
//!   the frees other threads made into it, which releases the SuperSlabs
//!   they emptied; decommits its retained empty memory when the previous
//!   pass saw some too (the mark is per heap, not per SuperSlab: memory
//!   stays committed at most about `purge_delay`, and memory emptied just
//!   before such a pass goes at once; a thread that frees its last block
//!   and allocates again does not pay a syscall each time);
//! - a dead thread's heap: collects, then releases every empty SuperSlab;
//!   once it holds nothing its slot is free for reuse;
//! - the shared heap, likewise, under its lock.
//!
//! It is optional (`HAKMEM_BACKGROUND=0`); without it, the same work happens
//! when the owner calls [`trim`](crate::trim).

use core::sync::atomic::Ordering;
use std::time::Duration;

use crate::global::{self, Global};
use crate::heaps::{self, Slot, StdHeap, ABANDONED, OWNED};

/// Starts the background thread (once per process).
pub(crate) fn start(g: &'static Global) {
    let spawned = std::thread::Builder::new()
        .name("hakmem-purge".into())
        .spawn(move || run(g));
    if g.cfg.verbose {
        let ok = spawned.is_ok();
        crate::stats::write_stderr(format_args!(
            "hakmem: background thread {}\n",
            if ok { "started" } else { "could not start" }
        ));
    }
}

fn run(g: &'static Global) -> ! {
    let tick = Duration::from_millis((g.cfg.purge_delay_ms / 2).max(10));
    loop {
        std::thread::sleep(tick);
        let n = pass(g.cfg.purge_delay_ms == 0);
        if g.cfg.verbose && n.any() {
            crate::stats::write_stderr(format_args!(
                "hakmem: background pass: {} blocks collected, {} bytes decommitted, {} SuperSlabs released\n",
                n.collected, n.decommitted, n.released
            ));
        }
    }
}

/// What one pass did.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Pass {
    pub collected: usize,
    pub decommitted: usize,
    pub released: usize,
}

impl Pass {
    fn any(&self) -> bool {
        self.collected + self.decommitted + self.released != 0
    }
    fn add(&mut self, o: Pass) {
        self.collected += o.collected;
        self.decommitted += o.decommitted;
        self.released += o.released;
    }
}

/// One pass over every heap. With `now`, retained memory is decommitted on
/// first sight.
pub(crate) fn pass(now: bool) -> Pass {
    let _visitors = heaps::visitors();
    let mut total = Pass::default();
    let visit_owned = heaps::membarrier_ready();
    for s in heaps::registry() {
        match s.state.load(Ordering::Acquire) {
            OWNED if visit_owned => {
                if let Some(p) = heaps::visit_owned(s, false, |h| tend(s, h, now)) {
                    total.add(p);
                }
            }
            ABANDONED => {
                if let Some(p) = heaps::visit_abandoned(s, |h| {
                    let p = reclaim(h);
                    (p, h.stats().mapped_bytes == 0)
                }) {
                    total.add(p);
                }
            }
            _ => {}
        }
    }
    if let Some((slot, lock)) = global::shared() {
        let _l = lock.lock();
        // SAFETY: the shared heap is used only under its lock.
        total.add(tend(slot, unsafe { slot.heap() }, now));
    }
    total
}

/// Work on a live heap: collect remote frees; decommit retained memory
/// seen on the previous pass too.
fn tend(s: &Slot, h: &mut StdHeap, now: bool) -> Pass {
    let mut p = Pass::default();
    let before = h.stats().superslabs_released;
    if h.has_pending() {
        p.collected = h.collect();
    }
    if h.committed_free() > 0 {
        if now || s.armed.swap(true, Ordering::Relaxed) {
            p.decommitted = h.decommit_free();
            s.armed.store(false, Ordering::Relaxed);
        }
    } else {
        s.armed.store(false, Ordering::Relaxed);
    }
    p.released = h.stats().superslabs_released - before;
    p
}

/// Work on a dead thread's heap: collect, then release every empty SuperSlab.
pub(crate) fn reclaim(h: &mut StdHeap) -> Pass {
    let before = h.stats().superslabs_released;
    let collected = h.collect();
    h.trim();
    Pass {
        collected,
        decommitted: 0,
        released: h.stats().superslabs_released - before,
    }
}
