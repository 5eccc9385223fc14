//! `bare_ops`: an operation sequence on hakmem-bare — a [`LocalHeap`] over
//! [`FixedRegion`](hakmem_bare::FixedRegion)s, or the same behind
//! [`BareHeap`]'s lock through `GlobalAlloc` — checked against a model.
//!
//! The input's first bytes pick the front end, the geometry (16 KiB or
//! 64 KiB SuperSlabs), the retain policy, and the first region: its
//! length (from under the smallest usable region to 1 MiB) and its start
//! offset from a 16 KiB boundary (misaligned starts lose their head).
//! Then: alloc / alloc_zeroed at sizes of every tier and alignments up to
//! 64 KiB, frees, realloc grow/shrink, trims, more regions claimed (refused
//! ones included: overlapping, too small, too many), an out-of-memory hook
//! that claims one of the spare regions the input prepared, and invalid
//! frees through `try_dealloc` (interior pointers, blocks already freed),
//! which must be refused with nothing changed.
//!
//! After every operation: the core heap passes `Heap::check`; no two live
//! blocks overlap, each lies inside a claimed region and holds its pattern
//! when touched; `live_bytes` is the model's sum, `held_blocks` its count,
//! the region's mapped bytes the heap's. A null is accepted only when the
//! regions have no room: for a slab-class request no free SuperSlab-sized
//! chunk is left (`largest_free`), for a large one no range that could hold
//! it. At the end everything is freed, the heap trimmed, and no byte of the
//! regions may still be mapped.

use std::alloc::{GlobalAlloc, Layout};
use std::cell::RefCell;
use std::collections::BTreeMap;

use hakmem_bare::{BareHeap, Config, LocalHeap, OomCtx, BARE_CONFIG};
use hakmem_core::size_class::MIN_ALIGN;

use crate::input::{self, Input};
use crate::live;
use crate::pattern;

const KIB: usize = 1 << 10;
/// Alignment of the region buffers (the 16 KiB SuperSlab); regions start
/// `offset` bytes past it.
const ARENA_ALIGN: usize = 16 * KIB;

/// One buffer handed to the heap as a region.
struct Arena {
    base: *mut u8,
    layout: Layout,
    start: *mut u8,
    len: usize,
    /// Whether the heap accepted it (through `claim` or `init`).
    claimed: bool,
}

impl Arena {
    fn new(len: usize, offset: usize) -> Arena {
        let layout = Layout::from_size_align(len + offset, ARENA_ALIGN).unwrap();
        // SAFETY: a non-zero size.
        let base = unsafe { std::alloc::alloc(layout) };
        assert!(!base.is_null());
        Arena {
            base,
            layout,
            // SAFETY: `offset <= layout.size()`.
            start: unsafe { base.add(offset) },
            len,
            claimed: false,
        }
    }

    fn holds(&self, p: *mut u8, n: usize) -> bool {
        let (s, e) = (self.start as usize, self.start as usize + self.len);
        p as usize >= s && p as usize + n <= e
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { std::alloc::dealloc(self.base, self.layout) }
    }
}

thread_local! {
    /// Regions the out-of-memory hook may claim, next last.
    static SPARE: RefCell<Vec<(*mut u8, usize)>> = const { RefCell::new(Vec::new()) };
    /// Regions the hook claimed.
    static HOOK_CLAIMED: RefCell<usize> = const { RefCell::new(0) };
}

/// The out-of-memory hook: claims the next spare region, if any.
fn hook(ctx: &mut OomCtx<'_>, _layout: Layout) -> bool {
    while let Some((p, len)) = SPARE.with(|s| s.borrow_mut().pop()) {
        // SAFETY: the spare arenas live in the `World`, which outlives the
        // heap, and nothing else uses them.
        if unsafe { ctx.claim(p, len) }.is_ok() {
            HOOK_CLAIMED.with(|c| *c.borrow_mut() += 1);
            return true;
        }
    }
    false
}

enum Front {
    Local(Box<LocalHeap>),
    Locked(Box<BareHeap>),
}

impl Front {
    fn with<R>(&mut self, f: impl FnOnce(&mut LocalHeap) -> R) -> R {
        match self {
            Front::Local(h) => f(h),
            Front::Locked(h) => h.with(f).expect("BareHeap initialised"),
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Block {
    ptr: *mut u8,
    size: usize,
    align: usize,
    id: u64,
}

struct World {
    /// Declared first: dropped before the arenas it uses.
    front: Front,
    cfg: Config,
    arenas: Vec<Arena>,
    blocks: Vec<Block>,
    by_addr: live::Ranges,
    freed: Vec<usize>,
    next_id: u64,
    live: usize,
    step: usize,
}

impl World {
    fn ctx(&self) -> String {
        format!("[bare_ops step {}]", self.step)
    }

    fn ss(&self) -> usize {
        1 << self.cfg.superslab_shift
    }

    fn check_block(&mut self, b: &Block, what: &str) {
        let ctx = self.ctx();
        assert_eq!(
            b.ptr as usize % b.align.max(MIN_ALIGN),
            0,
            "{ctx} {what}: {b:?} misaligned"
        );
        assert!(
            self.arenas.iter().any(|a| a.holds(b.ptr, b.size)),
            "{ctx} {what}: {b:?} outside every region"
        );
        // SAFETY: a live block of this heap.
        let usable = self
            .front
            .with(|h| unsafe { h.usable_size(b.ptr) })
            .unwrap_or_else(|e| panic!("{ctx} {what}: usable_size of live {b:?}: {e:?}"));
        assert!(usable >= b.size, "{ctx} {what}: usable {usable} < {b:?}");
        // SAFETY: live, its `size` bytes hold its pattern.
        if let Some((at, got, want)) = unsafe { pattern::mismatch(b.ptr, b.id, 0, b.size) } {
            panic!("{ctx} {what}: {b:?} byte {at} is {got:#04x}, expected {want:#04x}");
        }
    }

    fn check_heap(&mut self) {
        let ctx = self.ctx();
        let (n, live) = (self.blocks.len(), self.live);
        self.front.with(|h| {
            h.core()
                .check()
                .unwrap_or_else(|e| panic!("{ctx} check: {e}"));
            let s = h.stats();
            assert_eq!(s.live_bytes, live, "{ctx} live_bytes\n{s}");
            assert!(s.peak_live_bytes >= live, "{ctx} peak\n{s}");
            assert_eq!(s.heap.held_blocks, n, "{ctx} held_blocks\n{s}");
            assert_eq!(
                s.heap.mapped_bytes, s.region.mapped_bytes,
                "{ctx} mapped\n{s}"
            );
            assert!(
                s.region.mapped_bytes <= s.region.managed_bytes,
                "{ctx} managed\n{s}"
            );
        });
    }

    fn insert(&mut self, b: Block) {
        let (start, end) = (b.ptr as usize, b.ptr as usize + b.size.max(1));
        if let Some((s, e)) = live::overlap(&self.by_addr, start, end) {
            panic!("{} {b:?} overlaps {s:#x}..{e:#x}", self.ctx());
        }
        self.by_addr.insert(start, end);
        self.live += b.size;
        self.blocks.push(b);
    }

    fn remove(&mut self, i: usize) -> Block {
        let b = self.blocks.swap_remove(i);
        self.by_addr.remove(&(b.ptr as usize));
        self.live -= b.size;
        if self.freed.len() >= 64 {
            self.freed.swap_remove(0);
        }
        self.freed.push(b.ptr as usize);
        b
    }

    /// A null for `(size, align)`: only when no range could hold it
    /// (after the heap's own trim): for a slab-class request no free
    /// SuperSlab-sized chunk, for a large one no range of its header and
    /// size at its alignment (the core maps `align + size` at `align` for
    /// alignments of the SuperSlab size or more).
    fn null_ok(&mut self, size: usize, align: usize, what: &str) {
        let ss = self.ss();
        let max_slab = self.front.with(|h| h.core().geometry().max_slab_size());
        let (room, need) = if align >= ss {
            (
                self.front.with(|h| h.core().source().largest_free(align)),
                align + size,
            )
        } else if size <= max_slab {
            (self.front.with(|h| h.core().source().largest_free(ss)), ss)
        } else {
            let room = self.front.with(|h| h.core().source().largest_free(ss));
            (room, size + 128 + align)
        };
        assert!(
            room < need,
            "{} {what}({size}, {align}) null with {room} B free in one range (needs {need})",
            self.ctx()
        );
    }

    fn alloc(&mut self, size: usize, align: usize, zero: bool) {
        let size = match self.front {
            // GlobalAlloc's contract: a non-zero size.
            Front::Locked(_) => size.max(1),
            Front::Local(_) => size,
        };
        let layout = Layout::from_size_align(size, align).unwrap();
        let p = match &mut self.front {
            Front::Local(h) if zero => h.alloc_zeroed(layout),
            Front::Local(h) => h.alloc(layout),
            // SAFETY: a non-zero layout.
            Front::Locked(h) if zero => unsafe { h.alloc_zeroed(layout) },
            // SAFETY: a non-zero layout.
            Front::Locked(h) => unsafe { h.alloc(layout) },
        };
        if p.is_null() {
            self.null_ok(size, align, if zero { "alloc_zeroed" } else { "alloc" });
            return;
        }
        if zero {
            // SAFETY: a fresh zeroed block of `size` bytes.
            if let Some(at) = unsafe { pattern::first_nonzero(p, size) } {
                panic!(
                    "{} alloc_zeroed({size}, {align}): byte {at} not zero",
                    self.ctx()
                );
            }
        }
        let b = Block {
            ptr: p,
            size,
            align,
            id: self.next_id,
        };
        self.next_id += 1;
        self.insert(b);
        // SAFETY: a fresh block of `size` bytes.
        unsafe { pattern::fill(p, b.id, 0, size) };
        self.check_block(&b, "alloc");
    }

    fn free(&mut self, i: usize) {
        let b = self.blocks[i];
        self.check_block(&b, "free");
        self.remove(i);
        let layout = Layout::from_size_align(b.size, b.align).unwrap();
        match &mut self.front {
            // SAFETY: live, allocated with `layout`, forgotten by the model.
            Front::Local(h) => unsafe { h.try_dealloc(b.ptr, layout) }
                .unwrap_or_else(|e| panic!("[bare_ops] free of live {b:?}: {e:?}")),
            // SAFETY: as above.
            Front::Locked(h) => unsafe { h.dealloc(b.ptr, layout) },
        }
    }

    fn realloc(&mut self, i: usize, new_size: usize) {
        let old = self.blocks[i];
        self.check_block(&old, "realloc");
        let new_size = match self.front {
            Front::Locked(_) => new_size.max(1),
            Front::Local(_) => new_size,
        };
        let layout = Layout::from_size_align(old.size, old.align).unwrap();
        let p = match &mut self.front {
            // SAFETY: live, allocated with `layout`; the model forgets it if
            // it moves.
            Front::Local(h) => unsafe { h.try_realloc(old.ptr, layout, new_size) }
                .unwrap_or_else(|e| panic!("[bare_ops] realloc of live {old:?}: {e:?}")),
            // SAFETY: as above; `new_size` is non-zero and small.
            Front::Locked(h) => unsafe { h.realloc(old.ptr, layout, new_size) },
        };
        if p.is_null() {
            self.null_ok(new_size, old.align, "realloc");
            self.check_block(&old, "after failed realloc");
            return;
        }
        self.remove(i);
        let keep = old.size.min(new_size);
        // SAFETY: `p` is live with at least `keep` bytes copied from `old`.
        if let Some((at, got, want)) = unsafe { pattern::mismatch(p, old.id, 0, keep) } {
            panic!(
                "{} realloc({old:?}, {new_size}) byte {at} is {got:#04x}, expected {want:#04x}",
                self.ctx()
            );
        }
        let b = Block {
            ptr: p,
            size: new_size,
            align: old.align,
            id: old.id,
        };
        self.insert(b);
        // SAFETY: `p` has at least `new_size` bytes.
        unsafe { pattern::fill(p, b.id, keep, new_size) };
        self.check_block(&b, "realloc result");
    }

    fn invalid_free(&mut self, sel: u16) {
        let Front::Local(_) = self.front else { return };
        let ss = self.ss();
        let max_slab = self.front.with(|h| h.core().geometry().max_slab_size());
        let target = if sel.is_multiple_of(2) && !self.blocks.is_empty() {
            let b = self.blocks[sel as usize / 2 % self.blocks.len()];
            if b.size <= 1 || (b.size > max_slab && b.align >= ss) {
                return;
            }
            b.ptr as usize + 1 + (sel as usize >> 3) % (b.size.min(4 * KIB) - 1)
        } else if !self.freed.is_empty() {
            let a = self.freed[sel as usize / 2 % self.freed.len()];
            let near = self.blocks.iter().any(|b| {
                let s = (b.ptr as usize).saturating_sub(ss);
                let e = b.ptr as usize + b.size + b.size / 4 + 2 * ss;
                (s..e).contains(&a)
            });
            if near {
                return;
            }
            a
        } else {
            return;
        };
        let Front::Local(h) = &mut self.front else {
            return;
        };
        let before = h.stats();
        let p = std::ptr::null_mut::<u8>().with_addr(target);
        // SAFETY: not a live block's start; inside a live block's first
        // window or in no live block (see `core_ops::invalid_free`).
        let r = unsafe { h.try_dealloc(p, Layout::from_size_align(16, 1).unwrap()) };
        assert!(
            r.is_err(),
            "[bare_ops step {}] invalid free of {target:#x} accepted",
            self.step
        );
        assert_eq!(
            h.stats(),
            before,
            "[bare_ops step {}] invalid free changed the heap",
            self.step
        );
    }

    /// Claims a new region of `len` bytes at `offset` (it may be refused).
    fn claim(&mut self, len: usize, offset: usize, overlap: bool) {
        let claimed = self.arenas.iter().rposition(|a| a.claimed);
        let (start, len, overlap) = match claimed {
            // Part of a claimed region again: must be refused.
            Some(i) if overlap => {
                let a = &self.arenas[i];
                // SAFETY: `offset % a.len` is inside the arena.
                (unsafe { a.start.add(offset % a.len) }, len, true)
            }
            _ => {
                let a = Arena::new(len, offset);
                let s = a.start;
                self.arenas.push(a);
                (s, len, false)
            }
        };
        let before = self.front.with(|h| h.stats().region);
        let r = match &mut self.front {
            // SAFETY: the arena lives in the world, past the heap, unused by
            // anything else (an overlapping claim must be refused).
            Front::Local(h) => unsafe { h.claim(start, len) },
            // SAFETY: as above.
            Front::Locked(h) => unsafe { h.claim(start, len) },
        };
        let after = self.front.with(|h| h.stats().region);
        match r {
            Ok(n) => {
                assert!(!overlap, "{} overlapping claim accepted", self.ctx());
                let last = self.arenas.len() - 1;
                self.arenas[last].claimed = true;
                assert_eq!(
                    after.managed_bytes,
                    before.managed_bytes + n,
                    "{} claim",
                    self.ctx()
                );
                assert_eq!(after.regions, before.regions + 1, "{} claim", self.ctx());
            }
            Err(_) => assert_eq!(
                after.regions,
                before.regions,
                "{} refused claim",
                self.ctx()
            ),
        }
    }
}

/// Runs one input; returns the operations executed.
pub fn run(data: &[u8]) -> u64 {
    let mut inp = Input::new(data);
    let (Some(g), Some(len0), Some(off0)) = (inp.u8(), inp.u16(), inp.u8()) else {
        return 0;
    };
    let mut cfg = BARE_CONFIG;
    if g & 2 != 0 {
        cfg.superslab_shift = 16;
        cfg.slab_shift = 0;
    }
    cfg.retain = ((g >> 2) & 3) as usize;
    let first_len = KIB + (len0 as usize * 16) % (1024 * KIB);
    let first_off = (off0 as usize) * 64 % ARENA_ALIGN;
    let use_hook = g & 0x10 != 0;
    let front = if g & 1 == 0 {
        let mut h = Box::new(LocalHeap::new(cfg).unwrap());
        if use_hook {
            h.set_oom_hook(Some(hook));
        }
        Front::Local(h)
    } else {
        Front::Locked(Box::new(BareHeap::new(
            cfg,
            if use_hook { Some(hook) } else { None },
        )))
    };
    let mut w = World {
        front,
        cfg,
        arenas: Vec::new(),
        blocks: Vec::new(),
        by_addr: BTreeMap::new(),
        freed: Vec::new(),
        next_id: 1,
        live: 0,
        step: 0,
    };
    let mut a = Arena::new(first_len, first_off);
    let (s, l) = (a.start, a.len);
    a.claimed = true;
    w.arenas.push(a);
    let ok = match &mut w.front {
        // SAFETY: the arena lives in the world, past the heap.
        Front::Local(h) => unsafe { h.claim(s, l) }.is_ok(),
        // SAFETY: as above.
        Front::Locked(h) => unsafe { h.init(s, l) }.is_ok(),
    };
    if !ok {
        if let Front::Locked(h) = &w.front {
            assert!(!h.is_initialized());
        }
        return 1;
    }
    // Spare regions for the hook: up to three, from the input.
    SPARE.with(|sp| sp.borrow_mut().clear());
    if use_hook {
        let n = (g >> 5) as usize % 4;
        for k in 0..n {
            let len = (32 * KIB) << k;
            let a = Arena::new(len, 0);
            SPARE.with(|sp| sp.borrow_mut().push((a.start, len)));
            w.arenas.push(a);
        }
    }
    let geo_max_slab = w.front.with(|h| h.core().geometry().max_slab_size());
    let unit = w.front.with(|h| h.core().geometry().unit_size());
    let mut ops = 1u64;
    while let Some(op) = inp.u8() {
        match op % 16 {
            0..=5 => {
                let Some(size) = input::size(&mut inp, geo_max_slab, unit, 256 * KIB) else {
                    break;
                };
                let Some(a) = inp.u8() else { break };
                // Alignments up to 64 KiB.
                let align = 1usize << (a % 17).min(if a & 0x80 != 0 { 16 } else { 5 });
                if w.live + size > 8 << 20 && !w.blocks.is_empty() {
                    w.free(0);
                } else {
                    w.alloc(size, align, op & 0x40 != 0);
                }
            }
            6..=8 if !w.blocks.is_empty() => {
                let Some(i) = inp.index(w.blocks.len()) else {
                    break;
                };
                w.free(i);
            }
            9 | 10 if !w.blocks.is_empty() => {
                let Some(i) = inp.index(w.blocks.len()) else {
                    break;
                };
                let Some(v) = inp.u16() else { break };
                let old = w.blocks[i].size;
                let new = match v % 3 {
                    0 => old - (v as usize >> 2) % (old / 2 + 1),
                    1 => old + (v as usize >> 2) % (old + 64),
                    _ => (v as usize >> 2) * 16,
                };
                w.realloc(i, new.min(256 * KIB));
            }
            11 => {
                w.front.with(|h| h.trim());
            }
            12 => {
                let (Some(len), Some(off)) = (inp.u16(), inp.u8()) else {
                    break;
                };
                let len = 64 + (len as usize * 8) % (512 * KIB);
                w.claim(
                    len,
                    (off as usize * 64) % ARENA_ALIGN,
                    off & 1 != 0 && op & 0x80 != 0,
                );
            }
            13 => {
                let Some(sel) = inp.u16() else { break };
                w.invalid_free(sel);
            }
            14 => {
                for b in &w.blocks {
                    // SAFETY: live, its `size` bytes hold its pattern.
                    let bad = unsafe { pattern::mismatch_edges(b.ptr, b.id, b.size, 64) };
                    if let Some((at, g, e)) = bad {
                        panic!(
                            "{} check all: {b:?} byte {at} is {g:#04x}, expected {e:#04x}",
                            w.ctx()
                        );
                    }
                }
            }
            _ => continue,
        }
        ops += 1;
        w.step += 1;
        w.check_heap();
    }
    while !w.blocks.is_empty() {
        w.free(w.blocks.len() - 1);
    }
    w.front.with(|h| h.trim());
    w.check_heap();
    let s = w.front.with(|h| h.stats());
    assert_eq!(
        s.region.mapped_bytes, 0,
        "[bare_ops end] regions still mapped\n{s}"
    );
    assert_eq!(
        s.heap.held_blocks + s.heap.superslabs_mapped + s.heap.large_count,
        0,
        "[bare_ops end]\n{s}"
    );
    SPARE.with(|sp| sp.borrow_mut().clear());
    drop(w);
    ops
}
