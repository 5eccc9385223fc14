//! `core_ops`: an operation sequence on two `hakmem_core::Heap`s sharing one
//! `SimPages`, checked against a model after every operation.
//!
//! The input's first bytes pick the geometry (SuperSlab 16 KiB to 2 MiB),
//! the retain policy and the large-region cache; then each operation is an
//! opcode byte and its arguments:
//!
//! - alloc / alloc_zeroed / realloc(null) on either heap, at sizes of every
//!   tier (tiny, slab classes, geometry edges, large) and alignments up to
//!   4 MiB, plus invalid requests (alignment 0 or not a power of two, sizes
//!   near `usize::MAX`) that must return null and change nothing;
//! - frees by the owner, by the other heap (a remote free batched in the
//!   freeing heap) and with [`free_remote`] (no heap);
//! - realloc grow / shrink / to 0 by the owner or the other heap (a move
//!   from another owner frees remotely);
//! - collect, flush, trim, decommit_free, set_retain on either heap, and a
//!   full sync (both collect) after which the figures must be exact;
//! - hand-over: the two heaps swap places (each heap value moves, with its
//!   pending remote frees), or one moves through a `Box`;
//! - faults: `SimPages` refusing the n-th map, every map, or maps beyond a
//!   byte budget; allocations may then return null, the old block of a
//!   failed realloc stays intact, and everything works again once cleared;
//! - invalid frees (interior pointers; frees of blocks already freed whose
//!   address no live block covers) must be rejected with no change.
//!
//! Every block is filled with the pattern of its id, checked when it is
//! freed, reallocated or touched (and the first and last 64 bytes of every block on the "check all"
//! operation). After every operation both heaps pass `Heap::check`, no two
//! live blocks overlap, each heap's `held_blocks` is exactly its live
//! blocks, its per-class and large figures lie between the live and the
//! live-plus-pending counts (exact after a sync), and the page source's
//! mapped bytes and regions are the sum of the heaps'. At the end
//! everything is freed, both heaps trimmed, and the page source must hold
//! nothing.

use std::collections::BTreeMap;
use std::ptr;

use hakmem_core::size_class::{class_for, class_of, class_size, MIN_ALIGN, NUM_CLASSES};
use hakmem_core::{free_remote, sim::SimPages, Config, Geometry, Heap, Stats};

use crate::input::{self, Input};
use crate::live;
use crate::pattern;

const KIB: usize = 1 << 10;
const MIB: usize = 1 << 20;
/// Largest valid request.
const MAX_LARGE: usize = 4 * MIB;
/// Above this many requested bytes live, allocations become frees.
const LIVE_CAP: usize = 48 * MIB;
/// The page source's budget when no fault is armed: far above what the
/// model ever holds, so a null then is a bug; it stops requests the heap
/// should have refused from reaching the system allocator.
const BASE_BUDGET: usize = 512 * MIB;

/// The size class `(size, align)` must be served from, or `None` for a
/// large block (the heap's documented routing).
fn expected_class(geo: &Geometry, size: usize, align: usize) -> Option<usize> {
    if align <= MIN_ALIGN {
        return if size <= geo.max_slab_size() {
            class_of(size)
        } else {
            None
        };
    }
    if align <= geo.unit_size() {
        if let Some(c) = class_for(size, align) {
            if c < geo.slab_classes {
                return Some(c);
            }
        }
    }
    None
}

#[derive(Clone, Copy, Debug)]
struct Block {
    ptr: *mut u8,
    size: usize,
    align: usize,
    id: u64,
    /// `Heap::id` of the owner.
    owner: usize,
    class: Option<usize>,
}

impl Block {
    fn end(&self) -> usize {
        self.ptr as usize + self.size.max(1)
    }
}

struct World<'p> {
    pages: &'p SimPages,
    heaps: [Heap<&'p SimPages>; 2],
    geo: Geometry,
    blocks: Vec<Block>,
    by_addr: live::Ranges,
    /// Blocks freed by other owners since the last sync, per heap id.
    maybe_pending: BTreeMap<usize, usize>,
    /// Addresses of blocks freed, for invalid frees (bounded).
    freed: Vec<usize>,
    next_id: u64,
    live_bytes: usize,
    armed: bool,
    step: usize,
}

impl<'p> World<'p> {
    fn ctx(&self) -> String {
        format!("[core_ops step {}]", self.step)
    }

    fn heap_index(&self, owner: usize) -> usize {
        if self.heaps[0].id() == owner {
            0
        } else {
            assert_eq!(self.heaps[1].id(), owner, "{} unknown owner", self.ctx());
            1
        }
    }

    fn insert(&mut self, b: Block) {
        let (start, end) = (b.ptr as usize, b.end());
        if let Some((s, e)) = live::overlap(&self.by_addr, start, end) {
            panic!("{} {b:?} overlaps live {s:#x}..{e:#x}", self.ctx());
        }
        self.by_addr.insert(start, end);
        self.live_bytes += b.size;
        self.blocks.push(b);
    }

    fn remove(&mut self, i: usize) -> Block {
        let b = self.blocks.swap_remove(i);
        assert_eq!(self.by_addr.remove(&(b.ptr as usize)), Some(b.end()));
        self.live_bytes -= b.size;
        if self.freed.len() >= 64 {
            self.freed.swap_remove(0);
        }
        self.freed.push(b.ptr as usize);
        b
    }

    /// Whether `addr` lies in some live block's requested range.
    fn covered(&self, addr: usize) -> bool {
        match self.by_addr.range(..=addr).next_back() {
            Some((_, &e)) => addr < e,
            None => false,
        }
    }

    /// Whether `addr` may lie in a live large block's mapping: from a
    /// SuperSlab below it to a SuperSlab past its rounded-up end.
    fn near_large(&self, addr: usize) -> bool {
        let ss = self.geo.superslab_size();
        self.blocks.iter().any(|b| {
            b.class.is_none() && {
                let start = (b.ptr as usize).saturating_sub(ss);
                let end = b.ptr as usize + b.size + b.size / 4 + 2 * ss;
                (start..end).contains(&addr)
            }
        })
    }

    fn check_block(&self, b: &Block, what: &str) {
        assert_eq!(
            b.ptr as usize % b.align.max(MIN_ALIGN),
            0,
            "{} {what}: {b:?} misaligned",
            self.ctx()
        );
        let h = &self.heaps[self.heap_index(b.owner)];
        // SAFETY: `b` is a live block of these heaps.
        let usable = unsafe { h.usable_size(b.ptr) }
            .unwrap_or_else(|e| panic!("{} {what}: usable_size of live {b:?}: {e:?}", self.ctx()));
        assert!(
            usable >= b.size,
            "{} {what}: usable {usable} < {b:?}",
            self.ctx()
        );
        if let Some(c) = b.class {
            assert_eq!(
                usable,
                class_size(c),
                "{} {what}: class of {b:?}",
                self.ctx()
            );
        }
        // SAFETY: live, `b.size` bytes initialised with its pattern.
        if let Some((at, got, want)) = unsafe { pattern::mismatch(b.ptr, b.id, 0, b.size) } {
            panic!(
                "{} {what}: {b:?} byte {at} is {got:#04x}, expected {want:#04x}",
                self.ctx()
            );
        }
    }

    /// Both heaps' invariants and figures against the model; `exact` after
    /// a sync (nothing pending anywhere).
    fn check_heaps(&self, exact: bool) {
        let mut mapped = 0;
        let mut regions = 0;
        for h in &self.heaps {
            h.check()
                .unwrap_or_else(|e| panic!("{} heap {} check: {e}", self.ctx(), h.id()));
            let s: Stats = h.stats();
            let ctx = format!("{} heap {}", self.ctx(), h.id());
            let mine: Vec<&Block> = self.blocks.iter().filter(|b| b.owner == h.id()).collect();
            assert_eq!(s.held_blocks, mine.len(), "{ctx} held_blocks\n{s}");
            let pending = *self.maybe_pending.get(&h.id()).unwrap_or(&0);
            assert!(
                s.pending_remote <= pending,
                "{ctx} pending {} > remote frees made {pending}\n{s}",
                s.pending_remote
            );
            if exact {
                assert_eq!(s.pending_remote, 0, "{ctx} pending after sync\n{s}");
            }
            let mut small = [0usize; NUM_CLASSES];
            let (mut large, mut large_bytes) = (0, 0);
            for b in &mine {
                match b.class {
                    Some(c) => small[c] += 1,
                    None => {
                        large += 1;
                        large_bytes += b.size;
                    }
                }
            }
            for (c, &n) in small.iter().enumerate() {
                let got = s.classes[c].held_blocks;
                assert!(
                    got >= n && got <= n + s.pending_remote,
                    "{ctx} class {c} held {got}, model {n}\n{s}"
                );
            }
            assert!(
                s.large_count >= large && s.large_count <= large + s.pending_remote,
                "{ctx} large_count, model {large}\n{s}"
            );
            if exact {
                assert_eq!(s.large_bytes, large_bytes, "{ctx} large_bytes\n{s}");
            }
            assert_eq!(
                s.mapped_bytes,
                s.superslabs_mapped * self.geo.superslab_size()
                    + s.large_mapped_bytes
                    + s.large_cached_bytes,
                "{ctx} mapped split\n{s}"
            );
            assert!(
                s.superslabs_retained <= h.config().retain,
                "{ctx} retained\n{s}"
            );
            assert!(
                s.large_cached_regions <= h.config().large_cache,
                "{ctx} cached\n{s}"
            );
            assert_eq!(
                s.superslabs_released + s.superslabs_mapped,
                s.superslabs_created,
                "{ctx} SuperSlab counts\n{s}"
            );
            mapped += s.mapped_bytes;
            regions += s.superslabs_mapped + s.large_count + s.large_cached_regions;
        }
        assert_eq!(
            self.pages.mapped_bytes(),
            mapped,
            "{} mapped bytes",
            self.ctx()
        );
        assert_eq!(
            self.pages.live_regions(),
            regions,
            "{} live regions",
            self.ctx()
        );
    }

    fn failed_maps(&self) -> u64 {
        self.pages.stats().failed_maps
    }

    /// A null for `(size, align)`: legitimate for an invalid request, or
    /// when a fault is armed and a map failed during the call.
    fn null_ok(&self, failed_before: u64, size: usize, align: usize, what: &str) {
        if invalid(size, align) {
            return;
        }
        assert!(
            self.armed && self.failed_maps() > failed_before,
            "{} {what}({size}, {align}) returned null with no fault (armed {})",
            self.ctx(),
            self.armed
        );
    }

    fn sync(&mut self) {
        self.heaps[0].collect();
        self.heaps[1].collect();
        self.heaps[0].collect();
        self.maybe_pending.clear();
    }

    fn alloc(&mut self, hi: usize, size: usize, align: usize, kind: u8) {
        let failed_before = self.failed_maps();
        let h = &mut self.heaps[hi];
        let (p, what) = match kind % 4 {
            0 | 1 => (h.alloc(size, align), "alloc"),
            2 => (h.alloc_zeroed(size, align), "alloc_zeroed"),
            // SAFETY: a null pointer asks realloc to allocate.
            _ => (
                unsafe { h.realloc(ptr::null_mut(), size, align) }.unwrap(),
                "realloc(null)",
            ),
        };
        if p.is_null() {
            self.null_ok(failed_before, size, align, what);
            return;
        }
        assert!(
            !invalid(size, align),
            "{} {what}({size}, {align}) = {p:?} for an invalid request",
            self.ctx()
        );
        if what == "alloc_zeroed" {
            // SAFETY: a fresh block of at least `size` bytes, zeroed.
            if let Some(at) = unsafe { pattern::first_nonzero(p, size) } {
                panic!(
                    "{} alloc_zeroed({size}, {align}) = {p:?}: byte {at} not zero",
                    self.ctx()
                );
            }
        }
        let b = Block {
            ptr: p,
            size,
            align,
            id: self.next_id,
            owner: self.heaps[hi].id(),
            class: expected_class(&self.geo, size, align),
        };
        self.next_id += 1;
        self.insert(b);
        // SAFETY: a fresh block of at least `size` bytes.
        unsafe { pattern::fill(p, b.id, 0, size) };
        self.check_block(&b, what);
    }

    /// Frees block `i`: `how` 0 by its owner, 1 by the other heap, 2 with
    /// `free_remote`.
    fn free(&mut self, i: usize, how: u8) {
        let b = self.blocks[i];
        self.check_block(&b, "free");
        self.remove(i);
        let oi = self.heap_index(b.owner);
        let r = match how {
            // SAFETY: `b` is live and forgotten by the model.
            0 => unsafe { self.heaps[oi].dealloc(b.ptr) },
            // SAFETY: as above; a foreign heap's dealloc frees remotely.
            1 => unsafe { self.heaps[1 - oi].dealloc(b.ptr) },
            // SAFETY: as above; both heaps share the geometry.
            _ => unsafe { free_remote(self.pages, &self.geo, b.ptr) },
        };
        r.unwrap_or_else(|e| panic!("{} free({how}) of live {b:?}: {e:?}", self.ctx()));
        if how != 0 {
            *self.maybe_pending.entry(b.owner).or_default() += 1;
        }
    }

    fn realloc(&mut self, i: usize, by_other: bool, new_size: usize, align: usize) {
        let old = self.blocks[i];
        self.check_block(&old, "realloc");
        let oi = self.heap_index(old.owner);
        let hi = if by_other { 1 - oi } else { oi };
        let failed_before = self.failed_maps();
        // SAFETY: `old` is live; if it moves, the model forgets it below.
        let p = unsafe { self.heaps[hi].realloc(old.ptr, new_size, align) }
            .unwrap_or_else(|e| panic!("{} realloc of live {old:?}: {e:?}", self.ctx()));
        if p.is_null() {
            self.null_ok(failed_before, new_size, align, "realloc");
            self.check_block(&old, "after failed realloc");
            return;
        }
        assert!(
            !invalid(new_size, align),
            "{} realloc({new_size}, {align}) succeeded",
            self.ctx()
        );
        self.remove(i);
        let keep = old.size.min(new_size);
        // SAFETY: `p` is live with at least `new_size >= keep` bytes; realloc
        // copied (or kept) the prefix.
        if let Some((at, got, want)) = unsafe { pattern::mismatch(p, old.id, 0, keep) } {
            panic!(
                "{} realloc({old:?}, {new_size}, {align}) = {p:?}: byte {at} is {got:#04x}, expected {want:#04x}",
                self.ctx()
            );
        }
        let (owner, class) = if p == old.ptr {
            // In place: a small block keeps its class, a large one stays large.
            (old.owner, old.class)
        } else {
            if hi != oi {
                *self.maybe_pending.entry(old.owner).or_default() += 1;
            }
            (
                self.heaps[hi].id(),
                expected_class(&self.geo, new_size, align),
            )
        };
        let b = Block {
            ptr: p,
            size: new_size,
            align: if p == old.ptr {
                old.align.max(align)
            } else {
                align
            },
            id: old.id,
            owner,
            class,
        };
        if p == old.ptr {
            // In place: the alignment asked must hold anyway.
            assert_eq!(
                p as usize % align.max(MIN_ALIGN),
                0,
                "{} in-place realloc misaligned",
                self.ctx()
            );
        }
        self.insert(b);
        // SAFETY: `p` has at least `new_size` bytes.
        unsafe { pattern::fill(p, b.id, keep, new_size) };
        self.check_block(&b, "realloc result");
    }

    /// An invalid free that must be rejected with nothing changed: an
    /// interior pointer of a live block, or an address freed before that
    /// no live block covers.
    fn invalid_free(&mut self, sel: u16, hi: usize) {
        let target = if sel.is_multiple_of(2) && !self.blocks.is_empty() {
            let b = self.blocks[sel as usize / 2 % self.blocks.len()];
            let limit = match b.class {
                Some(c) => class_size(c),
                // Only inside a large block's first SuperSlab-sized window
                // (`Heap::dealloc`'s contract): not for blocks aligned to the
                // SuperSlab size, whose header lies a whole window below.
                None if b.align < self.geo.superslab_size() => b.size.min(4 * KIB),
                None => return,
            };
            if limit <= 1 {
                return;
            }
            b.ptr as usize + 1 + (sel as usize >> 3) % (limit - 1)
        } else if !self.freed.is_empty() {
            let a = self.freed[sel as usize / 2 % self.freed.len()];
            // A freed address that a live block took again is not invalid,
            // and one near a live large block may lie in its mapping beyond
            // the first window (outside `Heap::dealloc`'s contract).
            if self.covered(a) || self.near_large(a) {
                return;
            }
            a
        } else {
            return;
        };
        if self.covered(target) && self.by_addr.contains_key(&target) {
            return;
        }
        let before = self.heaps[hi].stats();
        let p = ptr::null_mut::<u8>().with_addr(target);
        // SAFETY: the address is not a live block's start, so nothing is
        // freed; it lies in a small block, in a large block's first 4 KiB
        // (its first SuperSlab-sized window), or in no live block.
        let r = unsafe { self.heaps[hi].dealloc(p) };
        assert!(
            r.is_err(),
            "{} invalid free of {target:#x} accepted",
            self.ctx()
        );
        // SAFETY: as above.
        let u = unsafe { self.heaps[hi].usable_size(p) };
        assert!(
            u.is_err(),
            "{} usable_size of invalid {target:#x} accepted",
            self.ctx()
        );
        assert_eq!(
            self.heaps[hi].stats(),
            before,
            "{} invalid free changed the heap",
            self.ctx()
        );
    }
}

/// Whether `(size, align)` is a request every heap must refuse.
fn invalid(size: usize, align: usize) -> bool {
    !align.is_power_of_two() || size > isize::MAX as usize / 2 || align > isize::MAX as usize / 2
}

/// Runs one input; returns the operations executed.
pub fn run(data: &[u8]) -> u64 {
    let mut inp = Input::new(data);
    let Some(g) = inp.u8() else { return 0 };
    let mut cfg = Config::DEFAULT;
    cfg.superslab_shift = [14, 16, 18, 21][(g & 3) as usize];
    cfg.retain = ((g >> 2) & 3) as usize;
    cfg.large_cache = [0, 0, 2, 8][((g >> 4) & 3) as usize];
    let pages = SimPages::new();
    pages.set_byte_budget(Some(BASE_BUDGET));
    let heaps = [
        Heap::new(&pages, cfg).unwrap(),
        Heap::new(&pages, cfg).unwrap(),
    ];
    let geo = *heaps[0].geometry();
    let mut w = World {
        pages: &pages,
        heaps,
        geo,
        blocks: Vec::new(),
        by_addr: BTreeMap::new(),
        maybe_pending: BTreeMap::new(),
        freed: Vec::new(),
        next_id: 1,
        live_bytes: 0,
        armed: false,
        step: 0,
    };
    let mut ops = 0u64;
    while let Some(op) = step(&mut w, &mut inp) {
        ops += op;
        w.step += 1;
        w.check_heaps(false);
    }
    // Free everything, by the owners, and check that it all went back.
    w.pages.fail_all_maps(false);
    w.pages.fail_nth_map(0);
    w.pages.set_byte_budget(Some(BASE_BUDGET));
    w.armed = false;
    while !w.blocks.is_empty() {
        w.free(w.blocks.len() - 1, 0);
    }
    w.sync();
    w.check_heaps(true);
    for h in &mut w.heaps {
        h.trim();
    }
    w.heaps[0].trim();
    w.check_heaps(true);
    for h in &w.heaps {
        let s = h.stats();
        assert_eq!(
            s.held_blocks + s.large_count + s.superslabs_mapped,
            0,
            "not empty at the end\n{s}"
        );
    }
    assert_eq!(
        pages.mapped_bytes(),
        0,
        "[core_ops end] the page source still holds memory"
    );
    assert_eq!(pages.live_regions(), 0, "[core_ops end] regions left");
    drop(w);
    ops
}

/// Decodes and applies one operation; `None` at the end of the input.
fn step(w: &mut World<'_>, inp: &mut Input<'_>) -> Option<u64> {
    let op = inp.u8()?;
    let hi = (op >> 7) as usize;
    let code = op % 32;
    match code {
        0..=8 => {
            let size = input::size(inp, w.geo.max_slab_size(), w.geo.unit_size(), MAX_LARGE)?;
            let align = input::align(inp)?;
            let kind = inp.u8()?;
            if w.live_bytes + size > LIVE_CAP && !w.blocks.is_empty() {
                w.free(0, 0);
            } else {
                w.alloc(hi, size, align, kind);
            }
        }
        9..=11 if !w.blocks.is_empty() => {
            let i = inp.index(w.blocks.len())?;
            w.free(i, 0);
        }
        12 | 13 if !w.blocks.is_empty() => {
            let i = inp.index(w.blocks.len())?;
            let how = 1 + (op & 1);
            w.free(i, how);
        }
        14..=16 if !w.blocks.is_empty() => {
            let i = inp.index(w.blocks.len())?;
            let sel = inp.u8()?;
            let old = w.blocks[i].size;
            let v = inp.u16()? as usize;
            let new_size = match sel % 4 {
                0 => old - v % (old / 2 + 1),
                1 => (old + v % (old + 64)).min(MAX_LARGE),
                2 => input::size(inp, w.geo.max_slab_size(), w.geo.unit_size(), MAX_LARGE)?,
                _ => v % 3,
            };
            let align = if sel & 0x10 != 0 {
                input::align(inp)?
            } else {
                w.blocks[i].align
            };
            if new_size > old && w.live_bytes + new_size - old > LIVE_CAP {
                w.free(i, 0);
            } else {
                w.realloc(i, code == 16, new_size, align);
            }
        }
        17 => {
            w.heaps[hi].collect();
        }
        18 => w.heaps[hi].flush(),
        19 => {
            w.heaps[hi].trim();
        }
        20 => {
            w.heaps[hi].decommit_free();
        }
        21 => {
            let k = inp.u8()? as usize % 4;
            w.heaps[hi].set_retain(k);
        }
        22 => {
            // Faults: the n-th map from now, every map, or a byte budget
            // just above what is mapped.
            let f = inp.u8()?;
            match f % 3 {
                0 => w.pages.fail_nth_map(1 + u64::from(f >> 2) % 8),
                1 => w.pages.fail_all_maps(true),
                _ => w
                    .pages
                    .set_byte_budget(Some(w.pages.mapped_bytes() + (f as usize >> 2) * 16 * KIB)),
            }
            w.armed = true;
        }
        23 => {
            w.pages.fail_all_maps(false);
            w.pages.fail_nth_map(0);
            w.pages.set_byte_budget(Some(BASE_BUDGET));
            w.armed = false;
        }
        24 => {
            // Hand-over: the heap values move (each with its pending frees).
            if op & 0x40 != 0 {
                w.heaps.swap(0, 1);
            } else {
                let cfg = *w.heaps[hi].config();
                let spare = Heap::new(w.pages, cfg).unwrap();
                let moved = Box::new(std::mem::replace(&mut w.heaps[hi], spare));
                let spare = std::mem::replace(&mut w.heaps[hi], *moved);
                assert!(spare.is_unused());
                drop(spare);
            }
        }
        25 => {
            w.sync();
            w.check_heaps(true);
        }
        26 => {
            let sel = inp.u16()?;
            w.invalid_free(sel, hi);
        }
        27 => {
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
        28 => {
            // Requests every heap must refuse, changing nothing.
            let v = inp.u8()?;
            let (size, align) = match v % 4 {
                0 => (v as usize, 0),
                1 => (16, 48 + v as usize),
                2 => (usize::MAX - v as usize, 16),
                _ => (64, 1usize << 62),
            };
            let before = w.heaps[hi].stats();
            assert!(
                w.heaps[hi].alloc(size, align).is_null(),
                "{} alloc({size}, {align})",
                w.ctx()
            );
            assert!(
                w.heaps[hi].alloc_zeroed(size, align).is_null(),
                "{} alloc_zeroed({size}, {align})",
                w.ctx()
            );
            assert_eq!(
                w.heaps[hi].stats(),
                before,
                "{} a refused request changed the heap",
                w.ctx()
            );
            if !w.blocks.is_empty() {
                w.realloc(0, false, size, align);
            }
        }
        _ => return Some(0),
    }
    Some(1)
}
