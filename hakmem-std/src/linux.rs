//! `LinuxPages`: the page source of hakmem-std (Linux, and macOS and
//! FreeBSD through the same rustix calls), and the only user of
//! `rustix::mm`.
//!
//! Regions are anonymous private mappings. An alignment beyond the page size
//! is obtained by over-mapping `size + align - page` bytes and unmapping the
//! misaligned head and the tail.
//!
//! Decommit must leave pages that read as zero (the core's `CAN_DECOMMIT`
//! contract: a decommitted slab comes back as a fresh one, and
//! `alloc_zeroed` trusts it). On Linux it is `madvise(MADV_DONTNEED)`: the
//! pages go back at once and read as zero afterwards (`MADV_FREE` would
//! keep RSS inflated until the kernel feels memory pressure). macOS and
//! FreeBSD have no `madvise` that zeroes (their `MADV_DONTNEED` and
//! `MADV_FREE` may keep the old bytes), so there the range is mapped again
//! in place with `MAP_FIXED`: the kernel drops the old pages and the range
//! reads as zero, still readable and writable, in one call.
//!
//! Growing a large block without copying (`remap`) uses `mremap`, which
//! only Linux has; elsewhere `CAN_REMAP` is false and the core copies.
//!
//! `contains` is answered by a bitmap with one bit per granule (the
//! SuperSlab size) of the 48-bit address space, itself an anonymous
//! mapping of 16 MiB (at 2 MiB granules; twice that with the start bitmap
//! below; `MAP_NORESERVE` where the system has it, FreeBSD reserves no swap
//! for it anyway) of which only the
//! pages covering used addresses are ever touched. Every region hakmem maps
//! starts on a granule boundary, so the granule of any address inside a
//! region starts inside that region, and a set bit means "the start of this
//! granule is mapped". (User address spaces of x86_64 and aarch64 Linux,
//! macOS and FreeBSD lie below 2^48; a mapping above is refused.)
//!
//! A second bitmap marks the granules where regions start, for
//! `region_start` (the hardened lookup).
//!
//! The page size is the system's (`AT_PAGESZ` from the aux vector on Linux,
//! `sysconf(_SC_PAGESIZE)` elsewhere, read without allocating), never a
//! constant: see [`page_size`].
//!
//! A failed `madvise`, `MAP_FIXED` remap or `munmap` is never swallowed:
//! each is counted ([`LinuxPages::decommit_failures`],
//! [`LinuxPages::unmap_failures`]) and shown by [`stats`](crate::stats).
//!
//! Under ThreadSanitizer (`--cfg hakmem_tsan`, see docs/reliability.md)
//! mappings are made and removed through the C library's `mmap`/`munmap`,
//! which TSan intercepts, instead of rustix's raw system calls, which it
//! cannot see: a region one thread unmapped and another got back from the
//! kernel is then new memory to TSan, not a race with the old owner's
//! writes. `remap` says no there (the core copies instead), since TSan
//! does not follow `mremap`.
//!
//! Invariants:
//! - bit `g` is set iff granule `g`'s first byte lies in a live region;
//! - start bit `g` is set iff a live region starts at granule `g`;
//! - no path calls the C allocator.

use core::mem::size_of;
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

use hakmem_core::PageSource;
#[cfg(hakmem_std_linux)]
use rustix::mm::{madvise, mremap, mremap_fixed, Advice, MremapFlags};
use rustix::mm::{mmap_anonymous, mprotect, MapFlags, MprotectFlags, ProtFlags};

use sys::{map_anonymous, unmap};

const ADDRESS_BITS: u32 = 48;

/// The bitmap's mapping: only touched pages ever cost memory, so no swap is
/// reserved for it where the system would (FreeBSD has no `MAP_NORESERVE`
/// and reserves none).
#[cfg(not(target_os = "freebsd"))]
const BITMAP_FLAGS: MapFlags = MapFlags::NORESERVE;
#[cfg(target_os = "freebsd")]
const BITMAP_FLAGS: MapFlags = MapFlags::empty();

/// Anonymous private read-write mappings: rustix's system calls.
#[cfg(not(hakmem_tsan))]
mod sys {
    use core::ptr;
    use rustix::mm::{mmap_anonymous, munmap, MapFlags, ProtFlags};

    /// A fresh mapping of `len` bytes (`flags` added to `MAP_PRIVATE`).
    pub fn map_anonymous(len: usize, flags: MapFlags) -> Option<*mut u8> {
        // SAFETY: a fresh anonymous mapping aliases nothing.
        unsafe {
            mmap_anonymous(
                ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::PRIVATE | flags,
            )
        }
        .ok()
        .map(|p| p.cast())
    }

    /// `munmap`.
    ///
    /// # Safety
    /// `[start, start + len)` is mapped and nothing uses it.
    pub unsafe fn unmap(start: usize, len: usize) -> rustix::io::Result<()> {
        // SAFETY: per the caller.
        unsafe { munmap(start as *mut _, len) }
    }
}

/// The same through the C library, whose `mmap`/`munmap` ThreadSanitizer
/// intercepts (see the module documentation).
#[cfg(hakmem_tsan)]
mod sys {
    use core::ffi::{c_int, c_void};
    use rustix::mm::MapFlags;

    extern "C" {
        fn mmap(
            addr: *mut c_void,
            len: usize,
            prot: c_int,
            flags: c_int,
            fd: c_int,
            off: i64,
        ) -> *mut c_void;
        fn munmap(addr: *mut c_void, len: usize) -> c_int;
    }

    const PROT_READ_WRITE: c_int = 0x1 | 0x2;
    const MAP_PRIVATE_ANONYMOUS: c_int = 0x02 | 0x20;

    /// A fresh mapping of `len` bytes (`flags` added to `MAP_PRIVATE`).
    pub fn map_anonymous(len: usize, flags: MapFlags) -> Option<*mut u8> {
        let flags = MAP_PRIVATE_ANONYMOUS | flags.bits() as c_int;
        // SAFETY: a fresh anonymous mapping aliases nothing.
        let p = unsafe { mmap(core::ptr::null_mut(), len, PROT_READ_WRITE, flags, -1, 0) };
        (p as isize != -1).then_some(p.cast())
    }

    /// `munmap`.
    ///
    /// # Safety
    /// `[start, start + len)` is mapped and nothing uses it.
    pub unsafe fn unmap(start: usize, len: usize) -> rustix::io::Result<()> {
        // SAFETY: per the caller.
        match unsafe { munmap(start as *mut c_void, len) } {
            0 => Ok(()),
            _ => Err(rustix::io::Errno::INVAL),
        }
    }
}

/// The system's page size in bytes: `AT_PAGESZ` from the aux vector, as the
/// C library read it at start-up (rustix's `param::page_size`, here backed
/// by `sysconf(_SC_PAGESIZE)`, which neither allocates nor makes a system
/// call; on macOS and FreeBSD the same `sysconf`). 16 KiB on Apple silicon.
pub fn page_size() -> usize {
    rustix::param::page_size()
}

/// The page source of hakmem-std: anonymous `mmap` (on Linux, macOS and
/// FreeBSD alike; the name is historical, see the module doc for what
/// differs).
pub struct LinuxPages {
    granule_shift: u32,
    /// The `contains` bitmap, mapped on first use.
    bitmap: AtomicPtr<AtomicUsize>,
    mapped: AtomicUsize,
    /// `madvise(MADV_DONTNEED)` calls the kernel refused.
    decommit_failures: AtomicUsize,
    /// `munmap` calls the kernel refused (the range stays mapped).
    unmap_failures: AtomicUsize,
}

impl LinuxPages {
    /// A page source whose `contains` works at `granule_shift` (the
    /// SuperSlab size of the heaps using it: every region starts on such a
    /// boundary).
    pub const fn new(granule_shift: u32) -> LinuxPages {
        LinuxPages {
            granule_shift,
            bitmap: AtomicPtr::new(ptr::null_mut()),
            mapped: AtomicUsize::new(0),
            decommit_failures: AtomicUsize::new(0),
            unmap_failures: AtomicUsize::new(0),
        }
    }

    /// Bytes currently mapped through this source.
    pub fn mapped_bytes(&self) -> usize {
        self.mapped.load(Ordering::Relaxed)
    }

    /// How many decommits (`madvise(MADV_DONTNEED)` on Linux, a `MAP_FIXED`
    /// remap elsewhere) failed: those pages stayed committed.
    pub fn decommit_failures(&self) -> usize {
        self.decommit_failures.load(Ordering::Relaxed)
    }

    /// How many `munmap` calls failed: that address space stayed mapped.
    pub fn unmap_failures(&self) -> usize {
        self.unmap_failures.load(Ordering::Relaxed)
    }

    /// Counts a failed system call in `counter`.
    fn count<T>(counter: &AtomicUsize, r: rustix::io::Result<T>) {
        if r.is_err() {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// `munmap`, a failure counted.
    ///
    /// # Safety
    /// `[start, start + len)` is mapped by this source and nothing uses it.
    unsafe fn unmap_raw(&self, start: usize, len: usize) {
        // SAFETY: per the caller.
        let r = unsafe { unmap(start, len) };
        Self::count(&self.unmap_failures, r);
    }

    fn bitmap(&self) -> Option<*mut AtomicUsize> {
        let b = self.bitmap.load(Ordering::Acquire);
        if !b.is_null() {
            return Some(b);
        }
        let bytes = self.bitmap_bytes();
        let p = map_anonymous(bytes, BITMAP_FLAGS)?.cast::<AtomicUsize>();
        match self
            .bitmap
            .compare_exchange(ptr::null_mut(), p, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => Some(p),
            Err(winner) => {
                // SAFETY: our mapping was never published.
                unsafe { self.unmap_raw(p as usize, bytes) };
                Some(winner)
            }
        }
    }

    /// Two bitmaps back to back: "granule mapped", then "a region starts
    /// at this granule".
    fn bitmap_bytes(&self) -> usize {
        2 * self.half_bytes()
    }

    fn half_bytes(&self) -> usize {
        let granules = 1usize << (ADDRESS_BITS - self.granule_shift);
        (granules / 8).max(page_size())
    }

    fn bit(&self, bits: *mut AtomicUsize, which: usize, g: usize) -> (&AtomicUsize, usize) {
        let word_bits = usize::BITS as usize;
        // (Only the second half needs the half's size: `contains`, on every
        // remote free, asks the first and should not call `sysconf`.)
        let words = if which == 0 {
            0
        } else {
            self.half_bytes() / size_of::<usize>()
        };
        // SAFETY: `g < 2^(48 - shift)` (callers check addresses against
        // 2^48), so the word lies in the chosen half of the bitmap.
        let w = unsafe { &*bits.add(which * words + g / word_bits) };
        (w, 1usize << (g % word_bits))
    }

    /// Sets or clears the bits of the granules starting inside `[start, start + len)`.
    fn mark(&self, start: usize, len: usize, set: bool) {
        let Some(bits) = self.bitmap() else { return };
        let g0 = start >> self.granule_shift;
        let g1 = (start + len - 1) >> self.granule_shift;
        for g in g0..=g1 {
            for which in [0, 1] {
                if which == 1 && g != g0 {
                    continue;
                }
                let (w, bit) = self.bit(bits, which, g);
                if set {
                    w.fetch_or(bit, Ordering::Release);
                } else {
                    w.fetch_and(!bit, Ordering::Release);
                }
            }
        }
    }

    pub(crate) fn raw_map(len: usize) -> Option<*mut u8> {
        map_anonymous(len, MapFlags::empty())
    }
}

/// Decommits `[ptr, ptr + size)` by mapping a fresh private anonymous
/// range over it with `MAP_FIXED`: the kernel drops the old pages, and the
/// range stays readable and writable and reads as zero. The decommit of
/// macOS and FreeBSD; built on Linux too, where a test runs it. The kernel
/// refuses a misaligned range (`EINVAL`) before touching anything.
///
/// # Safety
/// The range is page-aligned, inside a live read-write private anonymous
/// mapping of ours, and nobody relies on its bytes.
#[cfg_attr(hakmem_std_linux, allow(dead_code))]
unsafe fn map_fresh_in_place(ptr: NonNull<u8>, size: usize) -> rustix::io::Result<()> {
    // SAFETY: per the caller; replacing the range with a mapping of the same
    // kind and protection changes nothing else.
    unsafe {
        mmap_anonymous(
            ptr.as_ptr().cast(),
            size,
            ProtFlags::READ | ProtFlags::WRITE,
            MapFlags::PRIVATE | MapFlags::FIXED,
        )
    }
    .map(|_| ())
}

// SAFETY: regions come from mmap (zeroed, page-aligned, disjoint); the
// alignment is produced by trimming; `contains` reflects exactly the live
// granules (module invariants); all state is atomic, and nothing here calls
// back into an allocator.
unsafe impl PageSource for LinuxPages {
    const MAPS_ZEROED: bool = true;
    const CAN_DECOMMIT: bool = true;

    fn page_size(&self) -> usize {
        page_size()
    }

    fn map(&self, size: usize, align: usize) -> Option<NonNull<u8>> {
        let page = page_size();
        debug_assert!(size % page == 0 && align.is_power_of_two());
        let align = align.max(page);
        let over = size.checked_add(align - page)?;
        let raw = Self::raw_map(over)? as usize;
        let start = (raw + align - 1) & !(align - 1);
        let head = start - raw;
        let tail = over - head - size;
        // SAFETY: the head and tail are parts of our fresh mapping that
        // nothing uses.
        unsafe {
            if head != 0 {
                self.unmap_raw(raw, head);
            }
            if tail != 0 {
                self.unmap_raw(start + size, tail);
            }
        }
        if start + size > 1usize << ADDRESS_BITS || self.bitmap().is_none() {
            // SAFETY: the region is ours and unused.
            unsafe { self.unmap_raw(start, size) };
            return None;
        }
        self.mark(start, size, true);
        self.mapped.fetch_add(size, Ordering::Relaxed);
        NonNull::new(start as *mut u8)
    }

    unsafe fn unmap(&self, ptr: NonNull<u8>, size: usize) {
        self.mark(ptr.as_ptr() as usize, size, false);
        self.mapped.fetch_sub(size, Ordering::Relaxed);
        // SAFETY: per the contract, the region is ours and unused.
        unsafe { self.unmap_raw(ptr.as_ptr() as usize, size) };
    }

    const CAN_REMAP: bool = cfg!(hakmem_std_linux);

    /// `mremap` in place when the address space after the region is free,
    /// else onto a fresh aligned mapping with `MREMAP_FIXED` (the pages
    /// move, nothing is copied). Linux only (`CAN_REMAP` is false elsewhere).
    #[cfg(hakmem_std_linux)]
    unsafe fn remap(
        &self,
        ptr: NonNull<u8>,
        old_size: usize,
        new_size: usize,
        align: usize,
    ) -> Option<NonNull<u8>> {
        if cfg!(hakmem_tsan) {
            return None;
        }
        let old = ptr.as_ptr();
        // SAFETY: per the contract `[old, old + old_size)` is our live
        // region; without MAYMOVE the kernel grows it in place or fails.
        if unsafe { mremap(old.cast(), old_size, new_size, MremapFlags::empty()) }.is_ok() {
            self.mark(old as usize, new_size, true);
            self.mapped
                .fetch_add(new_size - old_size, Ordering::Relaxed);
            return Some(ptr);
        }
        let dst = self.map(new_size, align)?;
        // SAFETY: `dst` is a fresh mapping of `new_size` bytes that nothing
        // uses; moving the old pages over it replaces it, and the old range
        // is unmapped by the kernel.
        let moved = unsafe {
            mremap_fixed(
                old.cast(),
                old_size,
                new_size,
                MremapFlags::MAYMOVE,
                dst.as_ptr().cast(),
            )
        };
        if moved.is_err() {
            // SAFETY: `dst` is ours and unused.
            unsafe { self.unmap(dst, new_size) };
            return None;
        }
        self.mark(old as usize, old_size, false);
        self.mapped.fetch_sub(old_size, Ordering::Relaxed);
        Some(dst)
    }

    const CAN_PROTECT: bool = true;

    /// `mprotect`: no access (a guard page), or read and write.
    unsafe fn protect(&self, ptr: NonNull<u8>, size: usize, access: bool) -> bool {
        let flags = if access {
            MprotectFlags::READ | MprotectFlags::WRITE
        } else {
            MprotectFlags::empty()
        };
        // SAFETY: per the contract, whole pages of one of our regions that
        // nobody accesses while they are inaccessible.
        unsafe { mprotect(ptr.as_ptr().cast(), size, flags) }.is_ok()
    }

    /// `madvise(MADV_DONTNEED)` on Linux.
    #[cfg(hakmem_std_linux)]
    unsafe fn decommit(&self, ptr: NonNull<u8>, size: usize) {
        // SAFETY: per the contract, nobody relies on these bytes.
        let r = unsafe { madvise(ptr.as_ptr().cast(), size, Advice::LinuxDontNeed) };
        Self::count(&self.decommit_failures, r);
    }

    /// Transparent huge pages (2 MiB on x86_64 and most aarch64 kernels)
    /// where the kernel gives them on `madvise` (its `enabled` setting
    /// `madvise` or `always`); elsewhere the advice is refused, harmlessly.
    #[cfg(hakmem_std_linux)]
    const HUGE_PAGE: usize = 2 << 20;

    /// `madvise(MADV_HUGEPAGE)`; a refusal changes nothing (and is no
    /// decommit failure: the pages stay as they were).
    #[cfg(hakmem_std_linux)]
    unsafe fn advise_huge(&self, ptr: NonNull<u8>, size: usize) {
        // SAFETY: per the contract, a range of one of our regions; the
        // advice keeps its bytes.
        let _ = unsafe { madvise(ptr.as_ptr().cast(), size, Advice::LinuxHugepage) };
    }

    /// A fresh anonymous mapping over the range (`map_fresh_in_place`)
    /// on macOS and FreeBSD, whose `madvise` does not promise zeroes.
    #[cfg(not(hakmem_std_linux))]
    unsafe fn decommit(&self, ptr: NonNull<u8>, size: usize) {
        // SAFETY: per the contract.
        let r = unsafe { map_fresh_in_place(ptr, size) };
        Self::count(&self.decommit_failures, r);
    }

    fn contains(&self, addr: usize) -> bool {
        if addr >= 1usize << ADDRESS_BITS {
            return false;
        }
        let bits = self.bitmap.load(Ordering::Acquire);
        if bits.is_null() {
            return false;
        }
        let (w, bit) = self.bit(bits, 0, addr >> self.granule_shift);
        w.load(Ordering::Acquire) & bit != 0
    }

    fn region_start(&self, addr: usize) -> Option<usize> {
        if !self.contains(addr) {
            return None;
        }
        let bits = self.bitmap.load(Ordering::Acquire);
        // Walk back over mapped granules to the one where the region starts.
        let mut g = addr >> self.granule_shift;
        loop {
            let (w, bit) = self.bit(bits, 1, g);
            if w.load(Ordering::Acquire) & bit != 0 {
                return Some(g << self.granule_shift);
            }
            let (m, mbit) = self.bit(bits, 0, g.checked_sub(1)?);
            if m.load(Ordering::Acquire) & mbit == 0 {
                return None;
            }
            g -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_size_is_the_systems() {
        extern "C" {
            fn sysconf(name: i32) -> i64;
        }
        #[cfg(target_os = "linux")]
        const SC_PAGESIZE: i32 = 30;
        #[cfg(target_os = "macos")]
        const SC_PAGESIZE: i32 = 29;
        #[cfg(target_os = "freebsd")]
        const SC_PAGESIZE: i32 = 47;
        // SAFETY: sysconf has no preconditions.
        let sys = unsafe { sysconf(SC_PAGESIZE) } as usize;
        assert_eq!(page_size(), sys);
        assert_eq!(LinuxPages::new(21).page_size(), sys);
    }

    /// A refused `madvise` is counted, not swallowed: a range that does not
    /// start on a page boundary makes the kernel answer EINVAL.
    #[test]
    fn failed_decommit_is_counted() {
        let pages = LinuxPages::new(21);
        let page = page_size();
        let r = pages.map(4 * page, 1 << 21).expect("map");
        // SAFETY: our fresh region; nothing relies on its bytes.
        unsafe { pages.decommit(r, page) };
        assert_eq!(pages.decommit_failures(), 0, "an aligned decommit failed");
        // SAFETY: inside our region, nothing relies on its bytes; the start
        // is misaligned on purpose, so the kernel refuses it and touches
        // nothing (the injected failure).
        unsafe { pages.decommit(r.byte_add(1), page) };
        assert_eq!(pages.decommit_failures(), 1);
        // SAFETY: the region is ours and unused.
        unsafe { pages.unmap(r, 4 * page) };
        assert_eq!(pages.unmap_failures(), 0);
        assert_eq!(pages.mapped_bytes(), 0);
    }

    /// The decommit of macOS and FreeBSD (a `MAP_FIXED` mapping in place),
    /// run here on Linux: the range reads as zero afterwards and stays
    /// writable, the pages around it keep their bytes, and a misaligned
    /// range is refused with nothing touched.
    #[test]
    fn fresh_mapping_in_place_zeroes() {
        let pages = LinuxPages::new(21);
        let page = page_size();
        let r = pages.map(4 * page, 1 << 21).expect("map");
        let p = r.as_ptr();
        // SAFETY: our fresh region of four pages.
        unsafe { p.write_bytes(0xa5, 4 * page) };
        // SAFETY: pages 1 and 2 of our region; nothing relies on them.
        unsafe { map_fresh_in_place(r.byte_add(page), 2 * page) }.expect("MAP_FIXED");
        // SAFETY: all four pages are still mapped and ours.
        let bytes = unsafe { core::slice::from_raw_parts_mut(p, 4 * page) };
        assert!(bytes[..page].iter().all(|&b| b == 0xa5));
        assert!(bytes[page..3 * page].iter().all(|&b| b == 0));
        assert!(bytes[3 * page..].iter().all(|&b| b == 0xa5));
        bytes[page] = 7;
        assert_eq!(bytes[page], 7);
        // SAFETY: inside our region; the misaligned start makes the kernel
        // refuse the call before it changes anything.
        assert!(unsafe { map_fresh_in_place(r.byte_add(1), page) }.is_err());
        assert_eq!(bytes[0], 0xa5);
        // SAFETY: the region is ours and unused.
        unsafe { pages.unmap(r, 4 * page) };
    }
}
