//! A firmware for QEMU's `lm3s6965evb` (Cortex-M3, 64 KiB of SRAM) whose
//! `#[global_allocator]` is `hakmem_bare::BareHeap<InterruptLock>`: the heap
//! masks interrupts while it works, so the SysTick handler allocates too.
//!
//! It paints the stack and measures what `init` used of it, gives the heap
//! 32 KiB at start-up and 16 KiB more from the out-of-memory hook, then:
//! 1. churns `Vec`, `String` and `BTreeMap` and checks every value, while a
//!    SysTick interrupt every 2 000 cycles allocates (a `Vec` it checks and
//!    drops, and a block it keeps until the next tick frees it); the churn
//!    goes on until the handler has allocated 200 times and has at least once
//!    interrupted `main` inside a heap call (with a spin lock, such an
//!    interrupt landing in the locked section would hang for good);
//! 2. allocates 48-byte blocks until the heap is exhausted (the hook claims
//!    the extra memory on the way, after refusing a too-small buffer), frees
//!    them, and does it again: the same count, so everything came back;
//! 3. reuses that memory for another size class (512 B), then for one large
//!    block of 30 KiB, and sees a 100 KiB reservation refused cleanly;
//! 4. prints one result line through semihosting (with `isr_allocs`,
//!    `isr_in_main_heap_call` and `init_stack`) and exits with status 0,
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
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, Ordering};

use cortex_m::peripheral::syst::SystClkSource;
use cortex_m_rt::{entry, exception};
use cortex_m_semihosting::{debug, hprintln};
use hakmem_bare::{BareError, BareHeap, InterruptLock, OomCtx, BARE_CONFIG};

const KIB: usize = 1024;

/// The heap: interrupts are masked while it is locked, so the SysTick
/// handler may allocate.
static HEAP: BareHeap<InterruptLock> = BareHeap::with_lock(BARE_CONFIG, Some(oom_hook));

/// The global allocator: `HEAP`, counting the calls in progress, so the
/// SysTick handler can tell it interrupted one.
struct Counted;

#[global_allocator]
static GLOBAL: Counted = Counted;

/// Heap calls through `GLOBAL` in progress (the handler's own are balanced
/// before it returns).
static IN_HEAP_CALL: AtomicU32 = AtomicU32::new(0);

// SAFETY: forwards every call to `HEAP` unchanged (whose promises hold);
// the counter is all it adds.
unsafe impl GlobalAlloc for Counted {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        IN_HEAP_CALL.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded caller contract.
        let p = unsafe { HEAP.alloc(layout) };
        IN_HEAP_CALL.fetch_sub(1, Ordering::Relaxed);
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        IN_HEAP_CALL.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded caller contract.
        unsafe { HEAP.dealloc(ptr, layout) };
        IN_HEAP_CALL.fetch_sub(1, Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        IN_HEAP_CALL.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded caller contract.
        let p = unsafe { HEAP.realloc(ptr, layout, new_size) };
        IN_HEAP_CALL.fetch_sub(1, Ordering::Relaxed);
        p
    }
}

/// Successful allocations made by the SysTick handler.
static ISR_ALLOCS: AtomicU32 = AtomicU32::new(0);
/// Ticks that found `main` inside a heap call.
static ISR_IN_MAIN: AtomicU32 = AtomicU32::new(0);
/// The block the last tick kept (freed by the next one, or by `main`).
static KEPT: AtomicPtr<u8> = AtomicPtr::new(ptr::null_mut());
const KEPT_LAYOUT: Layout = match Layout::from_size_align(40, 8) {
    Ok(l) => l,
    Err(_) => panic!("layout"),
};

/// Allocates from an interrupt: a `Vec` of a size that changes every tick,
/// filled and checked, and a block kept until the next tick.
#[exception]
fn SysTick() {
    if IN_HEAP_CALL.load(Ordering::Relaxed) != 0 {
        ISR_IN_MAIN.fetch_add(1, Ordering::Relaxed);
    }
    let n = ISR_ALLOCS.load(Ordering::Relaxed);
    let size = 8 + (n as usize % 4) * 40; // 8 to 128 B
    let mut v: Vec<u8> = Vec::new();
    if v.try_reserve_exact(size).is_ok() {
        v.resize(size, n as u8);
        check(v.iter().all(|&b| b == n as u8), "an interrupt's block");
        ISR_ALLOCS.fetch_add(1, Ordering::Relaxed);
    }
    drop(v);
    // SAFETY: a non-zero layout.
    let p = unsafe { GLOBAL.alloc(KEPT_LAYOUT) };
    if !p.is_null() {
        // SAFETY: a fresh block of 40 bytes.
        unsafe { p.write_bytes(0x77, KEPT_LAYOUT.size()) };
        ISR_ALLOCS.fetch_add(1, Ordering::Relaxed);
    }
    free_kept(KEPT.swap(p, Ordering::Relaxed));
}

/// Checks and frees a block a tick kept.
fn free_kept(p: *mut u8) {
    if !p.is_null() {
        // SAFETY: a live 40-byte block a tick filled, now ours alone.
        unsafe {
            let body = core::slice::from_raw_parts(p, KEPT_LAYOUT.size());
            check(body.iter().all(|&b| b == 0x77), "a kept block");
            GLOBAL.dealloc(p, KEPT_LAYOUT);
        }
    }
}

/// A word the stack is painted with before `init`.
const PAINT: u32 = 0xDEAD_BEEF;

extern "C" {
    /// The end of .uninit, after .data and .bss: the lowest address the
    /// stack may reach (cortex-m-rt's linker script; its `__euninit` lands at
    /// the start of RAM here, memory.x inserting `.heap_arena`).
    static mut __euninit: u32;
}

/// The stack pointer.
#[inline(always)]
fn sp() -> usize {
    cortex_m::register::msp::read() as usize
}

/// Paints the free stack below the caller's frame (keeping 128 bytes for
/// this function) down to `__euninit`; returns the painted top.
#[inline(never)]
fn paint_stack() -> usize {
    let top = (sp() - 128) & !3;
    let bottom = (&raw mut __euninit).cast::<u32>();
    let words = (top - bottom as usize) / 4;
    // SAFETY: [__euninit, top) is stack below every live frame (this one's
    // kept clear), used by nothing now; interrupts are not enabled yet.
    unsafe {
        for i in 0..words {
            bottom.add(i).write_volatile(PAINT);
        }
    }
    top
}

/// Bytes of the painted stack below `top` that were written since.
fn stack_used(top: usize) -> usize {
    let bottom = (&raw const __euninit).cast::<u32>();
    let words = (top - bottom as usize) / 4;
    // SAFETY: reads the painted range, which is stack nobody uses now.
    let first = (0..words)
        .find(|&i| unsafe { bottom.add(i).read_volatile() } != PAINT)
        .unwrap_or(words);
    (words - first) * 4
}

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

/// `HEAP.init` in a frame of its own, below the painted top, so that
/// `init_stack` counts all of it.
#[inline(never)]
fn init_heap() -> Result<(), BareError> {
    // SAFETY: HEAP_RAM.main is used by nothing but the heap from now on.
    unsafe { HEAP.init((&raw mut HEAP_RAM.main).cast(), 32 * KIB) }
}

#[entry]
fn main() -> ! {
    let painted = paint_stack();
    let r = init_heap();
    let init_stack = stack_used(painted);
    check(r.is_ok(), "init");
    // SAFETY: refused (already initialised), so nothing is written.
    let again = unsafe { HEAP.init((&raw mut HEAP_RAM.extra).cast(), 16 * KIB) };
    check(
        again == Err(BareError::AlreadyInitialized),
        "init twice is refused",
    );

    // 1. Vec, String and BTreeMap churn, with SysTick allocating.
    let mut cp = cortex_m::Peripherals::take().unwrap();
    cp.SYST.set_clock_source(SystClkSource::External);
    cp.SYST.set_reload(2_000);
    cp.SYST.clear_current();
    cp.SYST.enable_interrupt();
    cp.SYST.enable_counter();
    let mut rng = Rng(0x1234_5678);
    let mut map: BTreeMap<u32, String> = BTreeMap::new();
    let mut v: Vec<u32> = Vec::new();
    let mut ops = 0u32;
    let mut i = 0u32;
    while i < 4000
        || ISR_ALLOCS.load(Ordering::Relaxed) < 200
        || ISR_IN_MAIN.load(Ordering::Relaxed) == 0
    {
        i += 1;
        check(
            i < 1_000_000,
            "SysTick allocated 200 times inside main's heap calls",
        );
        let k = rng.next() % 160;
        if rng.next().is_multiple_of(3) {
            map.remove(&k);
        } else {
            map.insert(k, format!("value-{k}-{i}"));
        }
        v.push(i);
        if v.len() > 120 {
            check(
                v.iter().enumerate().all(|(j, &x)| x == v[0] + j as u32),
                "vec",
            );
            v.drain(..100);
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
    cp.SYST.disable_interrupt();
    cp.SYST.disable_counter();
    cortex_m::peripheral::SCB::clear_pendst();
    cortex_m::asm::isb();
    free_kept(KEPT.swap(ptr::null_mut(), Ordering::Relaxed));
    let isr_allocs = ISR_ALLOCS.load(Ordering::Relaxed);
    let isr_in_main = ISR_IN_MAIN.load(Ordering::Relaxed);
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
        "hakmem-bare firmware: PASS churn_ops={} isr_allocs={} isr_in_main_heap_call={} init_stack={} map_entries={} blocks48={} blocks48_again={} blocks512={} large_30k=ok peak_live={} peak_mapped={} regions={} oom_hook_calls={} failed_allocs={}",
        ops,
        isr_allocs,
        isr_in_main,
        init_stack,
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
