//! hakmem as the `#[global_allocator]` under ordinary Rust code: the
//! collections (Vec, String, HashMap, BTreeMap, `Box<dyn Trait>`, VecDeque,
//! nested ones), every alignment from 1 B to 2 MiB (`GlobalAlloc::alloc`
//! → `Heap::alloc` → class or large path), `realloc` growing from 1 B to
//! 64 MiB and shrinking back (small → large → small), zero-sized types and
//! impossible sizes (`alloc` returns null, `try_reserve` fails, the program
//! goes on), `alloc_zeroed` on reused dirty memory, and the exact per-thread
//! accounting of `thread_stats()` around a known allocation.

use std::alloc::{GlobalAlloc, Layout};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::hint::black_box;

#[global_allocator]
static GLOBAL: hakmem_std::HakMem = hakmem_std::HakMem::new();

/// Period of the fill pattern: a prime, so a block shifted or copied to
/// the wrong offset does not match by accident.
const PERIOD: usize = 4093;

/// Two periods of the pattern of `seed`, so that any phase has a
/// contiguous period-long window (fills and checks are then memcpy and
/// memcmp, which keeps debug builds fast on 64 MiB blocks).
fn pattern(seed: usize) -> Vec<u8> {
    (0..2 * PERIOD)
        .map(|i| ((i % PERIOD).wrapping_mul(31) ^ seed.wrapping_mul(0x9e37) ^ (seed >> 8)) as u8)
        .collect()
}

/// Writes the pattern of `seed` into offsets `from..to` of the block at `p`.
///
/// # Safety
/// `p` is valid for writes of `to` bytes.
unsafe fn fill_range(p: *mut u8, from: usize, to: usize, seed: usize) {
    let pat = pattern(seed);
    // SAFETY: per the caller.
    let s = unsafe { std::slice::from_raw_parts_mut(p, to) };
    let mut i = from;
    while i < to {
        let n = (to - i).min(PERIOD);
        let phase = i % PERIOD;
        s[i..i + n].copy_from_slice(&pat[phase..phase + n]);
        i += n;
    }
}

/// Fills `len` bytes at `p` with the pattern of `seed`.
///
/// # Safety
/// `p` is valid for writes of `len` bytes.
unsafe fn fill(p: *mut u8, len: usize, seed: usize) {
    // SAFETY: per the caller.
    unsafe { fill_range(p, 0, len, seed) }
}

/// The first offset in `from..to` of the block at `p` that does not hold
/// the pattern of `seed`.
///
/// # Safety
/// `p` is valid for reads of `to` bytes.
unsafe fn bad_in(p: *const u8, from: usize, to: usize, seed: usize) -> Option<usize> {
    let pat = pattern(seed);
    // SAFETY: per the caller.
    let s = unsafe { std::slice::from_raw_parts(p, to) };
    let mut i = from;
    while i < to {
        let n = (to - i).min(PERIOD);
        let phase = i % PERIOD;
        if s[i..i + n] != pat[phase..phase + n] {
            let k = (0..n).find(|&k| s[i + k] != pat[phase + k]).unwrap();
            return Some(i + k);
        }
        i += n;
    }
    None
}

/// The first offset below `len` at `p` that does not hold the pattern.
///
/// # Safety
/// `p` is valid for reads of `len` bytes.
unsafe fn first_bad(p: *const u8, len: usize, seed: usize) -> Option<usize> {
    // SAFETY: per the caller.
    unsafe { bad_in(p, 0, len, seed) }
}

/// Whether the `len` bytes at `p` are all zero.
///
/// # Safety
/// `p` is valid for reads of `len` bytes.
unsafe fn first_nonzero(p: *const u8, len: usize) -> Option<usize> {
    const ZERO: [u8; 4096] = [0; 4096];
    // SAFETY: per the caller.
    let s = unsafe { std::slice::from_raw_parts(p, len) };
    for (c, chunk) in s.chunks(4096).enumerate() {
        if chunk != &ZERO[..chunk.len()] {
            return Some(c * 4096 + chunk.iter().position(|&b| b != 0).unwrap());
        }
    }
    None
}

trait Shape {
    fn area(&self) -> f64;
    fn name(&self) -> String;
}

struct Rect {
    w: f64,
    h: f64,
    label: String,
}

struct Poly {
    points: Vec<(f64, f64)>,
}

impl Shape for Rect {
    fn area(&self) -> f64 {
        self.w * self.h
    }
    fn name(&self) -> String {
        self.label.clone()
    }
}

impl Shape for Poly {
    fn area(&self) -> f64 {
        // Shoelace formula.
        let n = self.points.len();
        let mut a = 0.0;
        for i in 0..n {
            let (x0, y0) = self.points[i];
            let (x1, y1) = self.points[(i + 1) % n];
            a += x0 * y1 - x1 * y0;
        }
        a.abs() / 2.0
    }
    fn name(&self) -> String {
        format!("poly{}", self.points.len())
    }
}

#[test]
fn collections_keep_their_contents() {
    // Vec of integers, grown one push at a time.
    let mut v: Vec<u64> = Vec::new();
    for i in 0..200_000u64 {
        v.push(i * 3 + 1);
    }
    assert!(v.iter().enumerate().all(|(i, &x)| x == i as u64 * 3 + 1));

    // String built piecewise.
    let mut s = String::new();
    for i in 0..20_000 {
        s.push_str(&i.to_string());
        s.push(',');
    }
    let parsed: Vec<usize> = s
        .split(',')
        .filter(|p| !p.is_empty())
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(parsed, (0..20_000).collect::<Vec<_>>());

    // HashMap of owned strings to vectors.
    let mut m: HashMap<String, Vec<u32>> = HashMap::new();
    for i in 0..20_000u32 {
        m.entry(format!("key-{}", i % 5_000)).or_default().push(i);
    }
    assert_eq!(m.len(), 5_000);
    for k in 0..5_000u32 {
        let e = &m[&format!("key-{k}")];
        assert_eq!(e, &[k, k + 5_000, k + 10_000, k + 15_000]);
    }
    // Remove half, then check the rest.
    for k in (0..5_000u32).step_by(2) {
        assert!(m.remove(&format!("key-{k}")).is_some());
    }
    assert_eq!(m.len(), 2_500);
    assert!(m.keys().all(|k| k[4..].parse::<u32>().unwrap() % 2 == 1));

    // BTreeMap with string values, range queries.
    let mut b: BTreeMap<u64, String> = BTreeMap::new();
    for i in (0..50_000u64).rev() {
        b.insert(i * 7 % 50_021, format!("v{i}"));
    }
    assert_eq!(b.len(), 50_000);
    let mut prev = None;
    for (k, val) in b.range(1_000..2_000) {
        assert!(prev < Some(*k));
        prev = Some(*k);
        let i: u64 = val[1..].parse().unwrap();
        assert_eq!(i * 7 % 50_021, *k);
    }
    b.retain(|k, _| k % 3 == 0);
    assert!(b.keys().all(|k| k % 3 == 0));

    // Box<dyn Trait> of different sizes.
    let mut shapes: Vec<Box<dyn Shape>> = Vec::new();
    for i in 0..10_000 {
        if i % 2 == 0 {
            shapes.push(Box::new(Rect {
                w: i as f64,
                h: 2.0,
                label: format!("rect{i}"),
            }));
        } else {
            let n = 3 + i % 40;
            shapes.push(Box::new(Poly {
                points: (0..n)
                    .map(|k| {
                        let t = k as f64 / n as f64 * std::f64::consts::TAU;
                        (t.cos(), t.sin())
                    })
                    .collect(),
            }));
        }
    }
    for (i, sh) in shapes.iter().enumerate() {
        if i % 2 == 0 {
            assert_eq!(sh.area(), i as f64 * 2.0);
            assert_eq!(sh.name(), format!("rect{i}"));
        } else {
            let n = 3 + i % 40;
            assert_eq!(sh.name(), format!("poly{n}"));
            let expect = 0.5 * n as f64 * (std::f64::consts::TAU / n as f64).sin();
            assert!((sh.area() - expect).abs() < 1e-9);
        }
    }
    drop(shapes);

    // VecDeque used as a queue that wraps around many times.
    let mut q: VecDeque<Box<u64>> = VecDeque::with_capacity(4);
    let mut next_in = 0u64;
    let mut next_out = 0u64;
    for round in 0..2_000u64 {
        for _ in 0..(round % 17) {
            q.push_back(Box::new(next_in));
            next_in += 1;
        }
        for _ in 0..(round % 13) {
            if let Some(x) = q.pop_front() {
                assert_eq!(*x, next_out);
                next_out += 1;
            }
        }
    }
    while let Some(x) = q.pop_front() {
        assert_eq!(*x, next_out);
        next_out += 1;
    }
    assert_eq!(next_in, next_out);

    // Nested: Vec<HashMap<u32, Vec<String>>>, cloned and compared.
    let nested: Vec<HashMap<u32, Vec<String>>> = (0..200u32)
        .map(|i| {
            (0..(i % 20))
                .map(|j| (j, (0..j).map(|k| format!("{i}.{j}.{k}")).collect()))
                .collect()
        })
        .collect();
    let copy = nested.clone();
    drop(nested);
    for (i, map) in copy.iter().enumerate() {
        assert_eq!(map.len(), i % 20);
        for (j, strs) in map {
            assert_eq!(strs.len(), *j as usize);
            for (k, st) in strs.iter().enumerate() {
                assert_eq!(st, &format!("{i}.{j}.{k}"));
            }
        }
    }
}

#[test]
fn every_alignment_from_1_byte_to_2_mib() {
    let mut align = 1usize;
    while align <= 2 << 20 {
        // Several sizes around the alignment, all live at once so that
        // overlapping blocks would corrupt each other's patterns.
        let sizes = [
            1,
            align.saturating_sub(1).max(1),
            align,
            align + 1,
            3 * align,
            1000,
            100_000,
        ];
        let mut live = Vec::new();
        for (n, &size) in sizes.iter().enumerate() {
            let layout = Layout::from_size_align(size, align).unwrap();
            for zeroed in [false, true] {
                // SAFETY: the layout has a non-zero size.
                let p = unsafe {
                    if zeroed {
                        std::alloc::alloc_zeroed(layout)
                    } else {
                        std::alloc::alloc(layout)
                    }
                };
                assert!(!p.is_null(), "alloc({size}, align {align}) failed");
                assert_eq!(
                    p as usize % align,
                    0,
                    "alloc({size}, align {align}) returned {p:p}"
                );
                if zeroed {
                    // SAFETY: `p` is a live block of `size` bytes.
                    let nz = unsafe { first_nonzero(p, size) };
                    assert_eq!(nz, None, "alloc_zeroed({size}, align {align}) not zero");
                }
                let seed = align * 16 + n * 2 + zeroed as usize;
                // SAFETY: `p` is a live block of `size` bytes.
                unsafe { fill(p, size, seed) };
                live.push((p, layout, seed));
            }
        }
        for &(p, layout, seed) in &live {
            // SAFETY: `p` is a live block of `layout.size()` bytes.
            let bad = unsafe { first_bad(p, layout.size(), seed) };
            assert_eq!(bad, None, "block {p:p} {layout:?} was overwritten");
        }
        for (p, layout, _) in live {
            // SAFETY: a live block freed once with its layout.
            unsafe { std::alloc::dealloc(p, layout) };
        }
        align *= 2;
    }
}

#[test]
fn realloc_grows_to_64_mib_and_shrinks_back() {
    for align in [1usize, 8, 64, 4096] {
        let seed = align;
        let mut size = 1usize;
        let layout = Layout::from_size_align(size, align).unwrap();
        // SAFETY: non-zero size.
        let mut p = unsafe { std::alloc::alloc(layout) };
        assert!(!p.is_null());
        // SAFETY: `p` holds `size` bytes.
        unsafe { fill(p, size, seed) };
        // Grow by roughly 1.5× then to the next power of two, alternately,
        // so sizes both inside and between classes are visited.
        let top = 64 << 20;
        let mut step = 0;
        while size < top {
            let new = if step % 2 == 0 {
                (size + size / 2 + 1).min(top)
            } else {
                size.next_power_of_two().max(size + 1).min(top)
            };
            step += 1;
            // SAFETY: `p` is live with this layout; `new` is non-zero and
            // does not overflow isize once rounded to `align`.
            let q = unsafe {
                std::alloc::realloc(p, Layout::from_size_align(size, align).unwrap(), new)
            };
            assert!(!q.is_null(), "realloc {size} -> {new} failed");
            assert_eq!(q as usize % align, 0, "realloc lost alignment {align}");
            // The old contents moved along; extend the pattern into the
            // new bytes.
            // SAFETY: `q` holds `new` bytes, the first `size` the old ones.
            unsafe {
                assert_eq!(first_bad(q, size, seed), None, "grow {size} -> {new}");
                fill_range(q, size, new, seed);
            }
            p = q;
            size = new;
        }
        assert_eq!(size, top);
        // SAFETY: `p` holds `size` bytes: the full check once at the top.
        let bad = unsafe { first_bad(p, size, seed) };
        assert_eq!(bad, None);
        while size > 1 {
            let new = size / 3 + 1;
            let new = new.min(size - 1);
            // SAFETY: as above.
            let q = unsafe {
                std::alloc::realloc(p, Layout::from_size_align(size, align).unwrap(), new)
            };
            assert!(!q.is_null(), "realloc {size} -> {new} failed");
            assert_eq!(q as usize % align, 0, "realloc lost alignment {align}");
            // SAFETY: `q` holds `new` bytes.
            let bad = unsafe { first_bad(q, new, seed) };
            assert_eq!(bad, None, "shrink {size} -> {new}");
            p = q;
            size = new;
        }
        // SAFETY: the final live block, freed once with its layout.
        unsafe { std::alloc::dealloc(p, Layout::from_size_align(size, align).unwrap()) };
    }

    // The same through Vec and String.
    let mut v: Vec<u32> = Vec::new();
    let n = 4 << 20; // 16 MiB of u32
    for i in 0..n as u32 {
        v.push(i ^ 0x5555);
    }
    assert!(v.iter().enumerate().all(|(i, &x)| x == i as u32 ^ 0x5555));
    v.truncate(10);
    v.shrink_to_fit();
    assert_eq!(v, (0..10u32).map(|i| i ^ 0x5555).collect::<Vec<_>>());
    let mut s = String::with_capacity(1);
    while s.len() < 1 << 20 {
        s.push_str("hakmem ");
    }
    s.truncate(13);
    s.shrink_to_fit();
    assert_eq!(s, "hakmem hakmem");
}

#[test]
fn zero_sized_types_and_minimal_layouts() {
    // ZST collections never allocate but must work.
    let mut units: Vec<()> = Vec::new();
    for _ in 0..1_000_000 {
        units.push(());
    }
    assert_eq!(units.len(), 1_000_000);
    let set: HashSet<()> = std::iter::repeat_n((), 10).collect();
    assert_eq!(set.len(), 1);
    let boxes: Vec<Box<()>> = (0..1000).map(|_| Box::new(())).collect();
    assert_eq!(boxes.len(), 1000);
    let empty: Vec<[u64; 0]> = vec![[]; 77];
    assert_eq!(empty.len(), 77);
    let mut q: VecDeque<()> = VecDeque::new();
    q.extend(std::iter::repeat_n((), 5));
    assert_eq!(q.len(), 5);
    // Empty, non-ZST collections: capacity 0 and then real allocations.
    let mut v: Vec<u8> = Vec::with_capacity(0);
    v.shrink_to_fit();
    v.push(7);
    assert_eq!(v, [7]);

    // The smallest valid layouts, straight through `GLOBAL`.
    for align in [1usize, 2, 4, 8, 16] {
        let layout = Layout::from_size_align(1, align).unwrap();
        let mut ptrs = Vec::new();
        for i in 0..1000u32 {
            // SAFETY: a valid, non-zero-size layout.
            let p = unsafe { GLOBAL.alloc(layout) };
            assert!(!p.is_null());
            assert_eq!(p as usize % align, 0);
            // SAFETY: `p` holds one byte.
            unsafe { p.write(i as u8) };
            ptrs.push(p);
        }
        let uniq: HashSet<usize> = ptrs.iter().map(|&p| p as usize).collect();
        assert_eq!(uniq.len(), ptrs.len(), "two live blocks at one address");
        for (i, p) in ptrs.into_iter().enumerate() {
            // SAFETY: `p` is live, one byte, freed once with its layout.
            unsafe {
                assert_eq!(p.read(), i as u8);
                GLOBAL.dealloc(p, layout);
            }
        }
    }
}

#[test]
fn impossible_sizes_fail_and_the_program_goes_on() {
    let mut v: Vec<u8> = Vec::new();
    assert!(v.try_reserve(isize::MAX as usize / 2).is_err());
    assert!(v.try_reserve_exact(isize::MAX as usize / 2).is_err());
    // Capacity overflow (more than isize::MAX bytes) fails before hakmem.
    let mut w: Vec<u64> = Vec::new();
    assert!(w.try_reserve(usize::MAX / 4).is_err());
    // 64 TiB: more than this machine's RAM and swap, so the kernel refuses
    // the mapping (vm.overcommit_memory 0 or 2), and beyond half the
    // 47-bit user address space; alloc must return null, not crash.
    for align in [8usize, 4096, 2 << 20] {
        let layout = Layout::from_size_align(1 << 46, align).unwrap();
        // SAFETY: a valid, non-zero-size layout.
        let p = black_box(unsafe { std::alloc::alloc(layout) });
        assert!(p.is_null(), "a 64 TiB allocation succeeded");
        // SAFETY: as above.
        let p = black_box(unsafe { std::alloc::alloc_zeroed(layout) });
        assert!(p.is_null(), "a 64 TiB zeroed allocation succeeded");
    }
    // Growing a live block to an impossible size fails and leaves it intact.
    let layout = Layout::from_size_align(1000, 8).unwrap();
    // SAFETY: non-zero size.
    let p = unsafe { std::alloc::alloc(layout) };
    assert!(!p.is_null());
    // SAFETY: `p` holds 1000 bytes.
    unsafe { fill(p, 1000, 5) };
    // SAFETY: `p` is live with `layout`; the new size is below isize::MAX.
    let q = black_box(unsafe { std::alloc::realloc(p, layout, 1 << 46) });
    assert!(q.is_null(), "a 64 TiB realloc succeeded");
    // SAFETY: after a failed realloc `p` is still live and unchanged.
    unsafe {
        assert_eq!(first_bad(p, 1000, 5), None);
        std::alloc::dealloc(p, layout);
    }
    // And the allocator still works.
    v.extend_from_slice(&[1, 2, 3]);
    v.reserve(1 << 20);
    assert_eq!(v, [1, 2, 3]);
    let big = vec![9u8; 8 << 20];
    assert!(big.iter().all(|&b| b == 9));
}

/// Allocates `layout` zeroed and checks the bytes.
fn zeroed_checked(layout: Layout, what: &str) -> *mut u8 {
    // SAFETY: the layouts used here have non-zero sizes.
    let p = unsafe { std::alloc::alloc_zeroed(layout) };
    assert!(!p.is_null(), "{what}: alloc_zeroed({layout:?}) failed");
    // SAFETY: `p` holds `layout.size()` bytes.
    if let Some(i) = unsafe { first_nonzero(p, layout.size()) } {
        panic!("{what}: alloc_zeroed({layout:?}) = {p:p} has a non-zero byte at {i}");
    }
    p
}

const ZERO_SIZES: [usize; 16] = [
    1,
    8,
    16,
    24,
    48,
    100,
    256,
    257,
    1000,
    4096,
    10_000,
    65_536,
    131_072,
    200_000,
    1 << 20,
    5 << 20,
];

#[test]
fn alloc_zeroed_is_zero_even_on_reused_dirty_memory() {
    for round in 0..3 {
        // (1) Every other block freed: the slabs stay in use and the freed,
        // dirty blocks are what the next allocations of the class get.
        let mut reused_small = 0;
        let mut small = 0;
        for &size in &ZERO_SIZES {
            for align in [8usize, 64, 4096] {
                let layout = Layout::from_size_align(size, align).unwrap();
                let n = if size <= 4096 { 256 } else { 8 };
                let mut blocks = Vec::with_capacity(n);
                for _ in 0..n {
                    // SAFETY: non-zero size.
                    let p = unsafe { std::alloc::alloc(layout) };
                    assert!(!p.is_null());
                    // SAFETY: `p` holds `size` bytes.
                    unsafe { p.write_bytes(0xA5, size) };
                    blocks.push(p);
                }
                let mut freed = HashSet::new();
                for &p in blocks.iter().skip(1).step_by(2) {
                    freed.insert(p as usize);
                    // SAFETY: a live block freed once with its layout.
                    unsafe { std::alloc::dealloc(p, layout) };
                }
                let mut again = Vec::new();
                for _ in 0..freed.len() {
                    let p = zeroed_checked(layout, &format!("round {round}, half freed"));
                    if size <= 4096 {
                        small += 1;
                        reused_small += freed.contains(&(p as usize)) as usize;
                    }
                    again.push(p);
                }
                for p in blocks.iter().step_by(2).chain(again.iter()) {
                    // SAFETY: each block is live and freed once.
                    unsafe { std::alloc::dealloc(*p, layout) };
                }
            }
        }
        // Only meaningful if the dirty blocks were actually handed out again.
        assert!(
            reused_small * 2 > small,
            "round {round}: only {reused_small} of {small} zeroed blocks reused dirty ones"
        );

        // (2) Everything freed: SuperSlabs empty out (one is retained
        // committed), then zeroed allocations of the same shapes.
        let mut dirty = Vec::new();
        for &size in &ZERO_SIZES {
            let layout = Layout::from_size_align(size, 16).unwrap();
            for _ in 0..if size <= 4096 { 64 } else { 2 } {
                // SAFETY: non-zero size.
                let p = unsafe { std::alloc::alloc(layout) };
                assert!(!p.is_null());
                // SAFETY: `p` holds `size` bytes.
                unsafe { p.write_bytes(0x5A, size) };
                dirty.push((p, layout));
            }
        }
        for &(p, layout) in &dirty {
            // SAFETY: live blocks freed once with their layouts.
            unsafe { std::alloc::dealloc(p, layout) };
        }
        let zeroed: Vec<_> = dirty
            .iter()
            .map(|&(_, layout)| {
                let p = zeroed_checked(layout, &format!("round {round}, all freed"));
                // Dirty it again for the next round.
                // SAFETY: `p` holds `layout.size()` bytes.
                unsafe { p.write_bytes(0x3C, layout.size()) };
                (p, layout)
            })
            .collect();
        for (p, layout) in zeroed {
            // SAFETY: live blocks freed once with their layouts.
            unsafe { std::alloc::dealloc(p, layout) };
        }
    }
    // (3) After trim(), which decommits and releases: fresh pages again.
    let dirty: Vec<Vec<u8>> = (0..1000).map(|i| vec![0xEEu8; 16 + i % 700]).collect();
    drop(dirty);
    hakmem_std::trim();
    for i in 0..1000 {
        let v = vec![0u8; 16 + i % 700];
        assert!(v.iter().all(|&b| b == 0));
    }
    // Through the collections API too.
    for _ in 0..100 {
        let mut v = vec![0xFFu8; 3000];
        v[2999] = 1;
        drop(v);
        let z = vec![0u8; 3000];
        assert!(z.iter().all(|&b| b == 0));
        let z64 = vec![0u64; 500];
        assert!(z64.iter().all(|&b| b == 0));
    }
}

#[test]
fn thread_stats_count_a_known_allocation_exactly() {
    // On a thread of its own, so only this code allocates from its heap.
    std::thread::spawn(|| {
        let mut boxes: Vec<Box<[u8; 48]>> = Vec::with_capacity(1000);
        let s0 = hakmem_std::thread_stats().expect("thread has a heap");
        // The heap may be a dead thread's heap, adopted with blocks that
        // other threads hold and may free meanwhile: each such free lowers
        // the count by one. With a fresh heap (the usual case) this is exact.
        let foreign = s0.held_blocks + s0.pending_remote;
        let foreign_bytes = s0.held_bytes;
        for i in 0..1000usize {
            boxes.push(Box::new([i as u8; 48]));
        }
        let s1 = hakmem_std::thread_stats().unwrap();
        let grew = s1.held_blocks as isize - s0.held_blocks as isize;
        assert!(
            grew <= 1000 && grew >= 1000 - foreign as isize,
            "held_blocks grew by {grew} for 1000 Box<[u8; 48]> (foreign {foreign})"
        );
        let grew_bytes = s1.held_bytes as isize - s0.held_bytes as isize;
        // Hardened: 48 bytes and their canary fill a 64-byte block.
        let block = if cfg!(feature = "hardened") { 64 } else { 48 };
        assert!(
            grew_bytes <= 1000 * block && grew_bytes >= 1000 * block - foreign_bytes as isize,
            "held_bytes grew by {grew_bytes} for 1000 × 48 B (foreign {foreign_bytes})"
        );
        assert!(s1.mapped_bytes >= s1.held_bytes);

        // Process-wide, from every heap.
        let g = hakmem_std::stats();
        assert!(g.thread_heaps >= 1);
        assert_eq!(g.unread_heaps, 0, "membarrier refused? {g}");
        assert!(g.process.held_blocks >= 1000, "{g}");
        assert!(g.process.held_bytes >= 48_000, "{g}");
        // Other tests' threads map and unmap while the heaps are read, so
        // the process total is not compared with the sum; this heap's own
        // mappings cannot change during the call (only its owner, this
        // thread, maps or releases them).
        assert!(g.os_mapped_bytes >= s1.mapped_bytes, "{g}");

        for (i, b) in boxes.iter().enumerate() {
            assert!(b.iter().all(|&x| x == i as u8));
        }
        boxes.truncate(0);
        let s2 = hakmem_std::thread_stats().unwrap();
        let back = s2.held_blocks as isize - s0.held_blocks as isize;
        assert!(
            back <= 0 && back >= -(foreign as isize),
            "held_blocks after freeing the 1000: {back} relative to before"
        );
        // Large blocks are counted too.
        let big = vec![1u8; 3 << 20];
        let s3 = hakmem_std::thread_stats().unwrap();
        if foreign == 0 {
            assert_eq!(s3.large_count, s2.large_count + 1);
            assert_eq!(s3.large_bytes, s2.large_bytes + (3 << 20));
            assert_eq!(s3.held_blocks, s2.held_blocks + 1);
        }
        drop(big);
        drop(boxes);
    })
    .join()
    .unwrap();
}
