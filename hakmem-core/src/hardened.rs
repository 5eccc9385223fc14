//! The `hardened` build's checks on block contents: canaries, freed-block
//! poisoning and checked free-list links (docs/reliability.md, "Hardened
//! mode"). (An allocation bitmap in the SuperSlab header, one bit per 16
//! bytes, came first; it cost about 23 instructions an alloc + free pair and
//! is gone: the tail word's two states (held with its size, or `FREE`) say
//! what it said, at no extra cache line.)
//!
//! Small blocks. A request of `n` bytes gets the smallest class of at least
//! `max(n, 16) + 16` bytes, so every block ends with a *tail word* of its
//! own, and at least 8 bytes between the request and the tail word are
//! slack:
//!
//! ```text
//! held:  | user data (n) | FILL × 8 | (slack) | tail = key(block) ^ n    |
//! free:  | next | tag | FILL × 8 | ...          | tail = key(block) ^ FREE |
//! ```
//!
//! - **Overflow** (free, `realloc`, `malloc_usable_size`): the tail word must
//!   decode to a size that fits and the 8 bytes right after the request must
//!   still be `FILL` (one unaligned load and compare); a contiguous write
//!   past the request breaks one or the other.
//! - **Underflow** (free): the tail word of the block just below (the
//!   previous block of the same slab) must decode to a held or a free block;
//!   a write before the block's start lands there first.
//! - **Write after free** (reuse): a freed block's third word is `FILL`
//!   and its tail word says `FREE`; the allocation that takes it again checks
//!   the third word and the tag, and the free-list link (`next`) must be null
//!   or a carved block of the same slab (a poisoned link is never followed).
//!   So the first 24 bytes of a freed block are watched; a write after free
//!   elsewhere is not seen (a fixed cost per operation, whatever the block's
//!   size). A second free of it still is: its tail word says `FREE`, or was
//!   overwritten and does not decode.
//! - **Double and invalid free**: a free block's tail word says `FREE`; a
//!   pointer that is no carved block start never gets here (`locate`).
//!
//! - **Remote frees** check the free tag, and for blocks of at most 64
//!   bytes (one line) the tail and slack words; the owner checks the rest
//!   and poisons the block when it collects it ([`check_collected`]), so
//!   only the owner writes tail words.
//!
//! Large blocks carry a canary word just below the user pointer (in the
//! header's padding) and 16 bytes of `FILL` just past the request, checked
//! at free and `realloc`; where the page source can protect pages, the
//! pages past the block are a guard, the block ending as close to them as
//! its alignment allows ([`guard_large`]). A freed block's region is cached
//! for reuse as in the default build, its guard in place and its body past
//! the first page closed ([`guard_freed`]), so a write after free faults
//! until the region is reused or given back; a later request opens what it
//! needs and closes the rest.
//!
//! The tail word is read and written with atomic operations: a free reads
//! the tail word of the block below, which that block's owner may be
//! writing at the same time (and `realloc` in place, by any thread holding
//! the block, rewrites its own).

use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicUsize, Ordering};

use crate::error::FreeErrorKind;
use crate::heap::Heap;
use crate::large::LargeBlock;
use crate::locate::check_carved;
use crate::page_source::PageSource;
use crate::size_class::{
    class_for, class_of, class_of_table, class_size, MIN_ALIGN, NUM_CLASSES, TABLE_MAX,
};
use crate::slab::{Block, Slab};
use crate::superslab::SuperSlab;

/// The byte that fills slack and freed blocks.
pub(crate) const FILL: u8 = 0xdf;
/// [`FILL`] in every byte of a word.
const FILL_WORD: u64 = u64::from_ne_bytes([FILL; 8]);
/// The size a free block's tail word encodes.
const FREE: usize = usize::MAX;
/// Bytes of `FILL` after a large block's request.
pub(crate) const LARGE_TAIL: usize = 16;

/// The bytes a small request of `n` bytes needs from its class (the slack
/// word and the tail word included); `None` when it overflows.
#[inline(always)]
pub(crate) fn padded(n: usize) -> Option<usize> {
    n.max(16).checked_add(SLACK + 8)
}

/// The class of [`padded`]`(n)` for every `n` up to [`TABLE_MAX`], indexed
/// by `ceil(n / 16)` (every class is a multiple of 16, so `n` rounded up to
/// 16 has the same class), built at compile time: the allocation path's one
/// table load, as in the default build, with no arithmetic for the padding.
static PADDED_CLASS: [u8; TABLE_MAX / MIN_ALIGN + 1] = {
    let mut t = [0u8; TABLE_MAX / MIN_ALIGN + 1];
    let mut i = 0;
    while i < t.len() {
        let n = if i == 0 { 16 } else { i * MIN_ALIGN };
        t[i] = match class_of(n + SLACK + 8) {
            Some(c) if c < u8::MAX as usize => c as u8,
            _ => panic!("padded table sizes have a class"),
        };
        i += 1;
    }
    t
};

/// Bytes of `FILL` right after every small request.
const SLACK: usize = 8;

/// The key of a block's tail word: its address with the top bits of a
/// constant, so that no word a program commonly leaves there decodes.
#[inline(always)]
fn key(addr: usize) -> usize {
    // One exclusive or with a constant (a bijection: neighbours never share
    // a key). On 64-bit targets the address's top 16 bits are all zero or
    // all one (canonical addresses), so the key's are `0x9e37` or `0x61c8`:
    // a zero word, a small number, a pointer or a byte pattern repeated
    // (`FILL`, `0x41…`) decodes to a number past 2^47, never to a size nor
    // to `FREE`. On 32-bit targets the constant's top bit is set and the
    // RAM of the boards served lies below 2^31, so a held key's top bit is
    // set. (It was the address times an odd constant, with the top bit
    // forced: a key whose top byte varies from block to block, at a
    // multiplication, two constants and an `or` more per key, three keys a
    // pair; the top byte is now the same for every block, so a 1-byte
    // underflow writing exactly `0x9e` over a held block below, or `0x61`
    // over a free one, goes unseen — `0x00`, `0xff`, `FILL` and any other
    // byte is seen.)
    addr ^ KEY
}

/// The constant of [`key`].
const KEY: usize = if usize::BITS == 64 {
    0x9e37_79b9_7f4a_7c15_u64 as usize
} else {
    0x9e37_79b9_u32 as usize
};

/// Offset of the poisoned word of a free block (after its link and tag).
const POISON_AT: usize = 16;

/// The largest request a block of `size` bytes holds (its slack word and
/// tail word after it).
#[inline(always)]
const fn room(size: usize) -> usize {
    size - SLACK - 8
}

/// The tail word of the block at `b` of `size` bytes.
///
/// # Safety
/// `b` is a carved block of `size` bytes (at least 24), aligned to 8.
#[inline(always)]
unsafe fn tail<'a>(b: *mut u8, size: usize) -> &'a AtomicUsize {
    // SAFETY: the last word of the block, aligned (sizes are multiples of
    // 16, blocks aligned to 16); only ever accessed atomically.
    unsafe { AtomicUsize::from_ptr(b.add(size - 8).cast::<usize>()) }
}

/// Arms a small block just handed out for a request of `n` bytes: its
/// slack word filled, the size in the tail word.
///
/// # Safety
/// `b` is a block of `size` bytes the caller just allocated, `n <=
/// room(size)`.
#[inline(always)]
pub(crate) unsafe fn arm(b: *mut u8, n: usize, size: usize) {
    // SAFETY: per the caller: the slack word lies before the tail word.
    unsafe {
        b.add(n).cast::<u64>().write_unaligned(FILL_WORD);
        tail(b, size).store(key(b as usize) ^ n, Ordering::Relaxed);
    }
}

/// The request size of a held small block, after checking its slack: a
/// free block is `DoubleFree`, a broken tail word or slack `Overflow`.
///
/// # Safety
/// `b` is a carved block of `size` bytes the application says it holds.
#[inline(always)]
pub(crate) unsafe fn held_size(b: *mut u8, size: usize) -> Result<usize, FreeErrorKind> {
    // SAFETY: per the caller.
    unsafe {
        let n = tail(b, size).load(Ordering::Relaxed) ^ key(b as usize);
        // One comparison on the way through: FREE is past any room too.
        if n > room(size) {
            return Err(if n == FREE {
                FreeErrorKind::DoubleFree
            } else {
                FreeErrorKind::Overflow
            });
        }
        if b.add(n).cast::<u64>().read_unaligned() != FILL_WORD {
            return Err(FreeErrorKind::Overflow);
        }
        Ok(n)
    }
}

/// Checks the tail word of the block below `b` in its slab (none for the
/// slab's first block): held or free, else `Underflow`.
///
/// # Safety
/// `b` is a carved block start of `slab`, a slab of the live SuperSlab
/// `ss`.
#[inline(always)]
unsafe fn check_below(
    ss: *mut SuperSlab,
    slab: *const Slab,
    b: *mut u8,
) -> Result<(), FreeErrorKind> {
    // SAFETY: per the caller; the block below is carved (carving goes up).
    unsafe {
        let size = (*slab).size as usize;
        // `b` is a carved block start, so only the first one lies below
        // `start + size`: one comparison, no addition.
        if b as usize - ss as usize == (*slab).start as usize {
            return Ok(());
        }
        let below = b.sub(size);
        let n = tail(below, size).load(Ordering::Relaxed) ^ key(below as usize);
        // Free (`n == FREE`, which wraps to 0) or a size that fits, in
        // one comparison.
        if n.wrapping_add(1) <= room(size) + 1 {
            Ok(())
        } else {
            Err(FreeErrorKind::Underflow)
        }
    }
}

/// All the checks of a small free: its slack and tail word intact (a tail
/// word that says `FREE` is a double free) and the block below intact. On
/// `Err` nothing has changed.
///
/// # Safety
/// `b` is a carved block start of `slab` in the live SuperSlab `ss`.
#[inline(always)]
pub(crate) unsafe fn check_free(
    ss: *mut SuperSlab,
    slab: *const Slab,
    b: *mut u8,
) -> Result<(), FreeErrorKind> {
    // SAFETY: per the caller.
    unsafe {
        held_size(b, (*slab).size as usize)?;
        check_below(ss, slab, b)
    }
}

/// [`check_free`] and [`poison`] for a block freed by a thread that does
/// not own its SuperSlab, done by the owner as it collects the block (the
/// freeing thread checked only its free tag, as in the default build): the
/// owner is then the only writer of tail words, and the freeing thread
/// touches no line past the block's first. A fault stops the program
/// through the fault handler, naming the block.
///
/// # Safety
/// `b` is a block of `slab` (of the live owned SuperSlab `ss`) just taken
/// from the slab's remote list.
#[inline]
pub(crate) unsafe fn check_collected(ss: *mut SuperSlab, slab: *const Slab, b: *mut u8) {
    // SAFETY: per the caller.
    unsafe {
        let size = (*slab).size as usize;
        let n = tail(b, size).load(Ordering::Relaxed) ^ key(b as usize);
        let r = if n > room(size) {
            Err(if n == FREE {
                FreeErrorKind::DoubleFree
            } else {
                FreeErrorKind::Overflow
            })
        } else if n >= 16 && b.add(n).cast::<u64>().read_unaligned() != FILL_WORD {
            // (Below 16 the slack shares the link and tag words the remote
            // free wrote: checked by [`check_remote_free`] before that.)
            Err(FreeErrorKind::Overflow)
        } else {
            check_below(ss, slab, b)
        };
        if let Err(kind) = r {
            crate::error::fault(crate::error::FaultKind::InvalidFree(kind), b as usize);
        }
        poison(b, size);
    }
}

/// The part of a remote free's checks its thread makes itself, before it
/// writes the block's link and tag: a block of at most 64 bytes (one cache
/// line, the one the free writes anyway) has its tail word and slack
/// checked whole, as the slack of a request under 16 bytes lies in the
/// words the free overwrites. Larger blocks are left to [`check_collected`].
///
/// # Safety
/// `b` is a carved block start of `slab`, a slab of a live SuperSlab.
#[inline(always)]
pub(crate) unsafe fn check_remote_free(slab: *const Slab, b: *mut u8) -> Result<(), FreeErrorKind> {
    // SAFETY: per the caller.
    unsafe {
        let size = (*slab).size as usize;
        if size <= 64 {
            held_size(b, size)?;
        }
    }
    Ok(())
}

/// Poisons a small block being freed: its third word filled, the tail word
/// set to `FREE`. (Bytes 0..16 are the link and tag.)
///
/// # Safety
/// `b` is a block of `size` bytes being freed.
#[inline(always)]
pub(crate) unsafe fn poison(b: *mut u8, size: usize) {
    // SAFETY: per the caller.
    unsafe {
        b.add(POISON_AT).cast::<u64>().write(FILL_WORD);
        tail(b, size).store(key(b as usize) ^ FREE, Ordering::Relaxed);
    }
}

/// Checks a free block before it is handed out again: its poisoned third
/// word intact, its link null or a carved block of the same slab (the tag,
/// its second word, is the caller's). `false` means it was written after it
/// was freed.
///
/// # Safety
/// `b` is on the free list of `slab`, a slab of the live SuperSlab `ss`.
#[inline(always)]
pub(crate) unsafe fn check_reuse(ss: *mut SuperSlab, slab: *const Slab, b: *mut Block) -> bool {
    // SAFETY: per the caller.
    unsafe {
        // (Its tail word is not checked: a write after free there harms
        // nothing, as arming rewrites it, and a double free after it still
        // stops on the tail word, which then says FREE or does not decode.)
        if b.cast::<u8>().add(POISON_AT).cast::<u64>().read() != FILL_WORD {
            return false;
        }
        let next = (*b).next as usize;
        // `check_carved` refuses any offset outside `[start, bump)`,
        // including the huge ones of a link outside the SuperSlab.
        next == 0 || check_carved(slab, next.wrapping_sub(ss as usize)).is_ok()
    }
}

/// Bytes of guard page a large block's region gets past its block: a page
/// where the source can make it inaccessible, else none.
#[inline]
pub(crate) fn guard_bytes<P: PageSource>(page: usize) -> usize {
    if P::CAN_PROTECT {
        page
    } else {
        0
    }
}

/// Where a large block goes in its region, for [`guard_large`].
pub(crate) struct GuardPlan {
    /// Bytes the block needs: header, user offset, `room` and the guard
    /// page, rounded to pages (a fresh exact region's size).
    pub need: usize,
    /// Offset from which the region (at least `need` bytes: a power of
    /// two, or a cached region) is inaccessible now (its size: none of
    /// it; a cached region keeps its guard and closed body).
    pub guard: usize,
    /// The smallest user offset (header and canary), a multiple of `align`.
    pub user_off: usize,
    /// Bytes from the user pointer: request and tail fill.
    pub room: usize,
    /// The block's alignment, a power of two.
    pub align: usize,
    /// The header is at the region's start (the user pointer may move).
    pub movable: bool,
}

/// Places a large block in its region and makes everything past it a
/// guard: the user pointer as late as `room` and `align` allow in the first
/// `need - page` bytes when `movable` (so a write past the fill faults at
/// once), the pages from the block's end to the region's end inaccessible,
/// the ones before it accessible. Returns the user offset, or `None` when
/// pages the block needs could not be opened (nothing uses the region
/// then; the caller gives it back).
///
/// # Safety
/// `base` starts a live region of `source` nothing uses, at least
/// `plan.need` bytes, inaccessible exactly from `plan.guard` (at least a
/// page) to its end, with `plan.user_off + plan.room + page <= plan.need`.
pub(crate) unsafe fn guard_large<P: PageSource>(
    source: &P,
    base: *mut u8,
    plan: GuardPlan,
) -> Option<usize> {
    if !P::CAN_PROTECT {
        return Some(plan.user_off);
    }
    let page = source.page_size();
    let user_off = if plan.movable {
        // (The user pointer stays within the region's first page past the
        // header: `need` is the header and room rounded to pages, plus one.)
        ((plan.need - page - plan.room) & !(plan.align - 1)).max(plan.user_off)
    } else {
        plan.user_off
    };
    let from = (user_off + plan.room).next_multiple_of(page);
    // SAFETY: per the caller: whole pages inside the region, unused.
    unsafe {
        if plan.guard < from && !set_access(source, base, plan.guard, from, true) {
            return None;
        }
        if from < plan.guard {
            set_access(source, base, from, plan.guard, false);
        }
    }
    Some(user_off)
}

/// Offset from its region's base of a live large block's guard: the first
/// page past its request and tail fill (the region is inaccessible from
/// there, where the source can protect pages).
///
/// # Safety
/// `h` is a live large block header.
pub(crate) unsafe fn guard_from(h: *mut LargeBlock, page: usize) -> usize {
    // SAFETY: per the caller.
    unsafe { ((*h).user - (*h).base as usize + (*h).size + LARGE_TAIL).next_multiple_of(page) }
}

/// Moves a live large block's guard for its new size `new_size` (which
/// fits its region): pages opened before a growth, closed after a shrink.
/// `false` (nothing changed) when the pages could not be opened.
///
/// # Safety
/// `h` is a live large block header, its block of `(*h).size` bytes not
/// yet resized, and nobody uses its bytes past `new_size`.
pub(crate) unsafe fn move_guard<P: PageSource>(
    source: &P,
    h: *mut LargeBlock,
    new_size: usize,
) -> bool {
    if !P::CAN_PROTECT {
        return true;
    }
    let page = source.page_size();
    // SAFETY: per the caller: both offsets lie inside the region.
    unsafe {
        let old = guard_from(h, page);
        let new = ((*h).user - (*h).base as usize + new_size + LARGE_TAIL)
            .next_multiple_of(page)
            .min((*h).map_size);
        if new > old {
            return set_access(source, (*h).base, old, new, true);
        }
        if new < old {
            set_access(source, (*h).base, new, old, false);
        }
    }
    true
}

/// Closes the body of a large block being freed into the cache, past its
/// region's first page (which keeps the header word for the lookup of a
/// later bad free), so a write after free faults. Returns the offset from
/// which the region is now inaccessible. A block whose header is not at
/// its region's start (aligned to a SuperSlab or more; the lookup reads
/// its header page) keeps its body open: only its guard stays.
///
/// # Safety
/// `h` is the live header of a block nobody uses any more.
pub(crate) unsafe fn guard_freed<P: PageSource>(source: &P, h: *mut LargeBlock) -> usize {
    // SAFETY: per the caller.
    unsafe {
        if !P::CAN_PROTECT {
            return (*h).map_size;
        }
        let page = source.page_size();
        let from = guard_from(h, page);
        if (*h).base == h.cast::<u8>()
            && page < from
            && set_access(source, (*h).base, page, from, false)
        {
            page
        } else {
            from
        }
    }
}

/// Fills the first page of a large region being cached, past its first
/// word (which says "no block"), with [`FILL`]: that page stays accessible
/// (the header word), so a write after free there is found when the region
/// is reused ([`check_first_page`]).
///
/// # Safety
/// `[base, base + size)` is a large region nobody uses, its first page
/// accessible.
pub(crate) unsafe fn poison_first_page(base: *mut u8, size: usize, page: usize) {
    // SAFETY: per the caller.
    unsafe { ptr::write_bytes(base.add(8), FILL, size.min(page) - 8) };
}

/// Checks the first page of a cached large region before it is reused:
/// still [`FILL`] past its first word, else a write after free, which stops
/// the program through the fault handler naming the region.
///
/// # Safety
/// `[base, base + size)` is a cached region poisoned by
/// [`poison_first_page`].
pub(crate) unsafe fn check_first_page(base: *mut u8, size: usize, page: usize) {
    // SAFETY: per the caller: whole words (page sizes are multiples of 8,
    // `base` is page-aligned).
    let words =
        unsafe { core::slice::from_raw_parts(base.add(8).cast::<u64>(), (size.min(page) - 8) / 8) };
    // One pass with no early exit (it vectorises); the place only on a find.
    if words.iter().fold(0, |acc, &w| acc | (w ^ FILL_WORD)) != 0 {
        let i = words.iter().position(|&w| w != FILL_WORD).unwrap_or(0);
        crate::error::fault(
            crate::error::FaultKind::FreeBlockOverwritten,
            base as usize + 8 + 8 * i,
        );
    }
}

/// Makes the pages `[base + from, base + to)` of a large region accessible
/// (`open`) or inaccessible; `true` when done (where the source cannot
/// protect pages, nothing is ever closed: `true`). A failed close leaves the
/// pages open (a missing guard catches less); a failed open leaves them
/// closed, and the caller must not use them.
///
/// # Safety
/// `[base + from, base + to)` is a page-aligned range of a live large
/// region of `source`; nobody uses pages being closed.
pub(crate) unsafe fn set_access<P: PageSource>(
    source: &P,
    base: *mut u8,
    from: usize,
    to: usize,
    open: bool,
) -> bool {
    if !P::CAN_PROTECT || from >= to {
        return true;
    }
    // SAFETY: per the caller: whole pages inside the region.
    unsafe { source.protect(NonNull::new_unchecked(base.add(from)), to - from, open) }
}

/// The canary word of a large block, just below its user pointer.
///
/// # Safety
/// `h` is a live large block header.
unsafe fn large_canary(h: *mut LargeBlock) -> *mut usize {
    // SAFETY: the user pointer is at least 16 bytes past the header (or,
    // for blocks aligned to the SuperSlab size, a SuperSlab past it), so the
    // word below it is padding of the region.
    unsafe { (*h).base.with_addr((*h).user - 8).cast::<usize>() }
}

/// Arms a large block of `size` bytes: its canary word and [`LARGE_TAIL`]
/// bytes of [`FILL`] past the request.
///
/// # Safety
/// `h` is a live large block header whose region holds `size +
/// LARGE_TAIL` bytes from its user pointer.
pub(crate) unsafe fn arm_large(h: *mut LargeBlock, size: usize) {
    // SAFETY: per the caller.
    unsafe {
        large_canary(h).write(key((*h).user));
        let user = (*h).base.with_addr((*h).user);
        ptr::write_bytes(user.add(size), FILL, LARGE_TAIL);
    }
}

/// Checks a live large block's canary (`Underflow`) and tail (`Overflow`).
///
/// # Safety
/// `h` is a live large block header, armed by [`arm_large`].
pub(crate) unsafe fn check_large(h: *mut LargeBlock) -> Result<(), FreeErrorKind> {
    // SAFETY: per the caller.
    unsafe {
        if large_canary(h).read() != key((*h).user) {
            return Err(FreeErrorKind::Underflow);
        }
        let user = (*h).base.with_addr((*h).user);
        let t = user.add((*h).size).cast::<u64>();
        if t.read_unaligned() != FILL_WORD || t.add(1).read_unaligned() != FILL_WORD {
            return Err(FreeErrorKind::Overflow);
        }
    }
    Ok(())
}

impl<P: PageSource> Heap<P> {
    /// `alloc` in the hardened build: small requests get a class with room
    /// for their slack and tail word, then are armed; large ones are armed
    /// by `alloc_large`. Common sizes at the default alignment take one
    /// table load, as in the default build.
    #[inline(always)]
    pub(crate) fn alloc_hardened(&mut self, size: usize, align: usize, zero: bool) -> *mut u8 {
        if size <= TABLE_MAX && align <= MIN_ALIGN && align.is_power_of_two() {
            // SAFETY: `size <= TABLE_MAX` keeps the index in the table.
            let c = unsafe { *PADDED_CLASS.get_unchecked(size.div_ceil(MIN_ALIGN)) } as usize;
            if c < self.geo.slab_classes {
                return self.alloc_armed(c, size, zero);
            }
        }
        self.alloc_hardened_other(size, align, zero)
    }

    /// A block of class `c` for a request of `size` bytes, armed.
    #[inline(always)]
    fn alloc_armed(&mut self, c: usize, size: usize, zero: bool) -> *mut u8 {
        // Zeroed here, the request only: zeroing the whole block would clear
        // its tail word, which a free of the block above (on another thread)
        // may be reading as the block below's.
        let b = self.alloc_class(c, false);
        if !b.is_null() {
            // SAFETY: callers pass `c < slab_classes <= NUM_CLASSES` (the
            // geometry stops at the last class), so the size table needs no
            // bounds check; `b` is a block of class `c` just handed out, and
            // `size <= room(class_size(c))` (callers chose `c` so).
            unsafe {
                core::hint::assert_unchecked(c < NUM_CLASSES);
                if zero {
                    ptr::write_bytes(b, 0, size);
                }
                arm(b, size, class_size(c));
            }
        }
        b
    }

    /// The other requests: over-aligned, past the table, or large.
    #[inline(never)]
    fn alloc_hardened_other(&mut self, size: usize, align: usize, zero: bool) -> *mut u8 {
        let Some(need) = padded(size) else {
            return ptr::null_mut();
        };
        if align.is_power_of_two() && align.max(MIN_ALIGN) <= self.geo.unit_size() {
            let c = if need <= TABLE_MAX && align <= MIN_ALIGN {
                Some(class_of_table(need))
            } else {
                class_for(need, align.max(MIN_ALIGN))
            };
            if let Some(c) = c.filter(|&c| c < self.geo.slab_classes) {
                return self.alloc_armed(c, size, zero);
            }
        }
        // A large block, even for a size a slab class would serve without
        // the canary's bytes.
        if !align.is_power_of_two() || size > (isize::MAX as usize).saturating_sub(align) {
            return ptr::null_mut();
        }
        self.alloc_large(size, align.max(MIN_ALIGN), zero)
    }

    /// Resizes a live small block to `n` bytes in place (re-armed) when its
    /// class has room for them and is at most twice the class `n` needs, as
    /// the default build keeps a block, and the block below is intact; false
    /// (nothing changed) otherwise.
    ///
    /// # Safety
    /// `ptr` is a live small block of this heap, checked by `live_block`.
    pub(crate) unsafe fn resize_small_in_place(&self, ptr: *mut u8, n: usize) -> bool {
        // SAFETY: per the caller.
        unsafe {
            let ss = self.superslab_of(ptr);
            let slab = SuperSlab::slab_of(ss, ptr as usize, self.geo.unit_shift);
            let size = (*slab).size as usize;
            match padded(n) {
                // (A broken block below: moved, so the free of `ptr` says so.)
                Some(need)
                    if need <= size && size <= 2 * need && check_below(ss, slab, ptr).is_ok() =>
                {
                    arm(ptr, n, size);
                    true
                }
                _ => false,
            }
        }
    }

    /// Re-arms a block resized in place to `n` bytes.
    ///
    /// # Safety
    /// `ptr` is a live block of this heap (`large`: its header, if large)
    /// that holds `n` bytes and their slack.
    pub(crate) unsafe fn rearm(&self, ptr: *mut u8, large: Option<*mut LargeBlock>, n: usize) {
        // SAFETY: per the caller.
        unsafe {
            match large {
                Some(h) => arm_large(h, n),
                None => {
                    let ss = self.superslab_of(ptr);
                    let slab = SuperSlab::slab_of(ss, ptr as usize, self.geo.unit_shift);
                    arm(ptr, n, (*slab).size as usize);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overwritten_tail_words_never_decode() {
        // Low user-space addresses, the top of a 47-bit user space and, on
        // 64-bit targets, the higher half (bare-metal kernels).
        let starts: [usize; 3] = if usize::BITS == 64 {
            [
                0x1000,
                0x7fff_ffff_0000_u64 as usize,
                0xffff_8000_0000_0000_u64 as usize,
            ]
        } else {
            [0x1000, 0x2000_0000, 0x7f00_0000]
        };
        // Past any block's room (well past, on 64-bit targets).
        let limit: usize = if usize::BITS == 64 { 1 << 47 } else { 1 << 24 };
        for a in starts.iter().flat_map(|&s| (s..s + 0x100000).step_by(16)) {
            assert_ne!(key(a), key(a + 16));
            // A zero word, a small number, pointers (an address near the
            // block, one elsewhere), `FILL` and `0x41…` decode to neither
            // a size nor `FREE`.
            for w in [
                FILL_WORD as usize,
                0,
                100,
                a,
                a + 4096,
                a.wrapping_sub(1 << 24),
                usize::from_ne_bytes([0x41; core::mem::size_of::<usize>()]),
            ] {
                let n = w ^ key(a);
                assert!(n != FREE && n >= limit, "{a:#x} {w:#x}");
            }
        }
    }

    #[test]
    fn the_padded_table_gives_the_smallest_class_with_room() {
        for n in 0..=TABLE_MAX {
            let c = PADDED_CLASS[n.div_ceil(MIN_ALIGN)] as usize;
            assert!(room(class_size(c)) >= n, "{n}");
            assert_eq!(Some(c), class_of(padded(n).unwrap()), "{n}");
        }
    }

    #[test]
    fn padded_sizes_leave_room_for_the_tail_word() {
        assert_eq!(padded(0), Some(32));
        assert_eq!(padded(16), Some(32));
        assert_eq!(padded(100), Some(116));
        assert_eq!(room(padded(100).unwrap()), 100);
        assert_eq!(padded(usize::MAX), None);
    }
}
