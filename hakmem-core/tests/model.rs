//! Model-based randomized test: long seeded sequences of `alloc`,
//! `alloc_zeroed`, `dealloc` and `realloc` (plus the odd `flush`, `trim`,
//! `collect` and `decommit_free`) against a shadow model of the live
//! blocks, checked after every step.
//!
//! Paths forced:
//! - every size-class path: the exact 16 B classes (fast path), the
//!   eight-per-doubling classes up to the geometry's largest slab class, and
//!   over-aligned requests served from a larger, naturally aligned class;
//! - large blocks: sizes beyond the largest slab class (up to ~4 MiB) and
//!   alignments beyond a slab unit (up to 64 KiB), including alignments of
//!   the SuperSlab size or more (header one SuperSlab below the pointer, with
//!   `Config::SMALL`) and zero-size large blocks;
//! - `realloc` in place (small blocks that stay in their class, large blocks
//!   whose recorded size changes) and by move (prefix copied), and
//!   `realloc(null)`;
//! - the large-region cache off and on (freed large regions reused,
//!   decommitted, evicted); retain K = 0 and K = 2, so SuperSlabs are
//!   released the moment they empty or kept; periodic full drains, `flush`,
//!   `trim` and `decommit_free` (then `alloc_zeroed` from decommitted
//!   memory);
//! - out of memory: `SimPages::set_byte_budget` and `fail_nth_map` armed at
//!   random points, so allocations and reallocs fail (null / `Ok(null)`), the
//!   model records nothing and the old block stays intact; after the faults
//!   are cleared, everything allocates and frees again.
//!
//! After every step: no two live blocks' requested ranges overlap (a
//! `BTreeMap` by address), alignments hold, the touched block's bytes are its
//! fill pattern (every block's, periodically), `usable_size` covers the
//! request (and is the class size for small blocks), `alloc_zeroed` memory is
//! zero, `heap.check()` passes, and `Stats` matches the model exactly (held
//! blocks, per-class held blocks, large count and bytes, held bytes) and the
//! page source (mapped bytes, live regions). At the end, once everything is
//! freed, only the retained SuperSlabs (at most K) remain mapped.
//!
//! Each test runs 8 seeds × 3000 steps (under Miri: 1 × 150, `Config::SMALL`,
//! requests up to 64 KiB). To search longer or to minimise a failure:
//! `MODEL_SEEDS=200 MODEL_STEPS=10000` and `MODEL_TRACE=1` (prints every
//! operation with its step). Failures the model found are kept, minimised,
//! as the deterministic tests at the end of the file.

use std::collections::BTreeMap;
use std::ptr;
use std::sync::OnceLock;

use hakmem_core::size_class::{class_for, class_of, class_size, MIN_ALIGN, NUM_CLASSES};
use hakmem_core::{sim::SimPages, Config, Geometry, Heap, Stats};

const MIB: usize = 1 << 20;
const KIB: usize = 1 << 10;

/// Seeds per test and steps per seed (`MODEL_SEEDS` and `MODEL_STEPS`
/// override them, to search longer for a failure).
const SEEDS: u64 = if cfg!(miri) { 1 } else { 8 };
const STEPS: usize = if cfg!(miri) { 150 } else { 3000 };
/// Largest request.
const MAX_SIZE: usize = if cfg!(miri) { 64 * KIB } else { 4 * MIB };
/// Largest alignment requested.
const MAX_ALIGN: usize = 64 * KIB;
/// Above this many requested bytes live, the test frees instead of allocating.
const LIVE_CAP: usize = if cfg!(miri) { 512 * KIB } else { 48 * MIB };
/// Every this many steps, every live block's bytes are checked.
const FULL_CHECK_EVERY: usize = if cfg!(miri) { 25 } else { 64 };
/// Fill patterns start at an offset below this into the pattern buffer.
const PATTERN_OFFSETS: usize = 4093;

// ----- the generator ---------------------------------------------------------

/// SplitMix64: small, fast, and good enough to drive a test.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed ^ 0x6a09_e667_f3bc_c909)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// True with probability `num / den`.
    fn chance(&mut self, num: usize, den: usize) -> bool {
        self.below(den) < num
    }

    /// Uniform in `lo..=hi`.
    fn between(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }
}

/// Pseudo-random bytes; a block's contents are `pattern()[off..off + size]`
/// for its own `off`, so checking and filling are a `memcmp` and a `memcpy`.
fn pattern() -> &'static [u8] {
    static PATTERN: OnceLock<Vec<u8>> = OnceLock::new();
    PATTERN.get_or_init(|| {
        let mut rng = Rng::new(0x5eed);
        let mut v = Vec::with_capacity(MAX_SIZE + PATTERN_OFFSETS + 8);
        while v.len() < MAX_SIZE + PATTERN_OFFSETS {
            v.extend_from_slice(&rng.next().to_le_bytes());
        }
        v
    })
}

/// `MAX_SIZE` zero bytes, to compare `alloc_zeroed` memory against.
fn zeros() -> &'static [u8] {
    static ZEROS: OnceLock<Vec<u8>> = OnceLock::new();
    ZEROS.get_or_init(|| vec![0; MAX_SIZE])
}

// ----- what the heap must do -------------------------------------------------

/// The size class the heap must serve `(size, align)` from, or `None` for a
/// large block.
fn expected_class(geo: &Geometry, size: usize, align: usize) -> Option<usize> {
    // Hardened: a small block also holds its slack word and tail word.
    let size = if cfg!(feature = "hardened") {
        size.max(16) + 16
    } else {
        size
    };
    if align <= MIN_ALIGN {
        return if size <= geo.max_slab_size() {
            class_of(size)
        } else {
            None
        };
    }
    if align <= geo.unit_size() {
        if let Some(c) = class_for(size, align.max(MIN_ALIGN)) {
            if c < geo.slab_classes {
                return Some(c);
            }
        }
    }
    None
}

/// A request size: mostly small, some medium (up to 128 KiB), a few large
/// (up to `MAX_SIZE`), and some at class and geometry edges.
fn pick_size(rng: &mut Rng, geo: &Geometry) -> usize {
    let s = match rng.below(1000) {
        0..=99 => {
            let edge = match rng.below(4) {
                0 => class_size(rng.below(NUM_CLASSES)),
                1 => geo.max_slab_size(),
                2 => geo.unit_size(),
                _ => rng.below(2),
            };
            (edge + rng.below(3)).saturating_sub(1)
        }
        100..=599 => rng.below(65),
        600..=799 => rng.between(65, KIB),
        800..=969 => {
            let shift = rng.between(10, 16);
            (1 << shift) + rng.below(1 << shift)
        }
        _ => {
            let shift = rng.between(17, 21);
            (1 << shift) + rng.below(1 << shift)
        }
    };
    s.min(MAX_SIZE)
}

/// An alignment: mostly at most 16, some up to 4 KiB, a few up to 64 KiB.
fn pick_align(rng: &mut Rng) -> usize {
    match rng.below(100) {
        0..=69 => 1 << rng.below(5),
        70..=94 => 1 << rng.between(5, 12),
        _ => (1 << rng.between(13, 16)).min(MAX_ALIGN),
    }
}

// ----- the model -------------------------------------------------------------

/// A live block as the model knows it.
#[derive(Clone, Copy, Debug)]
struct Block {
    ptr: *mut u8,
    /// Requested size (the last realloc's, after an in-place realloc).
    size: usize,
    align: usize,
    /// Offset of its contents in `pattern()`.
    pat: usize,
    /// The class it was served from, or `None` when large.
    class: Option<usize>,
}

impl Block {
    /// The bytes the overlap check reserves: the request, at least one byte
    /// (a size-0 block is still a unique block).
    fn end(&self) -> usize {
        self.ptr as usize + self.size.max(1)
    }
}

/// What kinds of event a run saw, so the tests can insist the paths were
/// really taken.
#[derive(Default, Debug, Clone, Copy)]
struct Coverage {
    allocs: usize,
    large_allocs: usize,
    overaligned_small: usize,
    failed_allocs: usize,
    failed_reallocs: usize,
    realloc_in_place_small: usize,
    realloc_in_place_large: usize,
    realloc_moved: usize,
    superslabs_released: usize,
    drains: usize,
}

impl Coverage {
    fn add(&mut self, o: &Coverage) {
        self.allocs += o.allocs;
        self.large_allocs += o.large_allocs;
        self.overaligned_small += o.overaligned_small;
        self.failed_allocs += o.failed_allocs;
        self.failed_reallocs += o.failed_reallocs;
        self.realloc_in_place_small += o.realloc_in_place_small;
        self.realloc_in_place_large += o.realloc_in_place_large;
        self.realloc_moved += o.realloc_moved;
        self.superslabs_released += o.superslabs_released;
        self.drains += o.drains;
    }
}

/// One heap over one `SimPages`, its shadow model and the generator.
struct World<'p> {
    pages: &'p SimPages,
    heap: Heap<&'p SimPages>,
    geo: Geometry,
    rng: Rng,
    /// For messages: which run and step.
    what: String,
    step: usize,
    blocks: Vec<Block>,
    /// Requested ranges of the live blocks: start → end.
    by_addr: BTreeMap<usize, usize>,
    small: [usize; NUM_CLASSES],
    large_count: usize,
    large_bytes: usize,
    live_bytes: usize,
    /// A fault (`fail_nth_map` or a byte budget) may be pending.
    armed: bool,
    faults: bool,
    /// `MODEL_TRACE=1` prints every operation (to minimise a failure).
    trace: bool,
    cov: Coverage,
}

#[derive(Clone, Copy, Debug)]
enum Mode {
    Grow,
    Shrink,
    Churn,
}

impl<'p> World<'p> {
    fn new(pages: &'p SimPages, cfg: Config, seed: u64, faults: bool) -> Self {
        let heap = Heap::new(pages, cfg).unwrap();
        let geo = *heap.geometry();
        World {
            pages,
            heap,
            geo,
            rng: Rng::new(seed),
            what: format!(
                "seed {seed:#x}, superslab 2^{}, retain {}, large cache {}, faults {faults}",
                cfg.superslab_shift, cfg.retain, cfg.large_cache
            ),
            step: 0,
            blocks: Vec::new(),
            by_addr: BTreeMap::new(),
            small: [0; NUM_CLASSES],
            large_count: 0,
            large_bytes: 0,
            live_bytes: 0,
            armed: false,
            faults,
            trace: std::env::var_os("MODEL_TRACE").is_some(),
            cov: Coverage::default(),
        }
    }

    fn ctx(&self) -> String {
        format!("[{} | step {}]", self.what, self.step)
    }

    fn log(&self, msg: impl FnOnce() -> String) {
        if self.trace {
            eprintln!("{} {}", self.step, msg());
        }
    }

    // ----- model bookkeeping -----

    /// Records a new live block, checking that it overlaps no other.
    fn insert(&mut self, mut b: Block) {
        if let Some(c) = b.class {
            // A small request the medium tier served (its class had no slab
            // to be had), or such a block resized in place, is a medium
            // block: counted with the blocks beyond the classes, unless
            // its granules happen to be its class size.
            // SAFETY: `b.ptr` is a live block of this heap.
            let usable = unsafe { self.heap.usable_size(b.ptr) }.unwrap();
            // (Hardened serves no medium block; its usable size is the request.)
            if !cfg!(feature = "hardened") && usable != class_size(c) && self.geo.medium_max != 0 {
                b.class = None;
            }
        }
        let (start, end) = (b.ptr as usize, b.end());
        if let Some((&s, &e)) = self.by_addr.range(..=start).next_back() {
            assert!(
                e <= start,
                "{} block {start:#x}..{end:#x} ({b:?}) overlaps live block {s:#x}..{e:#x}",
                self.ctx()
            );
        }
        if let Some((&s, &e)) = self.by_addr.range(start..).next() {
            assert!(
                end <= s,
                "{} block {start:#x}..{end:#x} ({b:?}) overlaps live block {s:#x}..{e:#x}",
                self.ctx()
            );
        }
        self.by_addr.insert(start, end);
        match b.class {
            Some(c) => self.small[c] += 1,
            None => {
                self.large_count += 1;
                self.large_bytes += b.size;
            }
        }
        self.live_bytes += b.size;
        self.blocks.push(b);
    }

    /// Forgets the live block at index `i`.
    fn remove(&mut self, i: usize) -> Block {
        let b = self.blocks.swap_remove(i);
        assert_eq!(self.by_addr.remove(&(b.ptr as usize)), Some(b.end()));
        match b.class {
            Some(c) => self.small[c] -= 1,
            None => {
                self.large_count -= 1;
                self.large_bytes -= b.size;
            }
        }
        self.live_bytes -= b.size;
        b
    }

    // ----- byte checks -----

    fn fill(&self, b: &Block, from: usize) {
        if from >= b.size {
            return;
        }
        let src = &pattern()[b.pat + from..b.pat + b.size];
        // SAFETY: `b` is a live block of at least `b.size` bytes (the heap's
        // promise, checked via `usable_size`); the pattern buffer is ours and
        // does not overlap it.
        unsafe { ptr::copy_nonoverlapping(src.as_ptr(), b.ptr.add(from), src.len()) };
    }

    /// Checks that the first `len` bytes of `b` are its pattern.
    fn check_bytes(&self, b: &Block, len: usize, what: &str) {
        // SAFETY: `b` is live with at least `len <= b.size` readable bytes,
        // all initialised (filled by `fill`, or copied by realloc from a
        // filled block); nothing writes them during the check.
        let got = unsafe { std::slice::from_raw_parts(b.ptr, len) };
        let want = &pattern()[b.pat..b.pat + len];
        if got != want {
            let at = got.iter().zip(want).position(|(g, w)| g != w).unwrap();
            panic!(
                "{} {what}: block {b:?} byte {at} ({:#x}) is {:#04x}, expected {:#04x}",
                self.ctx(),
                b.ptr as usize + at,
                got[at],
                want[at]
            );
        }
    }

    /// Alignment, `usable_size` and the whole fill pattern of a live block.
    fn check_block(&self, b: &Block) {
        assert_eq!(
            b.ptr as usize % b.align.max(MIN_ALIGN),
            0,
            "{} block {b:?} misaligned",
            self.ctx()
        );
        // SAFETY: `b.ptr` is a live block of this heap.
        let usable = unsafe { self.heap.usable_size(b.ptr) }
            .unwrap_or_else(|e| panic!("{} usable_size of live {b:?}: {e:?}", self.ctx()));
        assert!(
            usable >= b.size,
            "{} usable_size {usable} < requested, {b:?}",
            self.ctx()
        );
        if cfg!(feature = "hardened") {
            // Hardened: exactly the request (the rest is the canary's).
            assert_eq!(usable, b.size, "{} hardened usable_size, {b:?}", self.ctx());
        } else if let Some(c) = b
            .class
            // (A small request the medium tier served has whole granules.)
            .filter(|&c| usable == class_size(c) || self.geo.medium_max == 0)
        {
            assert_eq!(
                usable,
                class_size(c),
                "{} usable_size of a small block is not its class size, {b:?}",
                self.ctx()
            );
        }
        self.check_bytes(b, b.size, "fill pattern");
    }

    fn check_all_blocks(&self) {
        for b in &self.blocks {
            self.check_block(b);
        }
    }

    /// The heap's own invariants, and `Stats` against the model and the
    /// page source.
    fn check_heap(&self) {
        self.heap
            .check()
            .unwrap_or_else(|e| panic!("{} heap.check(): {e}", self.ctx()));
        let s: Stats = self.heap.stats();
        let ctx = self.ctx();
        assert_eq!(s.held_blocks, self.blocks.len(), "{ctx} held_blocks\n{s}");
        // A small request whose class has no slab to be had may be served
        // by the medium tier instead (never the other way round).
        let mut fallback = 0;
        let mut fallback_bytes = 0;
        for c in 0..NUM_CLASSES {
            assert!(
                s.classes[c].held_blocks <= self.small[c],
                "{ctx} classes[{c}] (size {}).held_blocks\n{s}",
                class_size(c)
            );
            let k = self.small[c] - s.classes[c].held_blocks;
            assert!(k == 0 || self.geo.medium_max != 0, "{ctx} class {c}\n{s}");
            fallback += k;
            fallback_bytes += k * class_size(c);
        }
        // Blocks beyond the slab classes are medium or large blocks (which
        // one depends on the room in the medium slabs).
        assert_eq!(
            s.large_count + s.medium_blocks,
            self.large_count + fallback,
            "{ctx} large_count + medium_blocks\n{s}"
        );
        assert!(s.large_bytes <= self.large_bytes, "{ctx} large_bytes\n{s}");
        let medium_requested = self.large_bytes - s.large_bytes + fallback_bytes;
        assert!(
            s.medium_bytes + 16 * s.medium_blocks >= medium_requested
                && s.medium_bytes <= medium_requested + 48 * s.medium_blocks,
            "{ctx} medium_bytes: {medium_requested} B requested, rounded to granules\n{s}"
        );
        let small_bytes: usize = (0..NUM_CLASSES)
            .map(|c| s.classes[c].held_blocks * class_size(c))
            .sum();
        assert_eq!(
            s.held_bytes,
            small_bytes + s.large_bytes + s.medium_bytes,
            "{ctx} held_bytes\n{s}"
        );
        assert_eq!(s.pending_remote, 0, "{ctx} pending_remote\n{s}");
        assert_eq!(
            s.free_blocks,
            s.classes.iter().map(|c| c.free_blocks).sum::<usize>(),
            "{ctx} free_blocks\n{s}"
        );
        assert_eq!(
            self.pages.mapped_bytes(),
            s.mapped_bytes,
            "{ctx} mapped_bytes\n{s}"
        );
        assert_eq!(
            s.mapped_bytes,
            s.superslabs_mapped * self.geo.superslab_size()
                + s.large_mapped_bytes
                + s.large_cached_bytes,
            "{ctx} mapped_bytes split\n{s}"
        );
        assert!(
            s.large_cached_regions <= self.heap.config().large_cache,
            "{ctx} more large regions cached than configured\n{s}"
        );
        assert_eq!(
            self.pages.live_regions(),
            s.superslabs_mapped + s.large_count + s.large_cached_regions,
            "{ctx} live regions\n{s}"
        );
        assert!(
            s.superslabs_retained <= self.heap.config().retain,
            "{ctx} more SuperSlabs retained than K\n{s}"
        );
        assert!(s.superslabs_retained <= s.superslabs_mapped, "{ctx}\n{s}");
        assert_eq!(
            s.superslabs_released + s.superslabs_mapped,
            s.superslabs_created,
            "{ctx} SuperSlab counts\n{s}"
        );
    }

    // ----- operations -----

    fn failed_maps(&self) -> u64 {
        self.pages.stats().failed_maps
    }

    /// A null from the heap: only legitimate when a fault was armed and a
    /// `map` failed during the call.
    fn expect_oom(&self, failed_before: u64, what: &str, size: usize, align: usize) {
        assert!(
            self.armed,
            "{} {what}({size}, {align}) failed with no fault armed",
            self.ctx()
        );
        assert!(
            self.failed_maps() > failed_before,
            "{} {what}({size}, {align}) failed, but no map failed",
            self.ctx()
        );
    }

    /// Allocates one block (through `alloc`, `alloc_zeroed` or
    /// `realloc(null)`); returns whether it succeeded.
    fn op_alloc(&mut self, size: usize, align: usize) -> bool {
        let kind = self.rng.below(20);
        let failed_before = self.failed_maps();
        let (p, what) = match kind {
            0..=11 => (self.heap.alloc(size, align), "alloc"),
            12..=18 => (self.heap.alloc_zeroed(size, align), "alloc_zeroed"),
            _ => (
                // SAFETY: a null pointer asks realloc to allocate.
                unsafe { self.heap.realloc(ptr::null_mut(), size, align) }.unwrap(),
                "realloc(null)",
            ),
        };
        self.log(|| format!("{what}({size}, {align}) = {p:?}"));
        if p.is_null() {
            self.expect_oom(failed_before, what, size, align);
            self.cov.failed_allocs += 1;
            return false;
        }
        let class = expected_class(&self.geo, size, align);
        let b = Block {
            ptr: p,
            size,
            align,
            pat: self.rng.below(PATTERN_OFFSETS),
            class,
        };
        if what == "alloc_zeroed" {
            // SAFETY: a fresh block of at least `size` bytes, which
            // `alloc_zeroed` initialised.
            let got = unsafe { std::slice::from_raw_parts(p, size) };
            if got != &zeros()[..size] {
                let at = got.iter().position(|&x| x != 0).unwrap();
                panic!(
                    "{} alloc_zeroed({size}, {align}) = {p:?}: byte {at} is {:#04x}",
                    self.ctx(),
                    got[at]
                );
            }
        }
        self.cov.allocs += 1;
        match class {
            None => self.cov.large_allocs += 1,
            Some(_) if align > MIN_ALIGN => self.cov.overaligned_small += 1,
            Some(_) => {}
        }
        self.insert(b);
        self.fill(&b, 0);
        self.check_block(&b);
        true
    }

    fn op_dealloc(&mut self, i: usize) {
        let b = self.blocks[i];
        self.check_block(&b);
        self.remove(i);
        self.log(|| format!("dealloc({:?}) [{b:?}]", b.ptr));
        // SAFETY: `b` is live, and the model forgot it: never used again.
        unsafe { self.heap.dealloc(b.ptr) }
            .unwrap_or_else(|e| panic!("{} dealloc of live {b:?}: {e:?}", self.ctx()));
    }

    fn op_realloc(&mut self, i: usize) {
        let old = self.blocks[i];
        self.check_block(&old);
        let new_size = match self.rng.below(10) {
            0..=3 => old.size - self.rng.below(old.size / 2 + 1),
            4..=6 => (old.size + self.rng.below(old.size + 64)).min(MAX_SIZE),
            _ => pick_size(&mut self.rng, &self.geo),
        };
        let new_align = if self.rng.chance(4, 5) {
            old.align
        } else {
            pick_align(&mut self.rng)
        };
        let failed_before = self.failed_maps();
        // SAFETY: `old` is live; if realloc moves it, the model forgets the
        // old pointer below.
        let p = unsafe { self.heap.realloc(old.ptr, new_size, new_align) }.unwrap_or_else(|e| {
            panic!(
                "{} realloc({old:?}, {new_size}, {new_align}): {e:?}",
                self.ctx()
            )
        });
        self.log(|| {
            format!(
                "realloc({:?}, {new_size}, {new_align}) = {p:?} [{old:?}]",
                old.ptr
            )
        });
        if p.is_null() {
            self.expect_oom(failed_before, "realloc", new_size, new_align);
            self.cov.failed_reallocs += 1;
            // The old block is still live and intact (checked by the caller
            // after the step, as the touched block).
            return;
        }
        self.remove(i);
        let class = if p == old.ptr {
            // In place: a small block keeps its class; a large one records
            // the new size.
            match old.class {
                Some(_) => self.cov.realloc_in_place_small += 1,
                None => self.cov.realloc_in_place_large += 1,
            }
            old.class
        } else {
            self.cov.realloc_moved += 1;
            expected_class(&self.geo, new_size, new_align)
        };
        let b = Block {
            ptr: p,
            size: new_size,
            align: new_align,
            pat: old.pat,
            class,
        };
        self.insert(b);
        let b = *self.blocks.last().unwrap();
        self.check_bytes(&b, old.size.min(new_size), "realloc prefix");
        self.fill(&b, old.size);
        self.check_block(&b);
    }

    /// Frees every live block, in random order, checking after each free.
    fn drain(&mut self) {
        while !self.blocks.is_empty() {
            let i = self.rng.below(self.blocks.len());
            self.op_dealloc(i);
            self.check_heap();
        }
        self.cov.drains += 1;
        // Current slabs pin their SuperSlabs (counted live) until a flush.
        self.heap.flush();
        self.check_heap();
        let s = self.heap.stats();
        let ctx = self.ctx();
        assert_eq!(s.held_blocks, 0, "{ctx} after drain\n{s}");
        assert_eq!(s.large_count, 0, "{ctx} after drain\n{s}");
        assert_eq!(
            s.superslabs_retained, s.superslabs_mapped,
            "{ctx} every mapped SuperSlab is empty after a drain\n{s}"
        );
        assert!(
            s.superslabs_mapped <= self.heap.config().retain,
            "{ctx} more than K SuperSlabs left after a drain\n{s}"
        );
        assert_eq!(
            self.pages.live_regions(),
            s.superslabs_retained + s.large_cached_regions,
            "{ctx} regions after a drain\n{s}"
        );
        assert_eq!(
            self.pages.mapped_bytes(),
            s.superslabs_retained * self.geo.superslab_size() + s.large_cached_bytes,
            "{ctx} mapped bytes after a drain\n{s}"
        );
    }

    /// Arms or clears injected faults.
    fn fault_step(&mut self) {
        if self.armed {
            if self.rng.chance(1, 80) {
                self.clear_faults();
            }
        } else if self.rng.chance(1, 60) {
            // 0: the n-th map fails; 1: a byte budget; 2: both.
            let kind = self.rng.below(3);
            if kind != 1 {
                let n = self.rng.between(1, 4) as u64;
                self.log(|| format!("fail_nth_map({n})"));
                self.pages.fail_nth_map(n);
            }
            if kind != 0 {
                let extra = self.rng.below(self.geo.superslab_size().max(MAX_SIZE) + 1);
                let budget = self.pages.mapped_bytes() + extra;
                self.log(|| format!("set_byte_budget(Some({budget}))"));
                self.pages.set_byte_budget(Some(budget));
            }
            self.armed = true;
        }
    }

    fn clear_faults(&mut self) {
        self.log(|| "clear faults".to_string());
        self.pages.fail_nth_map(0);
        self.pages.set_byte_budget(None);
        self.armed = false;
    }

    /// Something that changes no live block: flush, trim, collect, decommit.
    fn op_maintenance(&mut self) {
        let op = self.rng.below(4);
        self.log(|| ["flush", "trim", "collect", "decommit_free"][op].to_string());
        match op {
            0 => {
                let held = self.heap.stats().held_blocks;
                self.heap.flush();
                assert_eq!(self.heap.stats().held_blocks, held, "{} flush", self.ctx());
            }
            1 => {
                self.heap.trim();
                let s = self.heap.stats();
                assert_eq!(s.superslabs_retained, 0, "{} trim\n{s}", self.ctx());
            }
            2 => assert_eq!(self.heap.collect(), 0, "{} collect", self.ctx()),
            _ => {
                self.heap.decommit_free();
            }
        }
    }

    fn one_step(&mut self, mode: Mode) {
        if self.faults {
            self.fault_step();
        }
        let (alloc_w, free_w, realloc_w) = match mode {
            Mode::Grow => (60, 20, 18),
            Mode::Shrink => (20, 60, 18),
            Mode::Churn => (40, 40, 18),
        };
        let r = self.rng.below(alloc_w + free_w + realloc_w + 2);
        let touched = if self.blocks.is_empty() || (r < alloc_w && self.live_bytes < LIVE_CAP) {
            let size = pick_size(&mut self.rng, &self.geo);
            let align = pick_align(&mut self.rng);
            self.op_alloc(size, align);
            None
        } else if r < alloc_w + free_w {
            let i = self.rng.below(self.blocks.len());
            self.op_dealloc(i);
            None
        } else if r < alloc_w + free_w + realloc_w {
            let i = self.rng.below(self.blocks.len());
            let p = self.blocks[i].ptr;
            self.op_realloc(i);
            // Whether moved, in place or failed: the block now at `p`, if
            // any, is the touched one.
            self.blocks.iter().position(|b| b.ptr == p)
        } else {
            self.op_maintenance();
            None
        };
        if let Some(i) = touched {
            self.check_block(&self.blocks[i]);
        }
        self.check_heap();
        if self.step % FULL_CHECK_EVERY == 0 {
            self.check_all_blocks();
        }
        self.step += 1;
    }

    fn run(&mut self, steps: usize) {
        let mut mode = Mode::Grow;
        for k in 0..steps {
            if k % 250 == 0 {
                mode = match self.rng.below(3) {
                    0 => Mode::Grow,
                    1 => Mode::Shrink,
                    _ => Mode::Churn,
                };
            }
            if k == steps / 2 || self.rng.chance(1, 1000) {
                self.drain();
            }
            self.one_step(mode);
        }
        self.finish();
    }

    /// Clears the faults, shows that every kind of allocation works again,
    /// frees everything and checks that only retained SuperSlabs remain.
    fn finish(&mut self) {
        self.clear_faults();
        self.check_all_blocks();
        let large = self.geo.max_slab_size() + 1;
        for (size, align) in [
            (0, 1),
            (16, 8),
            (100, 64),
            (1000, 16),
            (self.geo.max_slab_size(), 16),
            (large, 16),
            (1, self.geo.unit_size() * 2),
            (MAX_SIZE, 4096),
            (3000, MAX_ALIGN),
        ] {
            assert!(
                self.op_alloc(size, align),
                "{} alloc({size}, {align}) after clearing faults",
                self.ctx()
            );
            self.check_heap();
        }
        self.drain();
        let s = self.heap.stats();
        let k = self.heap.config().retain;
        let lc = self.heap.config().large_cache;
        let ctx = self.ctx();
        assert!(self.pages.live_regions() <= k + lc, "{ctx} K = {k}\n{s}");
        assert_eq!(
            self.pages.live_regions(),
            s.superslabs_retained + s.large_cached_regions,
            "{ctx}\n{s}"
        );
        if k == 0 && lc == 0 {
            assert_eq!(self.pages.live_regions(), 0, "{ctx}\n{s}");
            assert_eq!(self.pages.mapped_bytes(), 0, "{ctx}\n{s}");
        }
        self.cov.superslabs_released = s.superslabs_released;
        self.heap.trim();
        assert_eq!(self.pages.live_regions(), 0, "{ctx} after trim");
        assert_eq!(self.pages.mapped_bytes(), 0, "{ctx} after trim");
        self.heap.check().unwrap();
    }
}

/// `base` with retain K chosen by the low bit of `i`, and the large-region
/// cache (off, or two regions) by the next.
fn config(base: Config, i: u64) -> Config {
    let mut c = base;
    c.retain = if i & 1 == 0 { 0 } else { 2 };
    c.large_cache = if i & 2 == 0 { 0 } else { 2 };
    c
}

/// The number in the environment variable `name`, or `default`.
fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).map_or(default, |v| {
        v.parse()
            .unwrap_or_else(|_| panic!("{name}={v} is not a number"))
    })
}

fn run_one(cfg: Config, seed: u64, faults: bool) -> Coverage {
    let pages = SimPages::new();
    let cov = {
        let mut w = World::new(&pages, cfg, seed, faults);
        w.run(env_or("MODEL_STEPS", STEPS as u64) as usize);
        w.cov
    };
    assert_eq!(pages.live_regions(), 0);
    cov
}

fn run_seeds(base: impl Fn(u64) -> Config, faults: bool) -> Coverage {
    let mut total = Coverage::default();
    for i in 0..env_or("MODEL_SEEDS", SEEDS) {
        let seed = 0x9e37_79b9 * (i + 1) + if faults { 0xfa17 } else { 0 };
        total.add(&run_one(config(base(i), i), seed, faults));
    }
    eprintln!("{total:?}");
    total
}

/// The paths each test claims to force, taken at least a few times (native
/// runs only: Miri's runs are too short to promise them).
fn assert_covered(cov: &Coverage, faults: bool) {
    if cfg!(miri) {
        return;
    }
    assert!(cov.large_allocs >= 10, "{cov:?}");
    assert!(cov.overaligned_small >= 10, "{cov:?}");
    assert!(cov.realloc_in_place_small >= 10, "{cov:?}");
    assert!(cov.realloc_moved >= 10, "{cov:?}");
    assert!(cov.superslabs_released >= 1, "{cov:?}");
    if faults {
        assert!(cov.failed_allocs >= 5, "{cov:?}");
        assert!(cov.failed_reallocs >= 1, "{cov:?}");
    } else {
        assert_eq!(cov.failed_allocs + cov.failed_reallocs, 0, "{cov:?}");
    }
}

fn small_or_default() -> Config {
    if cfg!(miri) {
        Config::SMALL
    } else {
        Config::DEFAULT
    }
}

#[test]
fn default_geometry_matches_model() {
    let cov = run_seeds(|_| small_or_default(), false);
    assert_covered(&cov, false);
    if !cfg!(miri) {
        assert!(cov.realloc_in_place_large >= 1, "{cov:?}");
    }
}

#[test]
fn small_geometry_matches_model() {
    let cov = run_seeds(|_| Config::SMALL, false);
    assert_covered(&cov, false);
}

#[test]
fn injected_faults_leave_the_heap_consistent() {
    let cov = run_seeds(
        |i| {
            if i & 4 == 0 {
                small_or_default()
            } else {
                Config::SMALL
            }
        },
        true,
    );
    assert_covered(&cov, true);
}

// ----- failures the model found, minimised -------------------------------

/// `decommit_free` once marked every unit of a retained SuperSlab fresh, but
/// decommits (zeroes) only from the first page boundary after the header:
/// blocks carved between the header and that page must still be zeroed by
/// `alloc_zeroed`.
#[test]
fn alloc_zeroed_after_decommit_retained_is_zero() {
    for cfg in [Config::DEFAULT, Config::SMALL] {
        let pages = SimPages::new();
        let mut heap = Heap::new(&pages, cfg).unwrap();
        let blocks: Vec<*mut u8> = (0..64).map(|_| heap.alloc(16, 8)).collect();
        for &p in &blocks {
            assert!(!p.is_null());
            // SAFETY: a live 16-byte block.
            unsafe { ptr::write_bytes(p, 0xab, 16) };
        }
        for p in blocks {
            // SAFETY: live, and not used afterwards.
            unsafe { heap.dealloc(p) }.unwrap();
        }
        // (Pinned by its current slab until decommit_free's flush.)
        assert_eq!(heap.stats().superslabs_retained, 0);
        // With 16 KiB SuperSlabs the blocks sit in the header's page, which
        // is never decommitted; with 2 MiB ones their unit is decommitted.
        let decommitted = heap.decommit_free();
        assert_eq!(
            decommitted > 0,
            cfg.superslab_shift > 14,
            "{decommitted} bytes decommitted"
        );
        for _ in 0..64 {
            let p = heap.alloc_zeroed(16, 8);
            assert!(!p.is_null());
            // SAFETY: a live 16-byte block that alloc_zeroed initialised.
            let bytes = unsafe { std::slice::from_raw_parts(p, 16) };
            assert_eq!(
                bytes, &[0; 16],
                "superslab 2^{}: alloc_zeroed(16, 8) = {p:?}",
                cfg.superslab_shift
            );
        }
    }
}

/// A large block whose usable size is below the largest slab class (here:
/// 1 byte at 64 KiB alignment, 4 KiB usable) may be resized in place, but
/// then its recorded size, and so `large_bytes`, must follow.
#[test]
fn realloc_in_place_of_a_large_block_records_its_size() {
    let pages = SimPages::new();
    let mut heap = Heap::new(&pages, Config::DEFAULT).unwrap();
    let p = heap.alloc(1, 64 * KIB);
    assert!(!p.is_null());
    assert_eq!(heap.stats().large_bytes, 1);
    // SAFETY: `p` is live; the result replaces it.
    let q = unsafe { heap.realloc(p, 3000, 64 * KIB) }.unwrap();
    assert!(!q.is_null());
    let s = heap.stats();
    assert_eq!(
        (s.large_count, s.large_bytes),
        (1, 3000),
        "moved: {}",
        p != q
    );
    assert_eq!(s.held_bytes, 3000);
    // SAFETY: live, and not used afterwards.
    unsafe { heap.dealloc(q) }.unwrap();
}
