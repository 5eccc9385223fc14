//! Heap efficiency and random-actions throughput of hakmem-bare, talc and
//! linked_list_allocator on the same region, in the same run, measured the
//! way talc's benchmarks measure them. A benchmark, not a test: it asserts
//! nothing and prints a table.
//!
//! ```sh
//! cargo run --release -p hakmem-bare --example efficiency
//! ```
//!
//! - **Heap efficiency**: on a fresh heap over the region, random actions
//!   (50 % allocate 1..100 000 B with alignment `8 << (trailing zeros of a
//!   random u16) / 2`, 10 % free one, 40 % realloc one to 1..10^11 B — those
//!   mostly fail and change nothing) until the first allocation fails; then
//!   live requested bytes ÷ region size. Mean over `RUNS` runs.
//! - **Random actions**: for 200 ms, batches of 100 actions (20 % realloc to
//!   1..10×max, 40 % free when at least 300 blocks are live, else allocate
//!   1..max): successful operations counted, mean of 3 trials per maximum
//!   size. One thread: these are single-core heaps (talc's own figure uses
//!   12 threads on one locked heap).
//!
//! Environment: `EFF_MIB` (region for efficiency, default 128), `EFF_RUNS`
//! (default 20), `RA_MIB` (region for random actions, default 128).

use std::alloc::{alloc, dealloc, GlobalAlloc, Layout};
use std::ptr::{self, NonNull};
use std::time::{Duration, Instant};

use hakmem_bare::{LocalHeap, BARE_CONFIG};

const HE_MAX_ALLOC: usize = 100_000;
const HE_MAX_REALLOC: usize = 100_000 * 1_000_000;
const RA_TIME: Duration = Duration::from_millis(200);
const RA_TRIALS: usize = 3;
const RA_MAX_SIZES: [usize; 4] = [1_000, 10_000, 50_000, 100_000];
const RA_REALLOC_MULTI: usize = 10;
const RA_MIN_LIVE: usize = 300;

/// The region every allocator gets in turn.
struct Region {
    ptr: *mut u8,
    layout: Layout,
}

impl Region {
    fn new(mib: usize) -> Region {
        let layout = Layout::from_size_align(mib << 20, 2 << 20).unwrap();
        // SAFETY: non-zero size.
        let ptr = unsafe { alloc(layout) };
        assert!(!ptr.is_null(), "cannot allocate the {mib} MiB region");
        Region { ptr, layout }
    }
    fn len(&self) -> usize {
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
trait Arena {
    fn alloc(&mut self, l: Layout) -> *mut u8;
    /// # Safety
    /// `p` is live, from this arena, with layout `l`.
    unsafe fn dealloc(&mut self, p: *mut u8, l: Layout);
    /// # Safety
    /// As `dealloc`; null leaves `p` live.
    unsafe fn realloc(&mut self, p: *mut u8, l: Layout, n: usize) -> *mut u8;
}

/// Makes a fresh arena over the region.
type Make = fn(&Region) -> Box<dyn Arena>;

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

fn make_hakmem(r: &Region) -> Box<dyn Arena> {
    // SAFETY: the region is used by this arena alone until it is dropped.
    Box::new(Hakmem(
        unsafe { LocalHeap::with_region(r.ptr, r.len(), BARE_CONFIG) }.unwrap(),
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
    unsafe { t.claim(r.ptr, r.len()) }.expect("talc claims the region");
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
        linked_list_allocator::Heap::new(r.ptr, r.len())
    }))
}

const ALLOCATORS: [(&str, Make); 3] = [
    ("hakmem-bare", make_hakmem),
    ("talc", make_talc),
    ("linked_list_allocator", make_linked_list),
];

/// xorshift64*.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in `lo..hi`.
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next() % (hi - lo) as u64) as usize
    }
    /// talc's alignment: `align_of::<usize>() << (trailing zeros of a u16) / 2`.
    fn align(&mut self) -> usize {
        std::mem::align_of::<usize>() << ((self.next() as u16).trailing_zeros() / 2)
    }
}

/// A live allocation of the benchmark.
struct Block {
    ptr: *mut u8,
    layout: Layout,
}

fn free_all(a: &mut dyn Arena, v: &mut Vec<Block>) {
    for b in v.drain(..) {
        // SAFETY: live blocks of `a`.
        unsafe { a.dealloc(b.ptr, b.layout) };
    }
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
    b.ptr = p;
    b.layout = nl;
    true
}

/// One heap-efficiency run: percent of the region live at the first failure.
fn efficiency_run(a: &mut dyn Arena, region: usize, rng: &mut Rng) -> f64 {
    let mut v: Vec<Block> = Vec::with_capacity(100_000);
    loop {
        match rng.range(0, 10) {
            0..=4 => {
                let layout =
                    Layout::from_size_align(rng.range(1, HE_MAX_ALLOC), rng.align()).unwrap();
                let ptr = a.alloc(layout);
                if ptr.is_null() {
                    let used: usize = v.iter().map(|b| b.layout.size()).sum();
                    free_all(a, &mut v);
                    return used as f64 / region as f64 * 100.0;
                }
                v.push(Block { ptr, layout });
            }
            5 => {
                if !v.is_empty() {
                    let b = v.swap_remove(rng.range(0, v.len()));
                    // SAFETY: a live block of `a`.
                    unsafe { a.dealloc(b.ptr, b.layout) };
                }
            }
            _ => {
                if !v.is_empty() {
                    let i = rng.range(0, v.len());
                    let n = rng.range(1, HE_MAX_REALLOC);
                    try_realloc(a, &mut v[i], n);
                }
            }
        }
    }
}

/// One random-actions trial: successful operations in `RA_TIME`.
fn random_actions(a: &mut dyn Arena, max: usize, rng: &mut Rng) -> usize {
    let mut v: Vec<Block> = Vec::with_capacity(100_000);
    let mut score = 0;
    let start = Instant::now();
    while start.elapsed() < RA_TIME {
        for _ in 0..100 {
            let action = rng.range(0, 5);
            if action == 4 {
                if !v.is_empty() {
                    let i = rng.range(0, v.len());
                    let n = rng.range(1, max * RA_REALLOC_MULTI);
                    if try_realloc(a, &mut v[i], n) {
                        score += 1;
                    }
                }
            } else if action < 2 || v.len() < RA_MIN_LIVE {
                let layout = Layout::from_size_align(rng.range(1, max), rng.align()).unwrap();
                let ptr = a.alloc(layout);
                if !ptr.is_null() {
                    v.push(Block { ptr, layout });
                    score += 1;
                }
            } else {
                let b = v.swap_remove(rng.range(0, v.len()));
                // SAFETY: a live block of `a`.
                unsafe { a.dealloc(b.ptr, b.layout) };
                score += 1;
            }
        }
    }
    free_all(a, &mut v);
    score
}

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let eff_mib = env("EFF_MIB", 128);
    let runs = env("EFF_RUNS", 20);
    let ra_mib = env("RA_MIB", 128);

    println!("Heap efficiency: {runs} runs on a {eff_mib} MiB region (live bytes at the first failure / region)");
    println!("| allocator             | mean efficiency | min     | max     |");
    println!("| --------------------- | --------------- | ------- | ------- |");
    let region = Region::new(eff_mib);
    for (name, make) in ALLOCATORS {
        let mut rng = Rng(0x5EED_0000_0000_0001);
        let mut all = Vec::new();
        for _ in 0..runs {
            let mut a = make(&region);
            all.push(efficiency_run(a.as_mut(), region.len(), &mut rng));
        }
        let mean = all.iter().sum::<f64>() / all.len() as f64;
        let min = all.iter().copied().fold(f64::MAX, f64::min);
        let max = all.iter().copied().fold(0.0, f64::max);
        println!("| {name:<21} | {mean:>14.2}% | {min:>6.2}% | {max:>6.2}% |");
    }
    drop(region);

    println!();
    println!(
        "Random actions: successful operations in {} ms on a {ra_mib} MiB region, one thread, mean of {RA_TRIALS} trials",
        RA_TIME.as_millis()
    );
    print!("| allocator             |");
    for m in RA_MAX_SIZES {
        print!(" max {m:>7} B |");
    }
    println!();
    print!("| --------------------- |");
    for _ in RA_MAX_SIZES {
        print!(" ------------- |");
    }
    println!();
    let region = Region::new(ra_mib);
    for (name, make) in ALLOCATORS {
        print!("| {name:<21} |");
        for max in RA_MAX_SIZES {
            let mut rng = Rng(0xACE0_0000_0000_0001 ^ max as u64);
            let mut total = 0;
            for _ in 0..RA_TRIALS {
                let mut a = make(&region);
                total += random_actions(a.as_mut(), max, &mut rng);
            }
            print!(" {:>13} |", total / RA_TRIALS);
        }
        println!();
    }
}
