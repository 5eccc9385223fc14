//! One behaviour suite of the core [`Heap`], written once, generic over the
//! page source, and run over all three: [`SimPages`] (simulated),
//! [`FixedRegion`] (hakmem-bare, over a buffer of this process) and
//! [`LinuxPages`] (hakmem-std, real `mmap`).
//!
//! Each [`Backend`] makes a fresh page source and says what it can do (be
//! limited, report its mapped bytes); each `suite_*` function forces one
//! behaviour on any backend; `tests/suite.rs` instantiates every function
//! for every backend with one macro, so a behaviour that holds on one source
//! and breaks on another shows as one failing test named after both
//! (`fixed::memory_return`).
//!
//! Invariants checked after every step that changes the heap:
//! [`Heap::check`] passes, and held blocks and bytes return to where they
//! started once everything is freed.

use core::ptr::NonNull;

use hakmem_bare::{FixedRegion, DEFAULT_PAGE_SHIFT};
use hakmem_core::sim::SimPages;
use hakmem_core::{Config, FreeErrorKind, Heap, PageSource};
use hakmem_std::LinuxPages;

/// A page source under test, with what the suite needs to know of it.
pub trait Backend {
    /// The page source.
    type Pages: PageSource;
    /// A fresh source, with nothing mapped.
    fn new() -> Self;
    /// The source the heap maps from.
    fn pages(&self) -> &Self::Pages;
    /// The heap configuration this source is run with.
    fn config(&self) -> Config;
    /// Bytes the source has mapped now, by its own count.
    fn mapped_bytes(&self) -> usize;
    /// Makes the source finite (at most about `bytes` more can be mapped);
    /// `false` when it cannot be limited.
    fn limit(&self, bytes: usize) -> bool;
}

/// [`SimPages`]: poisoning, foreign-unmap detection, a byte budget.
pub struct Sim(SimPages);

impl Backend for Sim {
    type Pages = SimPages;
    fn new() -> Self {
        Sim(SimPages::new())
    }
    fn pages(&self) -> &SimPages {
        &self.0
    }
    fn config(&self) -> Config {
        Config::SMALL
    }
    fn mapped_bytes(&self) -> usize {
        self.0.mapped_bytes()
    }
    fn limit(&self, bytes: usize) -> bool {
        self.0.set_byte_budget(Some(self.0.mapped_bytes() + bytes));
        true
    }
}

/// Bytes of the buffer a [`Fixed`] source manages.
pub const FIXED_BYTES: usize = 8 << 20;

/// [`FixedRegion`] over a heap buffer of [`FIXED_BYTES`] (plus slack for
/// alignment): the bare-metal source, run on the host.
pub struct Fixed {
    /// Declared first, so dropped before the buffer it points into.
    region: FixedRegion,
    buf: NonNull<[u8]>,
}

impl Backend for Fixed {
    type Pages = FixedRegion;
    fn new() -> Self {
        let cfg = Config::SMALL;
        let geo = cfg.geometry().expect("a valid configuration");
        let ss = geo.superslab_size();
        let len = FIXED_BYTES + ss;
        let buf = NonNull::from(Box::leak(vec![0u8; len].into_boxed_slice()));
        let region = FixedRegion::new(DEFAULT_PAGE_SHIFT, geo.superslab_shift as u32);
        // SAFETY: the buffer is leaked to us, used by nothing but the region
        // until `drop` frees it after the region is gone.
        unsafe { region.claim(buf.as_ptr().cast(), len) }.expect("claim the buffer");
        Fixed { region, buf }
    }
    fn pages(&self) -> &FixedRegion {
        &self.region
    }
    fn config(&self) -> Config {
        Config::SMALL
    }
    fn mapped_bytes(&self) -> usize {
        self.region.stats().mapped_bytes
    }
    fn limit(&self, _bytes: usize) -> bool {
        // Finite already: FIXED_BYTES.
        true
    }
}

impl Drop for Fixed {
    fn drop(&mut self) {
        // SAFETY: leaked from a Box in `new`; the region that used it is
        // dropped after this body, but never touches the buffer then (it
        // keeps its bitmaps inline or in the buffer, and drops nothing in
        // it). The heap over it is gone: it borrowed the backend.
        unsafe { drop(Box::from_raw(self.buf.as_ptr())) };
    }
}

/// [`LinuxPages`]: anonymous `mmap`, the default 2 MiB SuperSlabs. Cannot
/// be limited.
pub struct Linux(LinuxPages);

impl Backend for Linux {
    type Pages = LinuxPages;
    fn new() -> Self {
        let shift = Config::DEFAULT.superslab_shift as u32;
        Linux(LinuxPages::new(shift))
    }
    fn pages(&self) -> &LinuxPages {
        &self.0
    }
    fn config(&self) -> Config {
        Config::DEFAULT
    }
    fn mapped_bytes(&self) -> usize {
        self.0.mapped_bytes()
    }
    fn limit(&self, _bytes: usize) -> bool {
        false
    }
}

/// A heap over the backend's source.
pub fn heap<B: Backend>(b: &B) -> Heap<&B::Pages> {
    Heap::new(b.pages(), b.config()).expect("a valid configuration")
}

/// The byte pattern of block `tag` at offset `i`.
fn pat(tag: usize, i: usize) -> u8 {
    (tag.wrapping_mul(31) ^ i.wrapping_mul(131)) as u8
}

/// Fills `[p, p + n)` with tag's pattern.
///
/// # Safety
/// `p` is valid for `n` bytes of writes.
unsafe fn fill(p: *mut u8, n: usize, tag: usize) {
    for i in 0..n {
        // SAFETY: per the caller.
        unsafe { p.add(i).write(pat(tag, i)) };
    }
}

/// Whether `[p, p + n)` holds tag's pattern.
///
/// # Safety
/// `p` is valid for `n` bytes of reads.
unsafe fn intact(p: *const u8, n: usize, tag: usize) -> bool {
    // SAFETY: per the caller.
    (0..n).all(|i| unsafe { p.add(i).read() } == pat(tag, i))
}

/// Frees a live block, which must be accepted.
///
/// # Safety
/// `p` is a live block of `h`, not used afterwards.
unsafe fn free<P: PageSource>(h: &mut Heap<P>, p: *mut u8) {
    // SAFETY: per the caller.
    unsafe { h.dealloc(p) }.expect("a valid free");
}

/// Sizes across every tier: exact classes, the ~4-per-power classes, the
/// largest slab classes, large blocks.
const SIZES: [usize; 14] = [
    1,
    8,
    16,
    24,
    48,
    100,
    256,
    700,
    1000,
    3000,
    9000,
    40_000,
    200_000,
    1 << 20,
];

/// Blocks of every size, written, read back and freed in two orders; the
/// heap ends holding nothing.
pub fn suite_alloc_free<B: Backend>() {
    let b = B::new();
    let mut h = heap(&b);
    let mut live = Vec::new();
    for round in 0..3 {
        for (i, &size) in SIZES.iter().enumerate() {
            let p = h.alloc(size, 8);
            assert!(!p.is_null(), "alloc({size})");
            let tag = round * 100 + i;
            // SAFETY: a fresh block of `size` bytes.
            unsafe { fill(p, size, tag) };
            live.push((p, size, tag));
        }
    }
    let st = h.stats();
    assert_eq!(st.held_blocks, live.len());
    assert!(st.held_bytes >= live.iter().map(|b| b.1).sum::<usize>());
    h.check().expect("invariants");
    // Every other block first, then the rest backwards.
    let (even, odd): (Vec<_>, Vec<_>) = live.iter().enumerate().partition(|(i, _)| i % 2 == 0);
    for (_, &(p, size, tag)) in even.into_iter().chain(odd.into_iter().rev()) {
        // SAFETY: a live block of `size` bytes, freed once.
        unsafe {
            assert!(intact(p, size, tag), "block of {size} B overwritten");
            assert!(h.usable_size(p).expect("live") >= size);
            free(&mut h, p);
        }
        h.check().expect("invariants");
    }
    assert_eq!(h.stats().held_blocks, 0);
    assert_eq!(h.stats().held_bytes, 0);
}

/// Size 0 gets a unique, freeable block, as `malloc(0)` must.
pub fn suite_zero_size<B: Backend>() {
    let b = B::new();
    let mut h = heap(&b);
    let blocks: Vec<*mut u8> = (0..100).map(|_| h.alloc(0, 1)).collect();
    assert!(blocks.iter().all(|p| !p.is_null()));
    let mut sorted = blocks.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), blocks.len(), "alloc(0) gave a pointer twice");
    for p in blocks {
        // SAFETY: live, freed once.
        unsafe { free(&mut h, p) };
    }
    assert_eq!(h.stats().held_blocks, 0);
    h.check().expect("invariants");
}

/// Every power-of-two alignment from 1 to four SuperSlabs, for small,
/// medium and large sizes: the block is aligned, usable for its size, and
/// freed cleanly; a non-power-of-two alignment is refused with null.
pub fn suite_alignment<B: Backend>() {
    let b = B::new();
    let mut h = heap(&b);
    let max = 4 * h.geometry().superslab_size();
    let mut align = 1;
    let mut tag = 0;
    while align <= max {
        for size in [1, 100, 5000, 3 * align / 2] {
            let p = h.alloc(size, align);
            assert!(!p.is_null(), "alloc({size}, {align})");
            assert_eq!(p as usize % align, 0, "alloc({size}, {align}) = {p:p}");
            tag += 1;
            // SAFETY: a fresh block of `size` bytes, freed once.
            unsafe {
                assert!(h.usable_size(p).expect("live") >= size);
                fill(p, size, tag);
                assert!(intact(p, size, tag));
                free(&mut h, p);
            }
            h.check().expect("invariants");
        }
        align *= 2;
    }
    assert!(h.alloc(64, 24).is_null(), "alignment 24 accepted");
    assert_eq!(h.stats().held_blocks, 0);
}

/// realloc grows and shrinks across tiers (small → large → small), keeps
/// the contents up to the smaller size, and a null pointer allocates.
pub fn suite_realloc<B: Backend>() {
    let b = B::new();
    let mut h = heap(&b);
    // SAFETY: null allocates.
    let mut p = unsafe { h.realloc(core::ptr::null_mut(), 10, 8) }.expect("null is fine");
    assert!(!p.is_null());
    let mut size = 10;
    // SAFETY: a fresh block of `size` bytes.
    unsafe { fill(p, size, 7) };
    for new in [100, 3000, 300_000, 2 << 20, 50_000, 500, 16, 1] {
        // SAFETY: `p` is live and replaced by the result.
        let q = unsafe { h.realloc(p, new, 8) }.expect("a live block");
        assert!(!q.is_null(), "realloc to {new}");
        let kept = size.min(new);
        // SAFETY: `q` is live with at least `new` bytes.
        unsafe {
            assert!(intact(q, kept, 7), "realloc {size} -> {new} lost data");
            fill(q, new, 7);
        }
        h.check().expect("invariants");
        p = q;
        size = new;
    }
    // SAFETY: live, freed once.
    unsafe { free(&mut h, p) };
    assert_eq!(h.stats().held_blocks, 0);
}

/// Bad frees are refused with the right kind and change nothing: a double
/// free, an interior pointer, a pointer the source never handed out (the
/// stack); the heap works afterwards.
pub fn suite_bad_frees<B: Backend>() {
    let b = B::new();
    let mut h = heap(&b);
    let keep = h.alloc(64, 8); // keeps the SuperSlab mapped
    let p = h.alloc(64, 8);
    let large = h.alloc(1 << 20, 8);
    assert!(!keep.is_null() && !p.is_null() && !large.is_null());
    // SAFETY: `p` is live; freed once here.
    unsafe { free(&mut h, p) };
    let before = h.stats();
    let mut local = 0u64;
    let cases: [(*mut u8, FreeErrorKind); 4] = [
        (p, FreeErrorKind::DoubleFree),
        (keep.wrapping_add(8), FreeErrorKind::Interior),
        (large.wrapping_add(16), FreeErrorKind::Interior),
        ((&raw mut local).cast(), FreeErrorKind::NotOurs),
    ];
    for (bad, kind) in cases {
        // SAFETY: none of these is a live block; dealloc only inspects it.
        let err = unsafe { h.dealloc(bad) }.expect_err("a bad free accepted");
        assert_eq!(err.kind, kind, "{bad:p}");
        assert_eq!(err.ptr, bad as usize);
        assert!(err.to_string().contains(&format!("{:#x}", bad as usize)));
        assert_eq!(h.stats(), before, "a refused free changed the stats");
        h.check().expect("invariants");
    }
    // SAFETY: both live, freed once.
    unsafe {
        free(&mut h, keep);
        free(&mut h, large);
    }
    let q = h.alloc(64, 8);
    assert!(!q.is_null());
    // SAFETY: live, freed once.
    unsafe { free(&mut h, q) };
    assert_eq!(h.stats().held_blocks, 0);
}

/// Memory goes back: after freeing everything (many SuperSlabs of small
/// blocks, and large blocks) at most the retained SuperSlabs stay mapped,
/// by the source's own count; after `trim`, nothing.
pub fn suite_memory_return<B: Backend>() {
    let b = B::new();
    assert_eq!(b.mapped_bytes(), 0);
    let mut h = heap(&b);
    let ss = h.geometry().superslab_size();
    let retain = h.config().retain;
    let n = 8 * ss / 64; // about 8 SuperSlabs of 48 B blocks
    let mut blocks: Vec<*mut u8> = (0..n).map(|_| h.alloc(48, 8)).collect();
    blocks.extend((0..4).map(|_| h.alloc(3 * ss, 8)));
    assert!(blocks.iter().all(|p| !p.is_null()));
    assert!(b.mapped_bytes() >= 8 * ss);
    assert_eq!(h.stats().mapped_bytes, b.mapped_bytes());
    // Free in a scattered order.
    let len = blocks.len();
    for i in 0..len {
        let j = (i * 7919) % len;
        let p = core::mem::replace(&mut blocks[j], core::ptr::null_mut());
        if !p.is_null() {
            // SAFETY: live, freed once (slots are nulled).
            unsafe { free(&mut h, p) };
        }
    }
    for p in blocks.into_iter().filter(|p| !p.is_null()) {
        // SAFETY: the ones the scatter missed; live, freed once.
        unsafe { free(&mut h, p) };
    }
    h.check().expect("invariants");
    assert_eq!(h.stats().held_blocks, 0);
    // Beside the retained ones, the SuperSlab of the 48 B class's current
    // slab: pinned (counted live) until a flush retires it.
    assert!(
        b.mapped_bytes() <= (retain + 1) * ss,
        "{} B still mapped after free-all, retain {retain}",
        b.mapped_bytes()
    );
    h.flush();
    assert!(
        b.mapped_bytes() <= retain * ss,
        "{} B still mapped after free-all and a flush, retain {retain}",
        b.mapped_bytes()
    );
    h.trim();
    assert_eq!(b.mapped_bytes(), 0, "mapped after trim");
    assert_eq!(h.stats().mapped_bytes, 0);
    drop(h);
    assert_eq!(b.mapped_bytes(), 0);
}

/// A finite source runs out: allocation returns null (small and large),
/// the heap stays consistent, and once blocks are freed allocation works
/// again. For backends that can be limited.
pub fn suite_exhaustion_and_recovery<B: Backend>() {
    let b = B::new();
    let mut h = heap(&b);
    assert!(b.limit(FIXED_BYTES), "this backend cannot be limited");
    let mut blocks = Vec::new();
    loop {
        let p = h.alloc(1000, 8);
        if p.is_null() {
            break;
        }
        blocks.push(p);
        assert!(blocks.len() < 1 << 20, "the source never ran out");
    }
    assert!(!blocks.is_empty());
    assert!(
        h.alloc(1 << 20, 8).is_null(),
        "a large block with no memory"
    );
    h.check().expect("invariants after exhaustion");
    let held = h.stats().held_blocks;
    assert_eq!(held, blocks.len());
    // Free half (every other one, so every SuperSlab keeps some blocks):
    // small allocations are served again from the freed blocks.
    let mut kept = Vec::new();
    for (i, p) in blocks.into_iter().enumerate() {
        if i % 2 == 0 {
            // SAFETY: live, freed once.
            unsafe { free(&mut h, p) };
        } else {
            kept.push(p);
        }
    }
    let again = h.alloc(1000, 8);
    assert!(!again.is_null(), "no recovery after frees");
    kept.push(again);
    for p in kept {
        // SAFETY: live, freed once.
        unsafe { free(&mut h, p) };
    }
    h.trim();
    // Everything back: a large block fits again.
    let big = h.alloc(1 << 20, 8);
    assert!(!big.is_null(), "a large block after free-all and trim");
    // SAFETY: live, freed once.
    unsafe { free(&mut h, big) };
    h.trim();
    h.check().expect("invariants");
    assert_eq!(b.mapped_bytes(), 0);
}

/// `alloc_zeroed` gives zeroed bytes, also for blocks reused after being
/// written and freed.
pub fn suite_zeroed_after_reuse<B: Backend>() {
    let b = B::new();
    let mut h = heap(&b);
    for size in [16, 200, 3000, 200_000] {
        let p = h.alloc(size, 8);
        assert!(!p.is_null());
        // SAFETY: fresh, `size` bytes; freed once.
        unsafe {
            p.write_bytes(0xAB, size);
            free(&mut h, p);
        }
        let z = h.alloc_zeroed(size, 8);
        assert!(!z.is_null());
        // SAFETY: live, `size` bytes, freed once.
        unsafe {
            assert!(
                (0..size).all(|i| z.add(i).read() == 0),
                "alloc_zeroed({size})"
            );
            free(&mut h, z);
        }
    }
    h.check().expect("invariants");
}
