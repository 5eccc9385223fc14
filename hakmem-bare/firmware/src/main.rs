//! A firmware for QEMU's `lm3s6965evb` (Cortex-M3, 64 KiB of SRAM) whose
//! `#[global_allocator]` is `hakmem_bare::BareHeap`.
//!
//! It gives the heap 32 KiB at start-up and 16 KiB more from the
//! out-of-memory hook, then:
//! 1. churns `Vec`, `String` and `BTreeMap` and checks every value;
//! 2. allocates 48-byte blocks until the heap is exhausted (the hook claims
//!    the extra memory on the way, after refusing a too-small buffer), frees
//!    them, and does it again: the same count, so everything came back;
//! 3. reuses that memory for another size class (512 B), then for one large
//!    block of 30 KiB, and sees a 100 KiB reservation refused cleanly;
//! 4. prints one result line through semihosting and exits with status 0,
//!    or prints `FAIL` and exits with 1 (a panic too).
//!
//! ```sh
//! cd hakmem-bare/firmware && cargo run --release   # QEMU is the runner
//! ```
#![no_std]
#![no_main]

extern crate alloc;

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::alloc::{GlobalAlloc, Layout};
use core::mem::MaybeUninit;
use core::panic::PanicInfo;
use core::ptr;
use core::sync::atomic::{AtomicBool, Ordering};

use cortex_m_rt::entry;
use cortex_m_semihosting::{debug, hprintln};
use hakmem_bare::{BareError, BareHeap, OomCtx, BARE_CONFIG};

const KIB: usize = 1024;

#[global_allocator]
static HEAP: BareHeap = BareHeap::new(BARE_CONFIG, Some(oom_hook));

/// The heap's memory, placed by memory.x at the start of SRAM (16 KiB
/// aligned, so every byte of it can serve SuperSlabs).
#[repr(C, align(16384))]
struct HeapRam {
    /// Given at start-up: two SuperSlabs.
    main: [MaybeUninit<u8>; 32 * KIB],
    /// Given by the out-of-memory hook.
    extra: [MaybeUninit<u8>; 16 * KIB],
}

#[link_section = ".heap_arena"]
static mut HEAP_RAM: HeapRam = HeapRam {
    main: [MaybeUninit::uninit(); 32 * KIB],
    extra: [MaybeUninit::uninit(); 16 * KIB],
};

/// A buffer too small (and unaligned) to hold any block: the hook offers it
/// first, and the heap must refuse it without writing to it.
static mut SCRATCH: [u8; 700] = [0x5A; 700];

static EXTRA_GIVEN: AtomicBool = AtomicBool::new(false);

/// Out of memory: offer the scratch buffer (refused), then the extra 16 KiB
/// once; after that, nothing more.
fn oom_hook(ctx: &mut OomCtx<'_>, layout: Layout) -> bool {
    if EXTRA_GIVEN.swap(true, Ordering::Relaxed) {
        return false;
    }
    // SAFETY: the scratch buffer is refused (too small), so never used; the
    // extra memory is used by nothing but the heap from now on.
    let (scratch, extra) = unsafe {
        (
            ctx.claim((&raw mut SCRATCH).cast(), 700),
            ctx.claim((&raw mut HEAP_RAM.extra).cast(), 16 * KIB),
        )
    };
    hprintln!(
        "oom hook: {} B wanted; scratch buffer: {:?}; extra region: {:?}",
        layout.size(),
        scratch,
        extra
    );
    check(
        scratch == Err(BareError::TooSmall),
        "the scratch buffer is refused",
    );
    extra.is_ok()
}

/// Stops with a `FAIL` line and exit status 1 unless `ok`.
fn check(ok: bool, what: &str) {
    if !ok {
        hprintln!("hakmem-bare firmware: FAIL: {}", what);
        debug::exit(debug::EXIT_FAILURE);
        #[allow(clippy::empty_loop)]
        loop {}
    }
}

/// A small deterministic generator (xorshift32).
struct Rng(u32);

impl Rng {
    fn next(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 17;
        self.0 ^= self.0 << 5;
        self.0
    }
}

/// Allocates `size`-byte blocks until the heap says no, chaining them
/// through their first word (no other memory needed) and filling the rest
/// with a byte of their index. Returns the chain and its length.
fn exhaust(size: usize) -> (*mut u8, usize) {
    let layout = Layout::from_size_align(size, 8).unwrap();
    let mut head: *mut u8 = ptr::null_mut();
    let mut n = 0;
    loop {
        // SAFETY: a non-zero layout.
        let p = unsafe { HEAP.alloc(layout) };
        if p.is_null() {
            return (head, n);
        }
        // SAFETY: a fresh block of `size >= 8` bytes, 8-aligned.
        unsafe {
            p.add(8).write_bytes(n as u8, size - 8);
            p.cast::<*mut u8>().write(head);
        }
        head = p;
        n += 1;
    }
}

/// Checks and frees a chain made by `exhaust`.
fn release(mut head: *mut u8, mut n: usize, size: usize) {
    let layout = Layout::from_size_align(size, 8).unwrap();
    while !head.is_null() {
        n -= 1;
        // SAFETY: a live block of the chain, filled by `exhaust`.
        let next = unsafe {
            let body = core::slice::from_raw_parts(head.add(8), size - 8);
            check(
                body.iter().all(|&b| b == n as u8),
                "a block was overwritten",
            );
            head.cast::<*mut u8>().read()
        };
        // SAFETY: live, allocated with this layout.
        unsafe { HEAP.dealloc(head, layout) };
        head = next;
    }
    check(n == 0, "chain length");
}

fn live_bytes() -> usize {
    HEAP.stats().map_or(usize::MAX, |s| s.live_bytes)
}

#[entry]
fn main() -> ! {
    // SAFETY: HEAP_RAM.main is used by nothing but the heap from now on.
    let r = unsafe { HEAP.init((&raw mut HEAP_RAM.main).cast(), 32 * KIB) };
    check(r.is_ok(), "init");
    // SAFETY: refused (already initialised), so nothing is written.
    let again = unsafe { HEAP.init((&raw mut HEAP_RAM.extra).cast(), 16 * KIB) };
    check(
        again == Err(BareError::AlreadyInitialized),
        "init twice is refused",
    );

    // 1. Vec, String and BTreeMap churn.
    let mut rng = Rng(0x1234_5678);
    let mut map: BTreeMap<u32, String> = BTreeMap::new();
    let mut v: Vec<u32> = Vec::new();
    let mut ops = 0u32;
    for i in 0..4000u32 {
        let k = rng.next() % 160;
        if rng.next().is_multiple_of(3) {
            map.remove(&k);
        } else {
            map.insert(k, format!("value-{k}-{i}"));
        }
        v.push(i);
        if v.len() > 700 {
            check(
                v.iter().enumerate().all(|(j, &x)| x == v[0] + j as u32),
                "vec",
            );
            v.drain(..650);
            v.shrink_to_fit();
        }
        ops += 1;
    }
    for (k, s) in &map {
        check(s.starts_with(&format!("value-{k}-")), "map value");
    }
    let entries = map.len();
    drop(map);
    drop(v);
    check(live_bytes() == 0, "everything freed after the churn");

    // 2. Exhaustion, then recovery.
    let (head, n1) = exhaust(48);
    check(EXTRA_GIVEN.load(Ordering::Relaxed), "the hook ran");
    let st = HEAP.stats().unwrap();
    check(st.region.regions == 2, "the extra region was claimed");
    check(st.failed_allocs >= 1, "an allocation failed");
    release(head, n1, 48);
    check(live_bytes() == 0, "everything freed after exhaustion");
    let (head, n2) = exhaust(48);
    release(head, n2, 48);
    check(n2 == n1, "the same number of blocks after recovery");

    // 3. The same memory for another class, then for a large block.
    let (head, n512) = exhaust(512);
    release(head, n512, 512);
    check(n512 * 512 >= 24 * KIB, "512-byte blocks reuse the memory");
    let mut big: Vec<u8> = Vec::new();
    check(
        big.try_reserve_exact(30 * KIB).is_ok(),
        "a 30 KiB block after small ones",
    );
    big.resize(30 * KIB, 0xC3);
    check(big.iter().all(|&b| b == 0xC3), "large block contents");
    drop(big);
    let mut huge: Vec<u8> = Vec::new();
    check(huge.try_reserve(100 * KIB).is_err(), "100 KiB is refused");
    let s = String::from("still works");
    check(s.len() == 11, "allocation after a refusal");
    drop(s);

    // SAFETY: read-only look at a buffer the heap refused.
    let scratch = unsafe { core::slice::from_raw_parts((&raw const SCRATCH).cast::<u8>(), 700) };
    let scratch_intact = scratch.iter().all(|&b| b == 0x5A);
    check(scratch_intact, "the refused buffer was not written");
    let st = HEAP.stats().unwrap();
    check(
        st.live_bytes == 0 && st.heap.held_blocks == 0,
        "nothing held at the end",
    );
    hprintln!("{}", st);
    hprintln!(
        "hakmem-bare firmware: PASS churn_ops={} map_entries={} blocks48={} blocks48_again={} blocks512={} large_30k=ok peak_live={} peak_mapped={} regions={} oom_hook_calls={} failed_allocs={}",
        ops,
        entries,
        n1,
        n2,
        n512,
        st.peak_live_bytes,
        st.region.peak_mapped_bytes,
        st.region.regions,
        st.oom_hook_calls,
        st.failed_allocs
    );
    debug::exit(debug::EXIT_SUCCESS);
    #[allow(clippy::empty_loop)]
    loop {}
}

#[panic_handler]
fn panic(info: &PanicInfo) -> ! {
    hprintln!("hakmem-bare firmware: FAIL: panic: {}", info);
    debug::exit(debug::EXIT_FAILURE);
    #[allow(clippy::empty_loop)]
    loop {}
}
