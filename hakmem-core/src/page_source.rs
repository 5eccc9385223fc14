//! The platform contract: where SuperSlabs and large blocks come from.
//!
//! A [`PageSource`] hands out aligned regions and takes them back, in the
//! spirit of snmalloc's PAL. The heap never touches the platform any other
//! way, which is what lets one core serve Linux (`LinuxPages`), bare metal
//! (`FixedRegion`) and tests (`SimPages`, feature `sim`).
//!
//! Invariants:
//! - A region returned by `map` is live until passed, whole, to `unmap`.
//! - `contains(a)` is true exactly for addresses inside live regions.
//! - A failed `map` is an ordinary outcome (`None`), never a panic.

use core::ptr::NonNull;

/// A provider of aligned memory regions.
///
/// # Safety
///
/// Implementors promise, and the heap relies on it without checking:
/// - `map(size, align)` returns either `None` or a pointer to `size` bytes,
///   readable and writable, aligned to `align`, overlapping no other live
///   region, valid until `unmap` is called on it;
/// - if [`MAPS_ZEROED`](Self::MAPS_ZEROED) is true, the bytes are zero;
/// - `contains(addr)` is true if and only if `addr` lies inside a live region
///   returned by this source (the heap dereferences region headers only after
///   `contains` said yes, so a wrong `true` means a wild read);
/// - every method may be called from any thread through `&self` when the type
///   is `Sync`, and no method calls back into the allocator that uses it.
pub unsafe trait PageSource {
    /// Fresh regions read as zero (lets `alloc_zeroed` skip clearing them).
    const MAPS_ZEROED: bool;
    /// `decommit` really releases memory (and the pages read as zero after
    /// it, as with `MADV_DONTNEED`).
    const CAN_DECOMMIT: bool = false;

    /// The granularity of `map` sizes and of `decommit`, a power of two.
    fn page_size(&self) -> usize;

    /// Maps `size` bytes (a multiple of [`page_size`](Self::page_size))
    /// aligned to `align` (a power of two, at least the page size).
    /// Returns `None` when no memory is available.
    fn map(&self, size: usize, align: usize) -> Option<NonNull<u8>>;

    /// Returns a region to the source.
    ///
    /// # Safety
    /// `ptr` and `size` are exactly those of one live region from `map` on
    /// this source, and nothing uses the region afterwards.
    unsafe fn unmap(&self, ptr: NonNull<u8>, size: usize);

    /// Tells the source that the pages of `[ptr, ptr + size)` are not needed
    /// for now; their contents are lost (they read as zero when
    /// [`CAN_DECOMMIT`](Self::CAN_DECOMMIT) holds). The default does nothing.
    ///
    /// # Safety
    /// The range is page-aligned and lies inside one live region whose bytes
    /// there nobody relies on.
    unsafe fn decommit(&self, ptr: NonNull<u8>, size: usize) {
        let _ = (ptr, size);
    }

    /// Makes decommitted pages usable again. Returns `false` when the memory
    /// cannot be had; the default succeeds at once.
    ///
    /// # Safety
    /// Same range rules as [`decommit`](Self::decommit).
    unsafe fn recommit(&self, ptr: NonNull<u8>, size: usize) -> bool {
        let _ = (ptr, size);
        true
    }

    /// Whether [`remap`](Self::remap) can move or grow a region without
    /// copying its bytes.
    const CAN_REMAP: bool = false;

    /// Grows the region `[ptr, ptr + old_size)` to `new_size` bytes aligned
    /// to `align`, in place or elsewhere, keeping its first `old_size` bytes
    /// (the pages move; nothing is copied). `Some(start)`: the old region is
    /// gone and the new one is live. `None`: nothing changed. The default
    /// cannot.
    ///
    /// # Safety
    /// `ptr` and `old_size` are exactly a live region of this source;
    /// `new_size > old_size` is a multiple of the page size.
    unsafe fn remap(
        &self,
        ptr: NonNull<u8>,
        old_size: usize,
        new_size: usize,
        align: usize,
    ) -> Option<NonNull<u8>> {
        let _ = (ptr, old_size, new_size, align);
        None
    }

    /// Shrinks the live region `[ptr, ptr + old_size)` to its first
    /// `new_size` bytes in place, giving the rest back. `true`: done (the
    /// region is now `new_size` bytes); `false`: nothing changed. The
    /// default cannot.
    ///
    /// # Safety
    /// `ptr` and `old_size` are exactly a live region of this source;
    /// `0 < new_size < old_size` is a multiple of the page size, and nothing
    /// uses the bytes past `new_size`.
    unsafe fn shrink(&self, ptr: NonNull<u8>, old_size: usize, new_size: usize) -> bool {
        let _ = (ptr, old_size, new_size);
        false
    }

    /// Whether [`protect`](Self::protect) works (the `hardened` build then
    /// puts a guard page after each large block).
    const CAN_PROTECT: bool = false;

    /// Makes the pages `[ptr, ptr + size)` fault on any access (`access`
    /// false: a guard page, never committed) or usable again (`true`).
    /// `true`: done; `false`: nothing changed. Unmapping a region drops its
    /// guard pages with it. The default cannot.
    ///
    /// # Safety
    /// The range is page-aligned and lies inside one live region; nobody
    /// accesses a page made inaccessible.
    unsafe fn protect(&self, ptr: NonNull<u8>, size: usize, access: bool) -> bool {
        let _ = (ptr, size, access);
        false
    }

    /// Bytes of the source's huge pages where it can back a region with
    /// them on request ([`advise_huge`](Self::advise_huge)); 0: it cannot.
    const HUGE_PAGE: usize = 0;

    /// Asks the source to back the range with huge pages as it is touched
    /// (fewer page faults for a large block filled at once; each huge page
    /// is committed whole). A hint: nothing else changes, and `decommit`
    /// still gives the pages back. The default does nothing.
    ///
    /// # Safety
    /// Same range rules as [`decommit`](Self::decommit), bytes kept.
    unsafe fn advise_huge(&self, ptr: NonNull<u8>, size: usize) {
        let _ = (ptr, size);
    }

    /// Whether `addr` lies inside a live region of this source. The heap
    /// asks only about addresses aligned to its SuperSlab size (every region
    /// it maps starts on such a boundary), so a source may answer at that
    /// granularity.
    fn contains(&self, addr: usize) -> bool;

    /// The start of the live region holding `addr`, where the source can
    /// tell (`None`: it cannot, or `addr` is in no region). The `hardened`
    /// build uses it to tell a header from the body of a large block; the
    /// default says nothing.
    fn region_start(&self, addr: usize) -> Option<usize> {
        let _ = addr;
        None
    }
}

// SAFETY: forwarding every method to `P` keeps all of `P`'s promises.
unsafe impl<P: PageSource + ?Sized> PageSource for &P {
    const MAPS_ZEROED: bool = P::MAPS_ZEROED;
    const CAN_DECOMMIT: bool = P::CAN_DECOMMIT;
    const CAN_REMAP: bool = P::CAN_REMAP;
    const CAN_PROTECT: bool = P::CAN_PROTECT;
    const HUGE_PAGE: usize = P::HUGE_PAGE;
    fn page_size(&self) -> usize {
        (**self).page_size()
    }
    fn map(&self, size: usize, align: usize) -> Option<NonNull<u8>> {
        (**self).map(size, align)
    }
    unsafe fn unmap(&self, ptr: NonNull<u8>, size: usize) {
        // SAFETY: the caller upholds `unmap`'s contract for `P`.
        unsafe { (**self).unmap(ptr, size) }
    }
    unsafe fn decommit(&self, ptr: NonNull<u8>, size: usize) {
        // SAFETY: the caller upholds `decommit`'s contract for `P`.
        unsafe { (**self).decommit(ptr, size) }
    }
    unsafe fn recommit(&self, ptr: NonNull<u8>, size: usize) -> bool {
        // SAFETY: the caller upholds `recommit`'s contract for `P`.
        unsafe { (**self).recommit(ptr, size) }
    }
    unsafe fn remap(
        &self,
        ptr: NonNull<u8>,
        old_size: usize,
        new_size: usize,
        align: usize,
    ) -> Option<NonNull<u8>> {
        // SAFETY: the caller upholds `remap`'s contract for `P`.
        unsafe { (**self).remap(ptr, old_size, new_size, align) }
    }
    unsafe fn shrink(&self, ptr: NonNull<u8>, old_size: usize, new_size: usize) -> bool {
        // SAFETY: the caller upholds `shrink`'s contract for `P`.
        unsafe { (**self).shrink(ptr, old_size, new_size) }
    }
    unsafe fn protect(&self, ptr: NonNull<u8>, size: usize, access: bool) -> bool {
        // SAFETY: the caller upholds `protect`'s contract for `P`.
        unsafe { (**self).protect(ptr, size, access) }
    }
    unsafe fn advise_huge(&self, ptr: NonNull<u8>, size: usize) {
        // SAFETY: the caller upholds `advise_huge`'s contract for `P`.
        unsafe { (**self).advise_huge(ptr, size) }
    }
    fn contains(&self, addr: usize) -> bool {
        (**self).contains(addr)
    }
    fn region_start(&self, addr: usize) -> Option<usize> {
        (**self).region_start(addr)
    }
}
