//! `SimPages`: a simulated [`PageSource`] for tests and tools.
//!
//! It simulates an operating system's page mapper (`mmap`/`munmap`/
//! `madvise(MADV_DONTNEED)`) on top of the Rust global allocator: every
//! region comes from `std::alloc::alloc_zeroed` with the requested size and
//! alignment and goes back with `std::alloc::dealloc`. Around that it keeps
//! the books an OS would not, so that tests can catch the heap misusing its
//! page source:
//!
//! - a double, partial or unknown `unmap` panics with the address in hex;
//! - `decommit`/`recommit` outside one live region, or not page aligned,
//!   panics; `decommit` zeroes the range, as `MADV_DONTNEED` does;
//! - unmapped memory is poisoned with [`POISON_BYTE`], and with
//!   [`keep_unmapped`](SimPages::keep_unmapped) it is kept allocated, so a
//!   write through a stale pointer is reported by
//!   [`check_poison`](SimPages::check_poison) and at drop;
//! - faults can be injected ([`fail_nth_map`](SimPages::fail_nth_map),
//!   [`set_byte_budget`](SimPages::set_byte_budget),
//!   [`fail_all_maps`](SimPages::fail_all_maps)): such a `map` returns `None`;
//! - counters ([`SimStats`]) tell how much is mapped, at peak, and how often
//!   each operation ran.
//!
//! Because it allocates from the global allocator (regions and its own
//! bookkeeping alike), a `SimPages` must never back the global allocator.
//!
//! Invariants:
//! - Every live region was returned by `alloc_zeroed` with the layout
//!   `(size, align)` stored beside its pointer, and is freed exactly once,
//!   with that layout, through that provenance-carrying pointer.
//! - Live regions do not overlap; `contains(a)` is answered from the live map
//!   alone, so it is true exactly for addresses inside live regions.
//! - `mapped_bytes` is the sum of the sizes of the live regions, and
//!   `peak_mapped_bytes >= mapped_bytes`.
//! - An address is in the unmapped set only if a region starting there was
//!   unmapped and no region starting there has been mapped since.
//! - A kept (unmapped but retained) region holds [`POISON_BYTE`] in every
//!   byte unless someone wrote to it after unmapping it; kept regions are
//!   freed at drop.
//! - Caller bugs (bad sizes, alignments or ranges, bad unmaps) panic before
//!   any state changes; injected faults and allocator failures make `map`
//!   return `None` and count in `failed_maps`.

use core::fmt;
use core::ptr::{self, NonNull};
use std::alloc::{self, Layout};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::vec::Vec;

use crate::page_source::PageSource;

/// The page size of [`SimPages::new`] and [`SimPages::default`].
pub const DEFAULT_PAGE_SIZE: usize = 4096;

/// The byte unmapped memory is filled with.
pub const POISON_BYTE: u8 = 0xDE;

/// A page of poison, compared against kept regions a page at a time.
static POISON_PAGE: [u8; 4096] = [POISON_BYTE; 4096];

/// Counters of a [`SimPages`], as returned by [`SimPages::stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SimStats {
    /// Bytes in live regions now.
    pub mapped_bytes: usize,
    /// The most bytes ever live at once.
    pub peak_mapped_bytes: usize,
    /// Live regions now.
    pub live_regions: usize,
    /// Calls to `map`, successful and failed.
    pub map_calls: u64,
    /// Successful calls to `unmap`.
    pub unmap_calls: u64,
    /// Calls to `map` that returned `None` (injected faults and allocator
    /// failures).
    pub failed_maps: u64,
    /// Calls to `decommit`.
    pub decommit_calls: u64,
    /// Bytes passed to `decommit`, summed over all calls.
    pub decommitted_bytes: u64,
    /// Successful calls to `remap`.
    pub remap_calls: u64,
}

/// One region obtained from the global allocator.
#[derive(Clone, Copy)]
struct Region {
    /// The pointer `alloc_zeroed` returned, with its provenance.
    ptr: NonNull<u8>,
    size: usize,
    align: usize,
}

impl Region {
    fn start(&self) -> usize {
        self.ptr.as_ptr() as usize
    }

    fn layout(&self) -> Layout {
        Layout::from_size_align(self.size, self.align)
            .expect("SimPages: a region's layout was valid when it was mapped")
    }

    /// Returns the region to the global allocator.
    ///
    /// # Safety
    /// The region is still allocated, and nothing uses it afterwards.
    unsafe fn free(self) {
        let layout = self.layout();
        // SAFETY: `ptr` came from `alloc_zeroed(layout)` (the same size and
        // alignment) and, by the caller's promise, has not been freed yet.
        unsafe { alloc::dealloc(self.ptr.as_ptr(), layout) }
    }

    /// The address of the first byte that is not [`POISON_BYTE`], if any.
    ///
    /// # Safety
    /// The region is still allocated and was filled with poison when it was
    /// unmapped, and nobody writes to it during the call.
    unsafe fn first_unpoisoned(&self) -> Option<usize> {
        // SAFETY: the region is allocated and initialized (poisoned), `size`
        // bytes long, and not written to meanwhile (caller's promise).
        let bytes = unsafe { core::slice::from_raw_parts(self.ptr.as_ptr(), self.size) };
        // Page-sized comparisons use `memcmp`, which keeps Miri fast.
        for (i, chunk) in bytes.chunks(POISON_PAGE.len()).enumerate() {
            if chunk != &POISON_PAGE[..chunk.len()] {
                let at = chunk.iter().position(|&b| b != POISON_BYTE).unwrap_or(0);
                return Some(self.start() + i * POISON_PAGE.len() + at);
            }
        }
        None
    }
}

/// Everything behind the mutex.
#[derive(Default)]
struct State {
    /// Live regions by start address.
    live: BTreeMap<usize, Region>,
    /// Starts of regions unmapped and not mapped again since.
    unmapped: BTreeSet<usize>,
    /// Unmapped regions kept allocated and poisoned (`keep_unmapped`).
    kept: Vec<Region>,
    keep_unmapped: bool,
    /// Fail the map call this many calls from now (1 = the next); 0 = none.
    fail_nth: u64,
    fail_all: bool,
    byte_budget: Option<usize>,
    /// Counters; `live_regions` is filled in by `SimPages::stats`.
    stats: SimStats,
}

// SAFETY: the `NonNull` pointers in `State` are owned handles to heap memory
// from the global allocator, which any thread may use and free; `State` is
// only reached through the `Mutex` in `SimPages`, which serializes access.
unsafe impl Send for State {}

impl State {
    /// The live region containing `addr`, if any.
    fn containing(&self, addr: usize) -> Option<Region> {
        self.live
            .range(..=addr)
            .next_back()
            .map(|(_, r)| *r)
            .filter(|r| addr - r.start() < r.size)
    }

    /// The first byte written after unmap in any kept region.
    fn first_write_after_unmap(&self) -> Option<usize> {
        self.kept.iter().find_map(|r| {
            // SAFETY: kept regions stay allocated until `SimPages` drops and
            // were poisoned when unmapped; we hold the state exclusively.
            // (A concurrent write through a stale pointer would break
            // `unmap`'s contract, which is the bug this looks for.)
            unsafe { r.first_unpoisoned() }
        })
    }
}

/// A simulated page source backed by the global allocator, with checks,
/// fault injection and counters (see the [module docs](self)).
///
/// All methods take `&self`; the bookkeeping sits behind a `Mutex`, so a
/// `SimPages` can be shared between threads.
pub struct SimPages {
    page_size: usize,
    state: Mutex<State>,
}

impl SimPages {
    /// A source with [`DEFAULT_PAGE_SIZE`] pages, no byte budget and no
    /// faults.
    pub fn new() -> Self {
        Self::with_page_size(DEFAULT_PAGE_SIZE)
    }

    /// A source with pages of `page_size` bytes, no byte budget and no
    /// faults.
    ///
    /// # Panics
    /// If `page_size` is not a power of two.
    pub fn with_page_size(page_size: usize) -> Self {
        assert!(
            page_size.is_power_of_two(),
            "SimPages: page size {page_size} is not a power of two"
        );
        SimPages {
            page_size,
            state: Mutex::new(State::default()),
        }
    }

    /// Builder form of [`set_keep_unmapped`](Self::set_keep_unmapped):
    /// `SimPages::new().keep_unmapped(true)`.
    #[must_use]
    pub fn keep_unmapped(self, keep: bool) -> Self {
        self.set_keep_unmapped(keep);
        self
    }

    /// With `keep` true, later unmapped regions stay allocated (and
    /// poisoned) until drop instead of being freed, so that writes after
    /// unmap are caught by [`check_poison`](Self::check_poison) and at drop.
    /// Regions already kept stay kept either way.
    pub fn set_keep_unmapped(&self, keep: bool) {
        self.lock().keep_unmapped = keep;
    }

    /// Makes the `n`-th `map` call from now fail, once (`n == 1`: the next
    /// call). Replaces any pending such failure; `n == 0` cancels it.
    pub fn fail_nth_map(&self, n: u64) {
        self.lock().fail_nth = n;
    }

    /// With `Some(limit)`, every `map` that would bring the mapped bytes
    /// above `limit` fails; `None` lifts the limit. Regions already mapped
    /// are not affected.
    pub fn set_byte_budget(&self, budget: Option<usize>) {
        self.lock().byte_budget = budget;
    }

    /// While `fail` is true, every `map` fails.
    pub fn fail_all_maps(&self, fail: bool) {
        self.lock().fail_all = fail;
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> SimStats {
        let st = self.lock();
        SimStats {
            live_regions: st.live.len(),
            ..st.stats
        }
    }

    /// Bytes in live regions now.
    pub fn mapped_bytes(&self) -> usize {
        self.lock().stats.mapped_bytes
    }

    /// Live regions now.
    pub fn live_regions(&self) -> usize {
        self.lock().live.len()
    }

    /// Checks that no kept region (see
    /// [`keep_unmapped`](Self::keep_unmapped)) was written to after being
    /// unmapped. Call it while no thread uses stale pointers.
    ///
    /// # Panics
    /// With "SimPages: write after unmap at 0x..." naming the first
    /// clobbered byte.
    pub fn check_poison(&self) {
        let bad = self.lock().first_write_after_unmap();
        if let Some(addr) = bad {
            panic!("SimPages: write after unmap at {addr:#x}");
        }
    }

    /// Locks the state. A panic while it was held (a caller bug reported
    /// before any change) leaves it consistent, so poisoning is ignored.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Checks a `decommit`/`recommit` range and returns a pointer to its
    /// start carrying the region's provenance.
    fn check_range(&self, st: &State, op: &str, ptr: NonNull<u8>, size: usize) -> *mut u8 {
        let addr = ptr.as_ptr() as usize;
        let ps = self.page_size;
        assert!(
            addr % ps == 0 && size % ps == 0,
            "SimPages: {op} of {addr:#x} (size {size}) is not page aligned (page size {ps})"
        );
        let region = st.containing(addr).unwrap_or_else(|| {
            panic!("SimPages: {op} of {addr:#x} (size {size}) which is not in a live region")
        });
        let offset = addr - region.start();
        assert!(
            size <= region.size - offset,
            "SimPages: {op} of {addr:#x} (size {size}) runs past the end of the region at \
             {:#x} (size {})",
            region.start(),
            region.size
        );
        region.ptr.as_ptr().wrapping_add(offset)
    }
}

impl Default for SimPages {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for SimPages {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimPages")
            .field("page_size", &self.page_size)
            .field("stats", &self.stats())
            .finish()
    }
}

// SAFETY: regions come from `alloc_zeroed` with the requested size and
// alignment, so they are readable, writable, aligned and zeroed; the global
// allocator never hands out memory that is still allocated, so they overlap
// no live region, and each stays allocated until `unmap` (or drop).
// `contains` consults exactly the live map, which `map` fills and `unmap`
// empties. All state is behind a `Mutex`, so every method works from any
// thread, and nothing here calls back into the allocator using this source
// (the module docs forbid using a `SimPages` for the global allocator).
// `decommit` zeroes its range, matching `CAN_DECOMMIT = true`.
unsafe impl PageSource for SimPages {
    const MAPS_ZEROED: bool = true;
    const CAN_DECOMMIT: bool = true;
    const CAN_REMAP: bool = true;

    /// See [`PageSource::remap`]. Always moves, so the heap's handling of a
    /// moved region is exercised: a new region (subject to the injected
    /// faults like any `map`), the old bytes copied, the old region unmapped
    /// (and poisoned).
    unsafe fn remap(
        &self,
        ptr: NonNull<u8>,
        old_size: usize,
        new_size: usize,
        align: usize,
    ) -> Option<NonNull<u8>> {
        let new = self.map(new_size, align)?;
        // SAFETY: per the contract the old region is live and ours, the new
        // one is fresh, and both are at least `old_size` long.
        unsafe {
            core::ptr::copy_nonoverlapping(ptr.as_ptr(), new.as_ptr(), old_size);
            self.unmap(ptr, old_size);
        }
        self.lock().stats.remap_calls += 1;
        Some(new)
    }

    fn page_size(&self) -> usize {
        self.page_size
    }

    /// See [`PageSource::map`]. Returns `None` on an injected fault or when
    /// the global allocator fails.
    ///
    /// # Panics
    /// If `size` is zero or not a multiple of the page size, or `align` is
    /// not a power of two at least the page size.
    fn map(&self, size: usize, align: usize) -> Option<NonNull<u8>> {
        let ps = self.page_size;
        assert!(
            size != 0 && size % ps == 0,
            "SimPages: map size {size} is not a nonzero multiple of the page size {ps}"
        );
        assert!(
            align.is_power_of_two() && align >= ps,
            "SimPages: map alignment {align} is not a power of two at least the page size {ps}"
        );
        let mut st = self.lock();
        st.stats.map_calls += 1;
        let nth_fault = match st.fail_nth {
            0 => false,
            1 => {
                st.fail_nth = 0;
                true
            }
            n => {
                st.fail_nth = n - 1;
                false
            }
        };
        let over_budget = match st.byte_budget {
            None => false,
            Some(budget) => match st.stats.mapped_bytes.checked_add(size) {
                None => true,
                Some(total) => total > budget,
            },
        };
        let ptr = if nth_fault || st.fail_all || over_budget {
            None
        } else {
            Layout::from_size_align(size, align)
                .ok()
                .and_then(|layout| {
                    // SAFETY: `layout` has a nonzero size (checked above).
                    NonNull::new(unsafe { alloc::alloc_zeroed(layout) })
                })
        };
        let Some(ptr) = ptr else {
            st.stats.failed_maps += 1;
            return None;
        };
        let region = Region { ptr, size, align };
        let start = region.start();
        st.live.insert(start, region);
        // The global allocator may reuse the address of a freed region.
        st.unmapped.remove(&start);
        st.stats.mapped_bytes += size;
        st.stats.peak_mapped_bytes = st.stats.peak_mapped_bytes.max(st.stats.mapped_bytes);
        Some(ptr)
    }

    /// See [`PageSource::unmap`]. Poisons the region with [`POISON_BYTE`],
    /// then frees it (or keeps it, see
    /// [`keep_unmapped`](SimPages::keep_unmapped)).
    ///
    /// # Panics
    /// On a double unmap, a partial unmap (wrong size, or `ptr` inside a
    /// live region but not its start), or an unmap of memory never mapped
    /// here; the message names the address in hex.
    unsafe fn unmap(&self, ptr: NonNull<u8>, size: usize) {
        let addr = ptr.as_ptr() as usize;
        let mut st = self.lock();
        let region = match st.live.get(&addr) {
            Some(r) if r.size == size => *r,
            Some(r) => panic!(
                "SimPages: partial unmap of {addr:#x} (size {size}, region is {})",
                r.size
            ),
            None => match st.containing(addr) {
                Some(r) => panic!(
                    "SimPages: partial unmap of {addr:#x} (size {size}, inside the region at \
                     {:#x} of size {})",
                    r.start(),
                    r.size
                ),
                None if st.unmapped.contains(&addr) => {
                    panic!("SimPages: double unmap of {addr:#x} (size {size})")
                }
                None => panic!("SimPages: unmap of {addr:#x} which was never mapped"),
            },
        };
        st.live.remove(&addr);
        st.unmapped.insert(addr);
        st.stats.mapped_bytes -= size;
        st.stats.unmap_calls += 1;
        // SAFETY: the region was live, so it is allocated with `size` bytes
        // behind `region.ptr`; the caller promises nobody uses it any more,
        // and we hold the lock, so no other call of ours touches it.
        unsafe { ptr::write_bytes(region.ptr.as_ptr(), POISON_BYTE, size) };
        if st.keep_unmapped {
            st.kept.push(region);
        } else {
            // SAFETY: the region is allocated (it was live) and has just left
            // the live map, so it is freed only here; the caller promises
            // nothing uses it afterwards.
            unsafe { region.free() };
        }
    }

    /// See [`PageSource::decommit`]. Zeroes the range (like
    /// `MADV_DONTNEED`) and counts it.
    ///
    /// # Panics
    /// If the range is not page aligned or not inside one live region.
    unsafe fn decommit(&self, ptr: NonNull<u8>, size: usize) {
        let mut st = self.lock();
        let start = self.check_range(&st, "decommit", ptr, size);
        st.stats.decommit_calls += 1;
        st.stats.decommitted_bytes += size as u64;
        // SAFETY: `check_range` verified that `[start, start + size)` lies in
        // one live (allocated) region and that `start` carries its
        // provenance; the caller promises nobody relies on those bytes, and
        // the lock keeps the region from being unmapped meanwhile.
        unsafe { ptr::write_bytes(start, 0, size) };
    }

    /// See [`PageSource::recommit`]. Always succeeds.
    ///
    /// # Panics
    /// If the range is not page aligned or not inside one live region.
    unsafe fn recommit(&self, ptr: NonNull<u8>, size: usize) -> bool {
        let st = self.lock();
        self.check_range(&st, "recommit", ptr, size);
        true
    }

    fn contains(&self, addr: usize) -> bool {
        self.lock().containing(addr).is_some()
    }

    fn region_start(&self, addr: usize) -> Option<usize> {
        self.lock().containing(addr).map(|r| r.start())
    }
}

impl Drop for SimPages {
    /// Frees all regions, live ones included (tests may leak on purpose).
    ///
    /// # Panics
    /// Like [`check_poison`](SimPages::check_poison) if a kept region was
    /// written to after unmap (checked only when not already panicking).
    fn drop(&mut self) {
        let st = self.state.get_mut().unwrap_or_else(PoisonError::into_inner);
        let bad = if std::thread::panicking() {
            None
        } else {
            st.first_write_after_unmap()
        };
        for region in core::mem::take(&mut st.live).into_values() {
            // SAFETY: live regions are allocated, and nobody may use them
            // once their source is gone.
            unsafe { region.free() };
        }
        for region in st.kept.drain(..) {
            // SAFETY: kept regions stay allocated until now and were unmapped,
            // so nobody uses them.
            unsafe { region.free() };
        }
        if let Some(addr) = bad {
            panic!("SimPages: write after unmap at {addr:#x}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: usize = DEFAULT_PAGE_SIZE;

    fn bytes<'a>(p: NonNull<u8>, len: usize) -> &'a [u8] {
        // SAFETY: the tests only pass ranges of live regions, and nothing
        // writes to them while the slice is in use.
        unsafe { core::slice::from_raw_parts(p.as_ptr(), len) }
    }

    #[test]
    fn is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<SimPages>();
    }

    #[test]
    fn map_returns_aligned_zeroed_memory() {
        let s = SimPages::new();
        assert_eq!(s.page_size(), PAGE);
        for (size, align) in [(PAGE, PAGE), (3 * PAGE, PAGE), (PAGE, 16 * PAGE)] {
            let p = s.map(size, align).expect("map");
            assert_eq!(p.as_ptr() as usize % align, 0);
            assert!(bytes(p, size).iter().all(|&b| b == 0));
            // SAFETY: `p` is a live region of `size` bytes.
            unsafe { ptr::write_bytes(p.as_ptr(), 0xAB, size) };
            // SAFETY: `p`, `size` are one live region; not used afterwards.
            unsafe { s.unmap(p, size) };
        }
        assert_eq!(s.live_regions(), 0);
    }

    #[test]
    fn custom_page_size() {
        let s = SimPages::with_page_size(16 * 1024);
        assert_eq!(s.page_size(), 16 * 1024);
        let p = s.map(16 * 1024, 16 * 1024).expect("map");
        assert_eq!(p.as_ptr() as usize % (16 * 1024), 0);
        // SAFETY: one live region, not used afterwards.
        unsafe { s.unmap(p, 16 * 1024) };
    }

    #[test]
    fn counters() {
        let s = SimPages::default();
        assert_eq!(s.stats(), SimStats::default());
        let a = s.map(2 * PAGE, PAGE).unwrap();
        let b = s.map(PAGE, PAGE).unwrap();
        assert_eq!(s.mapped_bytes(), 3 * PAGE);
        assert_eq!(s.live_regions(), 2);
        // SAFETY: one live region, not used afterwards.
        unsafe { s.unmap(a, 2 * PAGE) };
        s.fail_all_maps(true);
        assert!(s.map(PAGE, PAGE).is_none());
        s.fail_all_maps(false);
        // SAFETY: `b` is live; the page lies inside it.
        unsafe { s.decommit(b, PAGE) };
        assert_eq!(
            s.stats(),
            SimStats {
                mapped_bytes: PAGE,
                peak_mapped_bytes: 3 * PAGE,
                live_regions: 1,
                map_calls: 3,
                unmap_calls: 1,
                failed_maps: 1,
                decommit_calls: 1,
                decommitted_bytes: PAGE as u64,
                remap_calls: 0,
            }
        );
        // SAFETY: one live region, not used afterwards.
        unsafe { s.unmap(b, PAGE) };
        assert_eq!(s.mapped_bytes(), 0);
        assert_eq!(s.stats().peak_mapped_bytes, 3 * PAGE);
    }

    #[test]
    #[should_panic(expected = "double unmap")]
    fn double_unmap_panics() {
        let s = SimPages::new();
        let p = s.map(PAGE, PAGE).unwrap();
        // SAFETY: one live region, not used afterwards.
        unsafe { s.unmap(p, PAGE) };
        // SAFETY: deliberately broken; `unmap` panics before touching `p`.
        unsafe { s.unmap(p, PAGE) };
    }

    #[test]
    #[should_panic(expected = "partial unmap")]
    fn partial_unmap_wrong_size_panics() {
        let s = SimPages::new();
        let p = s.map(2 * PAGE, PAGE).unwrap();
        // SAFETY: deliberately broken; `unmap` panics before touching `p`.
        unsafe { s.unmap(p, PAGE) };
    }

    #[test]
    #[should_panic(expected = "partial unmap")]
    fn partial_unmap_interior_panics() {
        let s = SimPages::new();
        let p = s.map(2 * PAGE, PAGE).unwrap();
        // SAFETY: `PAGE` is inside the 2-page region.
        let q = unsafe { NonNull::new_unchecked(p.as_ptr().add(PAGE)) };
        // SAFETY: deliberately broken; `unmap` panics before touching `q`.
        unsafe { s.unmap(q, PAGE) };
    }

    #[test]
    #[should_panic(expected = "which was never mapped")]
    fn unknown_unmap_panics() {
        let s = SimPages::new();
        let mut local = [0u8; 16];
        // SAFETY: deliberately broken; `unmap` panics before touching it.
        unsafe { s.unmap(NonNull::from(&mut local).cast(), PAGE) };
    }

    #[test]
    fn unmap_message_names_the_address() {
        let s = SimPages::new();
        let p = s.map(PAGE, PAGE).unwrap();
        // SAFETY: one live region, not used afterwards.
        unsafe { s.unmap(p, PAGE) };
        let err = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            // SAFETY: deliberately broken; `unmap` panics first.
            unsafe { s.unmap(p, PAGE) }
        }))
        .unwrap_err();
        let msg = err.downcast_ref::<std::string::String>().unwrap();
        let expected = std::format!("SimPages: double unmap of {:#x}", p.as_ptr() as usize);
        assert!(msg.starts_with(&expected), "{msg}");
        // Still usable after a reported bug.
        let q = s.map(PAGE, PAGE).unwrap();
        // SAFETY: one live region, not used afterwards.
        unsafe { s.unmap(q, PAGE) };
    }

    #[test]
    fn remapping_a_reused_address_is_not_a_double_unmap() {
        let s = SimPages::new();
        for _ in 0..8 {
            let p = s.map(PAGE, PAGE).unwrap();
            // SAFETY: one live region, not used afterwards.
            unsafe { s.unmap(p, PAGE) };
        }
        assert_eq!(s.stats().unmap_calls, 8);
    }

    #[test]
    #[should_panic(expected = "not a nonzero multiple of the page size")]
    fn map_zero_size_panics() {
        let _ = SimPages::new().map(0, PAGE);
    }

    #[test]
    #[should_panic(expected = "not a nonzero multiple of the page size")]
    fn map_unaligned_size_panics() {
        let _ = SimPages::new().map(PAGE + 1, PAGE);
    }

    #[test]
    #[should_panic(expected = "not a power of two at least the page size")]
    fn map_small_align_panics() {
        let _ = SimPages::new().map(PAGE, 64);
    }

    #[test]
    #[should_panic(expected = "not a power of two at least the page size")]
    fn map_non_power_of_two_align_panics() {
        let _ = SimPages::new().map(PAGE, 3 * PAGE);
    }

    #[test]
    fn fail_nth_map_fails_exactly_that_call() {
        let s = SimPages::new();
        s.fail_nth_map(3);
        let a = s.map(PAGE, PAGE);
        let b = s.map(PAGE, PAGE);
        let c = s.map(PAGE, PAGE);
        let d = s.map(PAGE, PAGE);
        let e = s.map(PAGE, PAGE);
        assert!(a.is_some() && b.is_some() && d.is_some() && e.is_some());
        assert!(c.is_none());
        s.fail_nth_map(1);
        assert!(s.map(PAGE, PAGE).is_none());
        assert!(s.map(PAGE, PAGE).is_some());
        s.fail_nth_map(2);
        s.fail_nth_map(0);
        assert!(s.map(PAGE, PAGE).is_some());
        assert!(s.map(PAGE, PAGE).is_some());
        let st = s.stats();
        assert_eq!(st.map_calls, 9);
        assert_eq!(st.failed_maps, 2);
        assert_eq!(st.live_regions, 7);
        // The live regions are freed at drop, without a panic.
    }

    #[test]
    fn byte_budget() {
        let s = SimPages::new();
        s.set_byte_budget(Some(3 * PAGE));
        let a = s.map(2 * PAGE, PAGE).unwrap();
        assert!(s.map(2 * PAGE, PAGE).is_none());
        let b = s.map(PAGE, PAGE).unwrap();
        assert!(s.map(PAGE, PAGE).is_none());
        assert_eq!(s.mapped_bytes(), 3 * PAGE);
        // SAFETY: one live region, not used afterwards.
        unsafe { s.unmap(a, 2 * PAGE) };
        let c = s.map(2 * PAGE, PAGE).unwrap();
        assert!(s.map(PAGE, PAGE).is_none());
        s.set_byte_budget(None);
        let d = s.map(PAGE, PAGE).unwrap();
        assert_eq!(s.stats().failed_maps, 3);
        // SAFETY: each is one live region, not used afterwards.
        unsafe {
            s.unmap(b, PAGE);
            s.unmap(c, 2 * PAGE);
            s.unmap(d, PAGE);
        }
    }

    #[test]
    fn fail_all_maps() {
        let s = SimPages::new();
        s.fail_all_maps(true);
        assert!(s.map(PAGE, PAGE).is_none());
        assert!(s.map(PAGE, PAGE).is_none());
        s.fail_all_maps(false);
        let p = s.map(PAGE, PAGE).unwrap();
        assert_eq!(s.stats().failed_maps, 2);
        assert_eq!(s.stats().map_calls, 3);
        // SAFETY: one live region, not used afterwards.
        unsafe { s.unmap(p, PAGE) };
    }

    #[test]
    fn contains() {
        let s = SimPages::new();
        let p = s.map(2 * PAGE, PAGE).unwrap();
        let a = p.as_ptr() as usize;
        assert!(s.contains(a));
        assert!(s.contains(a + PAGE));
        assert!(s.contains(a + 2 * PAGE - 1));
        assert!(!s.contains(a + 2 * PAGE));
        assert!(!s.contains(a - 1));
        assert!(!s.contains(0));
        assert!(!s.contains(usize::MAX));
        // SAFETY: one live region, not used afterwards.
        unsafe { s.unmap(p, 2 * PAGE) };
        assert!(!s.contains(a));
    }

    #[test]
    fn decommit_zeroes() {
        let s = SimPages::new();
        let p = s.map(3 * PAGE, PAGE).unwrap();
        // SAFETY: `p` is a live region of 3 pages.
        unsafe { ptr::write_bytes(p.as_ptr(), 0x5A, 3 * PAGE) };
        // SAFETY: the middle page lies inside the live region.
        let mid = unsafe { NonNull::new_unchecked(p.as_ptr().add(PAGE)) };
        // SAFETY: page aligned, inside one live region, contents unneeded.
        unsafe { s.decommit(mid, PAGE) };
        let all = bytes(p, 3 * PAGE);
        assert!(all[..PAGE].iter().all(|&b| b == 0x5A));
        assert!(all[PAGE..2 * PAGE].iter().all(|&b| b == 0));
        assert!(all[2 * PAGE..].iter().all(|&b| b == 0x5A));
        // SAFETY: same range rules.
        assert!(unsafe { s.recommit(mid, PAGE) });
        // SAFETY: the whole region, page aligned.
        unsafe { s.decommit(p, 3 * PAGE) };
        assert!(bytes(p, 3 * PAGE).iter().all(|&b| b == 0));
        let st = s.stats();
        assert_eq!(st.decommit_calls, 2);
        assert_eq!(st.decommitted_bytes, 4 * PAGE as u64);
        // SAFETY: one live region, not used afterwards.
        unsafe { s.unmap(p, 3 * PAGE) };
    }

    #[test]
    #[should_panic(expected = "not page aligned")]
    fn decommit_unaligned_panics() {
        let s = SimPages::new();
        let p = s.map(2 * PAGE, PAGE).unwrap();
        // SAFETY: deliberately broken; `decommit` panics first.
        unsafe { s.decommit(p, PAGE / 2) };
    }

    #[test]
    #[should_panic(expected = "runs past the end")]
    fn decommit_past_region_panics() {
        let s = SimPages::new();
        let p = s.map(2 * PAGE, PAGE).unwrap();
        // SAFETY: deliberately broken; `decommit` panics first.
        unsafe { s.decommit(p, 3 * PAGE) };
    }

    #[test]
    #[should_panic(expected = "not in a live region")]
    fn recommit_unmapped_panics() {
        let s = SimPages::new();
        let p = s.map(PAGE, PAGE).unwrap();
        // SAFETY: one live region, not used afterwards.
        unsafe { s.unmap(p, PAGE) };
        // SAFETY: deliberately broken; `recommit` panics first.
        let _ = unsafe { s.recommit(p, PAGE) };
    }

    #[test]
    fn keep_unmapped_poisons_and_passes_when_untouched() {
        let s = SimPages::new().keep_unmapped(true);
        let p = s.map(2 * PAGE, PAGE).unwrap();
        // SAFETY: one live region, not used afterwards (except to look).
        unsafe { s.unmap(p, 2 * PAGE) };
        // Kept regions stay allocated, so reading them is fine.
        assert!(bytes(p, 2 * PAGE).iter().all(|&b| b == POISON_BYTE));
        assert!(!s.contains(p.as_ptr() as usize));
        assert_eq!(s.mapped_bytes(), 0);
        s.check_poison();
    }

    #[test]
    #[should_panic(expected = "write after unmap")]
    fn keep_unmapped_detects_write_after_unmap() {
        let s = SimPages::new();
        s.set_keep_unmapped(true);
        let p = s.map(2 * PAGE, PAGE).unwrap();
        // SAFETY: one live region, not used afterwards (but for the bug).
        unsafe { s.unmap(p, 2 * PAGE) };
        // SAFETY: the kept region is still allocated; this is the bug.
        unsafe { p.as_ptr().add(PAGE + 8).write(1) };
        s.check_poison();
    }

    #[test]
    fn write_after_unmap_message_names_the_byte() {
        let s = SimPages::new().keep_unmapped(true);
        let p = s.map(2 * PAGE, PAGE).unwrap();
        // SAFETY: one live region, not used afterwards (but for the bug).
        unsafe { s.unmap(p, 2 * PAGE) };
        // SAFETY: the kept region is still allocated; this is the bug.
        unsafe { p.as_ptr().add(PAGE + 8).write(1) };
        let err = std::panic::catch_unwind(|| s.check_poison()).unwrap_err();
        let msg = err.downcast_ref::<std::string::String>().unwrap();
        let at = p.as_ptr() as usize + PAGE + 8;
        assert_eq!(*msg, std::format!("SimPages: write after unmap at {at:#x}"));
        // Repair it, so that drop is quiet.
        // SAFETY: the kept region is still allocated.
        unsafe { p.as_ptr().add(PAGE + 8).write(POISON_BYTE) };
    }

    #[test]
    #[should_panic(expected = "write after unmap")]
    fn drop_detects_write_after_unmap() {
        let s = SimPages::new().keep_unmapped(true);
        let p = s.map(PAGE, PAGE).unwrap();
        // SAFETY: one live region, not used afterwards (but for the bug).
        unsafe { s.unmap(p, PAGE) };
        // SAFETY: the kept region is still allocated; this is the bug.
        unsafe { p.as_ptr().write(0) };
        drop(s);
    }

    #[test]
    fn drop_frees_leaked_regions_quietly() {
        let s = SimPages::new();
        let _ = s.map(PAGE, PAGE).unwrap();
        let _ = s.map(2 * PAGE, 4 * PAGE).unwrap();
        assert_eq!(s.live_regions(), 2);
        drop(s);
    }

    #[test]
    fn shared_between_threads() {
        let s = SimPages::new();
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for _ in 0..4 {
                        let p = s.map(PAGE, PAGE).unwrap();
                        assert!(s.contains(p.as_ptr() as usize));
                        // SAFETY: one live region, not used afterwards.
                        unsafe { s.unmap(p, PAGE) };
                    }
                });
            }
        });
        let st = s.stats();
        assert_eq!((st.map_calls, st.unmap_calls, st.live_regions), (16, 16, 0));
        assert!(st.peak_mapped_bytes >= PAGE);
    }
}
