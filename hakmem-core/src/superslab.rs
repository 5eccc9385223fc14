//! The SuperSlab: a power-of-two-aligned region that starts with its own
//! metadata and is split into slab units.
//!
//! ```text
//! base                                                  base + 2^superslab_shift
//! | SuperSlab | Slab meta × units | slab units ...                            |
//! ```
//!
//! The owner of any small block is found by masking its address with the
//! geometry's SuperSlab mask; the unit is `(addr - base) >> unit_shift`, and
//! the unit's `head` names the slab it belongs to. No search.
//!
//! The heap's work on whole SuperSlabs lives here too: mapping one, its
//! place in the heap's list and `known` cache, and its release when its last
//! live slab empties (`on_empty`, beyond the retain policy).
//!
//! Invariants:
//! - `magic == SS_MAGIC ^ base` while the SuperSlab is live, 0 once released;
//! - `live` = number of its slabs with `used > 0`; its held blocks are
//!   exactly `Σ slab.used − remote_count`;
//! - `free_units` has a bit for each unit that begins no slab and lies in no
//!   slab's span; header-only units are never in it; `empty_units` has the
//!   units of its assigned slabs with `used == 0`;
//! - while it is in the `known` cache, it is live and owned by the heap.

use core::mem::{align_of, size_of};
use core::ptr::{self, NonNull};
use core::sync::atomic::AtomicUsize;

use crate::config::Geometry;
use crate::heap::{Heap, KNOWN, NO_SUPERSLAB};
use crate::medium::MEDIUM_CLASS;
use crate::page_source::PageSource;
use crate::slab::{Slab, IN_PARTIAL, NO_CLASS};

/// Magic of a live SuperSlab, XOR its base address.
pub(crate) const SS_MAGIC: usize = 0x5355_5045_u32 as usize; // "SUPE"
/// Magic of a live large block header, XOR its header address.
pub(crate) const LARGE_MAGIC: usize = 0x4c41_5247_u32 as usize; // "LARG"
/// Magic at the start of a large block's region whose header is not there
/// (alignment above the SuperSlab size), XOR the region start; the next
/// word is the header's address.
pub(crate) const LARGE_FORWARD_MAGIC: usize = 0x4657_4452_u32 as usize; // "FWDR"

/// The header at the start of every SuperSlab. Its first cache line is read
/// by other threads (lookups, remote frees); the second is the owner's.
#[repr(C, align(64))]
pub(crate) struct SuperSlab {
    /// `SS_MAGIC ^ base` while live.
    pub magic: usize,
    /// Id of the owning heap. Read by other threads to choose the remote path.
    pub owner: AtomicUsize,
    /// Blocks freed by other threads and not yet collected by the owner
    /// (on its slabs' remote lists, or batched in the freeing heap on their
    /// way there). Raised before such a free returns, so it never reads below
    /// the lists' total length.
    pub remote_count: AtomicUsize,
    _shared_line: [u8; 64 - 3 * size_of::<usize>()],
    /// Slabs with `used > 0`; the SuperSlab is empty when it is 0.
    pub live: u32,
    /// Units that are free (see module invariants).
    pub free_units: u64,
    /// Units of assigned slabs that hold nothing (`used == 0`).
    pub empty_units: u64,
    /// Units never written since they were mapped or decommitted.
    pub fresh_units: u64,
    /// Free units whose pages (past the header) are decommitted; cleared
    /// when a unit is given to a slab.
    pub clean_units: u64,
    /// Heap's SuperSlab list.
    pub next: *mut SuperSlab,
    /// Heap's SuperSlab list.
    pub prev: *mut SuperSlab,
}

const fn round_up(x: usize, to: usize) -> usize {
    (x + to - 1) & !(to - 1)
}

/// Offset of the slab metadata array.
const SLABS_OFFSET: usize = round_up(size_of::<SuperSlab>(), align_of::<Slab>());

const _: () = assert!(
    size_of::<SuperSlab>() == 128,
    "two cache lines: shared, then the owner's"
);

/// Header bytes for a SuperSlab with `units` units.
pub(crate) const fn header_bytes(units: usize) -> usize {
    round_up(SLABS_OFFSET + units * size_of::<Slab>(), 64)
}

impl SuperSlab {
    /// Writes a fresh header (all units free) at `base`.
    ///
    /// # Safety
    /// `base` is the start of a writable, SuperSlab-aligned region of
    /// `geo.superslab_size()` bytes that nothing else uses.
    pub unsafe fn init(base: *mut u8, geo: &Geometry, owner: usize, fresh: bool) -> *mut SuperSlab {
        let ss = base.cast::<SuperSlab>();
        // SAFETY: `base` is aligned (SuperSlab alignment exceeds the header's)
        // and the header lies inside the region, per the caller.
        unsafe {
            ss.write(SuperSlab {
                magic: SS_MAGIC ^ base as usize,
                owner: AtomicUsize::new(owner),
                remote_count: AtomicUsize::new(0),
                _shared_line: [0; 64 - 3 * size_of::<usize>()],
                live: 0,
                free_units: geo.all_free_units(),
                empty_units: 0,
                fresh_units: if fresh { geo.all_free_units() } else { 0 },
                clean_units: if fresh { geo.all_free_units() } else { 0 },
                next: core::ptr::null_mut(),
                prev: core::ptr::null_mut(),
            });
            for u in 0..geo.units {
                Self::slab(ss, u as usize).write(Slab::unassigned(u));
            }
        }
        ss
    }

    /// Metadata of unit `unit`.
    ///
    /// # Safety
    /// `ss` is a live SuperSlab and `unit` < its unit count.
    #[inline(always)]
    pub unsafe fn slab(ss: *mut SuperSlab, unit: usize) -> *mut Slab {
        // SAFETY: the slab array follows the header inside the region.
        unsafe { ss.cast::<u8>().add(SLABS_OFFSET).cast::<Slab>().add(unit) }
    }

    /// The slab that the block at `addr` (inside `ss`) belongs to, going
    /// through the unit's `head`.
    ///
    /// # Safety
    /// `ss` is live and `addr` lies inside it.
    #[inline(always)]
    pub unsafe fn slab_of(ss: *mut SuperSlab, addr: usize, unit_shift: u8) -> *mut Slab {
        let unit = (addr - ss as usize) >> unit_shift;
        // SAFETY: `addr` inside `ss` makes `unit` a valid unit index, and
        // `head` is always a valid unit index.
        unsafe {
            let head = (*Self::slab(ss, unit)).head;
            Self::slab(ss, head as usize)
        }
    }

    /// Index of a slab's unit from its metadata pointer.
    #[inline]
    pub fn unit_index(ss: *mut SuperSlab, slab: *mut Slab) -> usize {
        (slab as usize - (ss as usize + SLABS_OFFSET)) / size_of::<Slab>()
    }
}

impl<P: PageSource> Heap<P> {
    /// Maps, initialises and links a new SuperSlab (empty until a slab of
    /// it holds a block).
    pub(crate) fn map_superslab(&mut self) -> Option<*mut SuperSlab> {
        let size = self.geo.superslab_size();
        let base = self.source.map(size, size)?;
        // SAFETY: the source handed us `size` bytes aligned to `size`.
        let ss = unsafe { SuperSlab::init(base.as_ptr(), &self.geo, self.id, P::MAPS_ZEROED) };
        // SAFETY: `ss` is live and not yet in any list.
        unsafe { self.link_superslab(ss) };
        self.n.superslabs += 1;
        self.n.created += 1;
        self.n.empty += 1;
        Some(ss)
    }

    /// A SuperSlab's last live slab just emptied: keep it (the retain
    /// policy) or release it now.
    ///
    /// # Safety
    /// `ss` is a live owned SuperSlab with `live == 0`.
    #[cold]
    pub(crate) unsafe fn on_empty(&mut self, ss: *mut SuperSlab) {
        self.n.empty += 1;
        if self.n.empty > self.cfg.retain {
            // SAFETY: per the caller.
            unsafe { self.release_superslab(ss) };
        }
    }

    /// Removes every trace of an empty SuperSlab from the heap — its slabs
    /// from the partial lists (at most one look per unit) — and unmaps it.
    ///
    /// # Safety
    /// `ss` is a live owned SuperSlab with `live == 0`.
    pub(crate) unsafe fn release_superslab(&mut self, ss: *mut SuperSlab) {
        // SAFETY: per the caller; `live == 0` means no block is held or
        // pending, so nothing outside this heap refers to the SuperSlab.
        unsafe {
            self.detach_superslab(ss);
            self.unlink_superslab(ss);
            (*ss).magic = 0;
            self.source
                .unmap(NonNull::new_unchecked(ss.cast()), self.geo.superslab_size());
        }
        self.n.empty -= 1;
        self.n.superslabs -= 1;
        self.n.released += 1;
    }

    /// Unlinks an empty SuperSlab's slabs from the partial lists.
    ///
    /// # Safety
    /// `ss` is a live owned SuperSlab with `live == 0`.
    pub(crate) unsafe fn detach_superslab(&mut self, ss: *mut SuperSlab) {
        // SAFETY: per the caller; unit records are valid.
        unsafe {
            let mut u = 0usize;
            while u < self.geo.units as usize {
                let slab = SuperSlab::slab(ss, u);
                if (*slab).class == NO_CLASS {
                    u += 1;
                    continue;
                }
                if (*slab).class == MEDIUM_CLASS {
                    self.medium_unindex(slab);
                }
                if (*slab).flags & IN_PARTIAL != 0 {
                    self.unlink_partial(slab);
                }
                u += (*slab).span as usize;
            }
        }
    }

    /// Releases empty SuperSlabs until at most `keep` remain.
    pub(crate) fn release_empty(&mut self, keep: usize) -> usize {
        let mut released = 0;
        let mut ss = self.superslabs;
        while !ss.is_null() && self.n.empty > keep {
            // SAFETY: list members are live owned SuperSlabs; `next` is read
            // before `ss` may be released.
            unsafe {
                let next = (*ss).next;
                if (*ss).live == 0 {
                    self.release_superslab(ss);
                    released += 1;
                }
                ss = next;
            }
        }
        released
    }

    /// # Safety
    /// `ss` is live, owned and in no list.
    unsafe fn link_superslab(&mut self, ss: *mut SuperSlab) {
        // SAFETY: per the caller.
        unsafe {
            (*ss).prev = ptr::null_mut();
            (*ss).next = self.superslabs;
            if !self.superslabs.is_null() {
                (*self.superslabs).prev = ss;
            }
        }
        self.superslabs = ss;
        let base = ss as usize;
        let slot = (base >> self.geo.superslab_shift) % KNOWN;
        self.known[slot] = base;
    }

    /// # Safety
    /// `ss` is in the heap's SuperSlab list.
    unsafe fn unlink_superslab(&mut self, ss: *mut SuperSlab) {
        // SAFETY: per the caller.
        unsafe {
            let (prev, next) = ((*ss).prev, (*ss).next);
            if prev.is_null() {
                self.superslabs = next;
            } else {
                (*prev).next = next;
            }
            if !next.is_null() {
                (*next).prev = prev;
            }
        }
        let base = ss as usize;
        let slot = (base >> self.geo.superslab_shift) % KNOWN;
        if self.known[slot] == base {
            self.known[slot] = NO_SUPERSLAB;
        }
    }
}

/// Lowest index `i` such that bits `i .. i + k` of `mask` are all set.
#[inline]
pub(crate) fn find_run(mask: u64, k: u32) -> Option<u32> {
    let mut m = mask;
    let mut have = 1;
    // Doubling: after each step, bit i of m means bits i..i+have are set.
    while have < k {
        let step = have.min(k - have);
        m &= m >> step;
        have += step;
    }
    if m == 0 {
        None
    } else {
        Some(m.trailing_zeros())
    }
}

/// Mask with bits `first .. first + k`.
#[inline]
pub(crate) fn run_mask(first: u32, k: u32) -> u64 {
    let bits = if k >= 64 { u64::MAX } else { (1u64 << k) - 1 };
    bits << first
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_run_finds_lowest_run() {
        assert_eq!(find_run(0, 1), None);
        assert_eq!(find_run(0b1, 1), Some(0));
        assert_eq!(find_run(0b1011_0110, 2), Some(1));
        assert_eq!(find_run(0b1011_0110, 3), None);
        assert_eq!(find_run(0b1111_0110, 4), Some(4));
        assert_eq!(find_run(u64::MAX, 64), Some(0));
        assert_eq!(find_run(u64::MAX << 1, 63), Some(1));
        assert_eq!(find_run(u64::MAX << 1, 64), None);
        // Brute force against a plain scan.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..if cfg!(miri) { 50 } else { 2000 } {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let k = (x % 9) as u32 + 1;
            let want = (0..=64 - k).find(|&i| run_mask(i, k) & x == run_mask(i, k));
            assert_eq!(find_run(x, k), want, "mask {x:#x} k {k}");
        }
    }

    #[test]
    fn run_masks() {
        assert_eq!(run_mask(0, 1), 1);
        assert_eq!(run_mask(3, 2), 0b11000);
        assert_eq!(run_mask(0, 64), u64::MAX);
    }
}
