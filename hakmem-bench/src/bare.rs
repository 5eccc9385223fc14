//! The bare-metal workloads: hakmem-bare, talc and linked_list_allocator,
//! each given the same region in turn (run by `src/bin/bare.rs`, one
//! allocator per process). A benchmark, not a test.
//!
//! - **efficiency** (talc's method): on a fresh heap over a 128 MiB region,
//!   random actions (50 % allocate 1..100 000 B with alignment
//!   `8 << (trailing zeros of a random u16) / 2`, 10 % free one, 40 %
//!   realloc one to 1..10^11 B — those mostly fail and change nothing) until
//!   the first allocation fails; then live requested bytes ÷ region size.
//! - **stream**: on 64 KiB (sizes to 2 KiB), 4 MiB (to 10 000 B) and 64 MiB
//!   (to 100 000 B) regions, a seeded mixed stream — three quarters of the
//!   sizes up to 256 B, a quarter up to the maximum, alignments 1–8 B, 55 %
//!   allocations, 25 % reallocs, 20 % frees — run on fresh heaps until the
//!   first failure each time: efficiency at that failure, and operations per
//!   second over all runs.
//! - **random-actions** (talc's benchmark): for a fixed time, batches of 100
//!   actions (20 % realloc to 1..10×max, 40 % free when at least 300 blocks
//!   are live, else allocate 1..max) on a 128 MiB region: successful
//!   operations per second, per maximum size. One thread.

use std::alloc::{alloc, dealloc, GlobalAlloc, Layout};
use std::ptr::{self, NonNull};
use std::time::{Duration, Instant};

use hakmem_bare::{Config, LocalHeap};

use crate::out::{self, Better};
use crate::rng::Rng;

/// The region every allocator gets in turn.
pub struct Region {
    ptr: *mut u8,
    layout: Layout,
}

impl Region {
    /// Allocates `bytes` (a multiple of 2 MiB or less), 2 MiB aligned.
    pub fn new(bytes: usize) -> Region {
        assert!(bytes > 0, "empty region");
        let layout = Layout::from_size_align(bytes, 2 << 20).expect("region layout");
        // SAFETY: non-zero size (asserted above).
        let ptr = unsafe { alloc(layout) };
        assert!(!ptr.is_null(), "cannot allocate the {bytes} B region");
        Region { ptr, layout }
    }
    /// Its size in bytes.
    pub fn size(&self) -> usize {
        self.layout.size()
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: allocated with this layout.
        unsafe { dealloc(self.ptr, self.layout) }
    }
}

/// What the benchmarks need of an allocator (no lock on any of them).
pub trait Arena {
    /// A block of layout `l`, or null.
    fn alloc(&mut self, l: Layout) -> *mut u8;
    /// # Safety
    /// `p` is live, from this arena, with layout `l`.
    unsafe fn dealloc(&mut self, p: *mut u8, l: Layout);
    /// # Safety
    /// As `dealloc`; null leaves `p` live.
    unsafe fn realloc(&mut self, p: *mut u8, l: Layout, n: usize) -> *mut u8;
}

/// Makes a fresh arena over the region.
pub type Make = fn(&Region) -> Box<dyn Arena>;

struct Hakmem(LocalHeap);

impl Arena for Hakmem {
    fn alloc(&mut self, l: Layout) -> *mut u8 {
        self.0.alloc(l)
    }
    unsafe fn dealloc(&mut self, p: *mut u8, l: Layout) {
        // SAFETY: forwarded.
        unsafe { self.0.dealloc(p, l) }
    }
    unsafe fn realloc(&mut self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        // SAFETY: forwarded.
        unsafe { self.0.realloc(p, l, n) }
    }
}

/// hakmem-bare with the geometry `Config::for_heap` picks for the region
/// (every region here is aligned to 2 MiB, so to any SuperSlab it picks).
fn make_hakmem(r: &Region) -> Box<dyn Arena> {
    // SAFETY: the region is used by this arena alone until it is dropped.
    Box::new(Hakmem(
        unsafe { LocalHeap::with_region(r.ptr, r.size(), Config::for_heap(r.size())) }.unwrap(),
    ))
}

struct Talc(talc::TalcCell<talc::source::Manual>);

impl Arena for Talc {
    fn alloc(&mut self, l: Layout) -> *mut u8 {
        // SAFETY: non-zero layouts only.
        unsafe { self.0.alloc(l) }
    }
    unsafe fn dealloc(&mut self, p: *mut u8, l: Layout) {
        // SAFETY: forwarded.
        unsafe { self.0.dealloc(p, l) }
    }
    unsafe fn realloc(&mut self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        // SAFETY: forwarded.
        unsafe { self.0.realloc(p, l, n) }
    }
}

fn make_talc(r: &Region) -> Box<dyn Arena> {
    let t = talc::TalcCell::new(talc::source::Manual);
    // SAFETY: the region is used by this arena alone until it is dropped.
    unsafe { t.claim(r.ptr, r.size()) }.expect("talc claims the region");
    Box::new(Talc(t))
}

struct LinkedList(linked_list_allocator::Heap);

impl Arena for LinkedList {
    fn alloc(&mut self, l: Layout) -> *mut u8 {
        self.0
            .allocate_first_fit(l)
            .map_or(ptr::null_mut(), |p| p.as_ptr())
    }
    unsafe fn dealloc(&mut self, p: *mut u8, l: Layout) {
        // SAFETY: forwarded; `p` is non-null.
        unsafe { self.0.deallocate(NonNull::new_unchecked(p), l) }
    }
    /// As `GlobalAlloc`'s default realloc (what its `LockedHeap` does).
    unsafe fn realloc(&mut self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        let Ok(nl) = Layout::from_size_align(n, l.align()) else {
            return ptr::null_mut();
        };
        let q = self.alloc(nl);
        if !q.is_null() {
            // SAFETY: both live, distinct, at least this long.
            unsafe {
                ptr::copy_nonoverlapping(p, q, l.size().min(n));
                self.dealloc(p, l);
            }
        }
        q
    }
}

fn make_linked_list(r: &Region) -> Box<dyn Arena> {
    // SAFETY: the region is used by this arena alone until it is dropped.
    Box::new(LinkedList(unsafe {
        linked_list_allocator::Heap::new(r.ptr, r.size())
    }))
}

/// The bare-metal allocators, by name.
pub const ALLOCATORS: [(&str, Make); 3] = [
    ("hakmem-bare", make_hakmem),
    ("talc", make_talc),
    ("linked_list_allocator", make_linked_list),
];

/// talc's alignment: `align_of::<usize>() << (trailing zeros of a u16) / 2`.
fn talc_align(r: &mut Rng) -> usize {
    std::mem::align_of::<usize>() << ((r.next_u64() as u16).trailing_zeros() / 2)
}

/// A live allocation of a benchmark, with a check byte written at its
/// start.
struct Block {
    ptr: *mut u8,
    layout: Layout,
}

/// Checks the tag bytes of `v`'s blocks and frees them; the number of
/// corrupted blocks.
fn free_all(a: &mut dyn Arena, v: &mut Vec<Block>) -> usize {
    let mut bad = 0;
    for b in v.drain(..) {
        // SAFETY: a live block of `a`, of at least one byte, tagged with its
        // size's low byte when allocated or reallocated.
        unsafe {
            bad += usize::from(b.ptr.read() != b.layout.size() as u8);
            a.dealloc(b.ptr, b.layout);
        }
    }
    bad
}

/// Allocates and tags a block; false if the allocation failed.
fn try_alloc(a: &mut dyn Arena, v: &mut Vec<Block>, size: usize, align: usize) -> bool {
    let layout = Layout::from_size_align(size, align).expect("layout");
    let ptr = a.alloc(layout);
    if ptr.is_null() {
        return false;
    }
    // SAFETY: a fresh block of at least one byte.
    unsafe { ptr.write(size as u8) };
    v.push(Block { ptr, layout });
    true
}

fn try_realloc(a: &mut dyn Arena, b: &mut Block, n: usize) -> bool {
    let Ok(nl) = Layout::from_size_align(n, b.layout.align()) else {
        return false;
    };
    // SAFETY: a live block of `a`.
    let p = unsafe { a.realloc(b.ptr, b.layout, n) };
    if p.is_null() {
        return false;
    }
    // SAFETY: a live block of at least one byte.
    unsafe { p.write(n as u8) };
    b.ptr = p;
    b.layout = nl;
    true
}

fn make(name: &str) -> Make {
    ALLOCATORS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|&(_, m)| m)
        .unwrap_or_else(|| {
            eprintln!("unknown bare allocator {name}");
            std::process::exit(2)
        })
}

/// Runs bare workload `workload` on allocator `name` (one of
/// [`ALLOCATORS`]); false if there is no such workload.
pub fn run(workload: &str, name: &str, scale: f64) -> bool {
    let make = make(name);
    let bad = match workload {
        "efficiency" => efficiency(make, scale),
        "stream" => stream(make, scale),
        "random-actions" => random_actions(make, scale),
        _ => return false,
    };
    // Requests are seeded and identical for every allocator, but where a
    // heap runs full differs by design: the check is that no block lost
    // its contents.
    out::check(format!("corrupted={bad}"));
    true
}

fn efficiency(make: Make, scale: f64) -> usize {
    let runs = crate::workloads::scaled(20.0, scale);
    let region = Region::new(128 << 20);
    let mut r = Rng(0x5EED_0000_0000_0001);
    let (mut sum, mut bad) = (0.0, 0);
    for _ in 0..runs {
        let mut a = make(&region);
        let mut v: Vec<Block> = Vec::with_capacity(100_000);
        loop {
            match r.range(0, 9) {
                0..=4 => {
                    let (size, align) = (r.range(1, 100_000), talc_align(&mut r));
                    if !try_alloc(a.as_mut(), &mut v, size, align) {
                        let used: usize = v.iter().map(|b| b.layout.size()).sum();
                        sum += used as f64 / region.size() as f64 * 100.0;
                        bad += free_all(a.as_mut(), &mut v);
                        break;
                    }
                }
                5 => {
                    if !v.is_empty() {
                        let mut one = vec![v.swap_remove(r.range(0, v.len() - 1))];
                        bad += free_all(a.as_mut(), &mut one);
                    }
                }
                _ => {
                    if !v.is_empty() {
                        let i = r.range(0, v.len() - 1);
                        let n = r.range(1, 100_000 * 1_000_000);
                        try_realloc(a.as_mut(), &mut v[i], n);
                    }
                }
            }
        }
    }
    out::metric("efficiency", sum / runs as f64, "%", Better::Higher);
    bad
}

fn stream(make: Make, scale: f64) -> usize {
    let mut bad = 0;
    for (label, bytes, max, runs) in [
        ("64KiB", 64usize << 10, 2048usize, 2000.0),
        ("4MiB", 4 << 20, 10_000, 40.0),
        ("64MiB", 64 << 20, 100_000, 10.0),
    ] {
        let region = Region::new(bytes);
        let mut r = Rng(0xB0A7_0000_0000_0001 ^ bytes as u64);
        let runs = crate::workloads::scaled(runs, scale);
        let (mut eff, mut ops) = (0.0, 0usize);
        let size = |r: &mut Rng| {
            if r.range(0, 3) < 3 {
                r.range(1, 256)
            } else {
                r.range(1, max)
            }
        };
        let t = Instant::now();
        for _ in 0..runs {
            let mut a = make(&region);
            let mut v: Vec<Block> = Vec::new();
            loop {
                ops += 1;
                match r.range(0, 19) {
                    0..=10 => {
                        let (s, align) = (size(&mut r), 1 << r.range(0, 3));
                        if !try_alloc(a.as_mut(), &mut v, s, align) {
                            let used: usize = v.iter().map(|b| b.layout.size()).sum();
                            eff += used as f64 / region.size() as f64 * 100.0;
                            bad += free_all(a.as_mut(), &mut v);
                            break;
                        }
                    }
                    11..=15 if !v.is_empty() => {
                        let i = r.range(0, v.len() - 1);
                        let n = size(&mut r);
                        try_realloc(a.as_mut(), &mut v[i], n);
                    }
                    _ if !v.is_empty() => {
                        let mut one = vec![v.swap_remove(r.range(0, v.len() - 1))];
                        bad += free_all(a.as_mut(), &mut one);
                    }
                    _ => {}
                }
            }
        }
        let secs = t.elapsed().as_secs_f64();
        out::metric(
            &format!("efficiency.{label}"),
            eff / runs as f64,
            "%",
            Better::Higher,
        );
        out::metric(
            &format!("mops.{label}"),
            ops as f64 / secs / 1e6,
            "Mops/s",
            Better::Higher,
        );
    }
    bad
}

fn random_actions(make: Make, scale: f64) -> usize {
    let time = Duration::from_secs_f64((0.5 * scale).max(0.05));
    let region = Region::new(128 << 20);
    let mut bad = 0;
    for max in [1_000usize, 10_000, 50_000, 100_000] {
        let mut r = Rng(0xACE0_0000_0000_0001 ^ max as u64);
        let mut a = make(&region);
        let mut v: Vec<Block> = Vec::with_capacity(100_000);
        let mut score = 0usize;
        let start = Instant::now();
        while start.elapsed() < time {
            for _ in 0..100 {
                let action = r.range(0, 4);
                if action == 4 {
                    if !v.is_empty() {
                        let i = r.range(0, v.len() - 1);
                        let n = r.range(1, max * 10);
                        score += usize::from(try_realloc(a.as_mut(), &mut v[i], n));
                    }
                } else if action < 2 || v.len() < 300 {
                    let (s, align) = (r.range(1, max), talc_align(&mut r));
                    score += usize::from(try_alloc(a.as_mut(), &mut v, s, align));
                } else {
                    let mut one = vec![v.swap_remove(r.range(0, v.len() - 1))];
                    bad += free_all(a.as_mut(), &mut one);
                    score += 1;
                }
            }
        }
        let secs = start.elapsed().as_secs_f64();
        bad += free_all(a.as_mut(), &mut v);
        out::metric(
            &format!("max{max}B"),
            score as f64 / secs / 1e6,
            "Mops/s",
            Better::Higher,
        );
    }
    bad
}
