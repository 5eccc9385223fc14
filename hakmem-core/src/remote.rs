//! Remote frees: how a thread frees a block that another heap owns, and how
//! the owner takes such frees back.
//!
//! The freeing thread never touches the owner's free lists. It checks the
//! block (as a local free does), marks it freed, raises its SuperSlab's
//! `remote_count` — so the owner's figures are exact from that moment — and
//! adds it to a small per-slab batch in its own heap ([`Outgoing`]). A batch
//! goes to the slab's lock-free `remote` list with one compare-and-swap when
//! it is full, when another slab wants its place, or when the freeing heap
//! collects, flushes or is dropped: one atomic operation carries many
//! blocks. A thread with no heap pushes each block at once ([`free_remote`]).
//!
//! The owner takes a slab's whole list with one swap (`collect_slab`): when
//! the slab it allocates from runs dry, and in [`Heap::collect`] before it
//! makes a new slab (or when asked). The list word carries its length
//! ([`RemoteList`]), so the swap alone says how many blocks came back: a
//! list taken by a slab whose free list is empty becomes that free list
//! unwalked (each block's tag is checked when it is popped, as on every
//! free list), one behind a free list no longer than itself is appended to
//! its tail, and only one in front of a longer free list is walked (tags
//! checked on the way). Before a new slab, current slabs that still have
//! free blocks keep their lists ([`Heap::collect_for_room`]). A pending
//! block stays counted in its slab's `used`, so neither the slab nor the
//! SuperSlab can be released under a pusher; the exact number the
//! application holds is `Σ used − remote_count`.
//!
//! A large block freed remotely is marked freed and its pages decommitted at
//! once; the owner unmaps it when it collects.
//!
//! Invariants:
//! - `remote_count >=` the total length of the SuperSlab's remote lists at
//!   every instant (raised before a block is batched, lowered after the
//!   owner took the blocks);
//! - a batched block is counted in `used` and `remote_count`, and its slab
//!   stays assigned until the batch is pushed;
//! - a slab's remote list is exactly as long as its word's count
//!   ([`RemoteList`]; `Heap::check` walks it);
//! - after a successful push the pusher touches neither block, slab nor
//!   SuperSlab.

use core::ptr;
#[cfg(target_has_atomic = "64")]
use core::sync::atomic::AtomicU64;
use core::sync::atomic::Ordering;

use crate::config::Geometry;
use crate::error::{FreeError, FreeErrorKind};
use crate::heap::Heap;
use crate::large::{LargeBlock, LARGE_FREED, LARGE_FREEING, LARGE_LIVE};
use crate::locate::{self, Found};
use crate::medium::MEDIUM_CLASS;
use crate::page_source::PageSource;
use crate::slab::{corrupted, free_tag, Block, Slab, IN_PARTIAL, NO_CLASS, PINNED};
use crate::superslab::SuperSlab;

/// Batches per heap, direct-mapped by the slab's size class: a thread that
/// frees blocks of many classes (a ring consumer frees blocks of every
/// class its producer allocates) keeps one batch per class, each filling
/// from the producer's current slab of that class. (Keyed by the slab
/// record's address instead, 8 batches held about 1.5 blocks each on the
/// ring's 24 classes: nearly a compare-and-swap per free.) Medium slabs
/// share one class, so they share a batch.
const BATCHES: usize = 32;
/// Blocks in a batch before it is pushed.
const BATCH_MAX: u32 = 32;

/// The batch of a slab's blocks: by its class ([`BATCHES`]).
///
/// # Safety
/// `slab` is an assigned slab of a live SuperSlab; its class is fixed while
/// it is assigned.
#[inline(always)]
unsafe fn batch_of(slab: *const Slab) -> usize {
    // SAFETY: per the caller.
    unsafe { (*slab).class as usize % BATCHES }
}

/// Blocks of one foreign slab on their way to its remote list.
#[derive(Clone, Copy)]
struct Batch {
    slab: *mut Slab,
    head: *mut Block,
    tail: *mut Block,
    n: u32,
}

impl Batch {
    const EMPTY: Batch = Batch {
        slab: ptr::null_mut(),
        head: ptr::null_mut(),
        tail: ptr::null_mut(),
        n: 0,
    };
}

/// A heap's batches of blocks freed into other heaps.
pub(crate) struct Outgoing {
    batches: [Batch; BATCHES],
    /// Blocks in all batches.
    pub blocks: usize,
}

impl Outgoing {
    /// Whether `blocks` is the sum of the batches' lengths, and each batch's
    /// chain has its length and ends at its tail (for `Heap::check`).
    pub fn check(&self) -> bool {
        let mut total = 0;
        for b in &self.batches {
            let mut n = 0;
            let mut p = b.head;
            let mut last = ptr::null_mut();
            while !p.is_null() && n <= b.n {
                n += 1;
                last = p;
                // SAFETY: a batch's blocks are valid until it is pushed.
                p = unsafe { (*p).next };
            }
            if n != b.n || last != b.tail || (b.n == 0) != b.slab.is_null() {
                return false;
            }
            total += n as usize;
        }
        total == self.blocks
    }

    /// No batch.
    pub const EMPTY: Outgoing = Outgoing {
        batches: [Batch::EMPTY; BATCHES],
        blocks: 0,
    };
}

/// A slab's list of blocks freed by other threads: a lock-free stack that
/// any thread pushes chains onto and the owner takes whole, which knows its
/// own length. With 64-bit atomics it is one word, `(length << 32) |
/// offset of the head from the SuperSlab base` (0: empty; offset 0 is the
/// header, never a block): a push adds its chain's length in the same
/// compare-and-swap that links it, so the owner learns how many blocks it
/// took from the swap alone and need not walk the list to count it (the
/// walk was one cache miss per block, each block just written by the
/// freeing core, a quarter of the producer's time in a producer/consumer
/// ring). Without 64-bit atomics the word is the head pointer and the owner
/// counts by walking.
///
/// Invariants: the chain from the head is exactly `length` blocks long,
/// ends in null, and only grows at the front; offsets and lengths fit 32
/// bits (a SuperSlab is at most 2^`MAX_SUPERSLAB_SHIFT` bytes, asserted
/// below).
#[repr(transparent)]
pub(crate) struct RemoteList(Word);

#[cfg(target_has_atomic = "64")]
type Word = AtomicU64;

// Offsets inside a SuperSlab, and so block counts, fit the word's halves.
const _: () = assert!(
    crate::config::MAX_SUPERSLAB_SHIFT <= 32,
    "a remote list word holds a 32-bit offset and a 32-bit count"
);
#[cfg(not(target_has_atomic = "64"))]
type Word = core::sync::atomic::AtomicPtr<Block>;

impl RemoteList {
    /// An empty list.
    pub const fn new() -> Self {
        #[cfg(target_has_atomic = "64")]
        return RemoteList(AtomicU64::new(0));
        #[cfg(not(target_has_atomic = "64"))]
        RemoteList(core::sync::atomic::AtomicPtr::new(ptr::null_mut()))
    }

    /// Whether the list is empty (a relaxed load: a hint unless the caller
    /// orders it otherwise).
    #[inline(always)]
    pub fn is_empty(&self) -> bool {
        #[cfg(target_has_atomic = "64")]
        return self.0.load(Ordering::Relaxed) == 0;
        #[cfg(not(target_has_atomic = "64"))]
        self.0.load(Ordering::Relaxed).is_null()
    }

    /// Links the chain `head ..= tail` of `n` blocks in front of the list
    /// with one compare-and-swap (Release: the chain's links are visible to
    /// whoever takes it).
    ///
    /// # Safety
    /// The list is a slab record's in the live SuperSlab `ss`; the chain is
    /// `n` marked, counted blocks of that slab, linked through `next`, and
    /// `tail` ends it; nothing else links them.
    #[inline]
    unsafe fn push(&self, ss: *mut SuperSlab, head: *mut Block, tail: *mut Block, n: u32) {
        // SAFETY: per the caller; after the CAS we touch nothing.
        unsafe {
            #[cfg(target_has_atomic = "64")]
            {
                let add = ((n as u64) << 32) | (head as usize - ss as usize) as u64;
                let mut top = self.0.load(Ordering::Relaxed);
                loop {
                    (*tail).next = decode(ss, top).0;
                    let new = (top & !0xffff_ffff) + add;
                    match self.0.compare_exchange_weak(
                        top,
                        new,
                        Ordering::Release,
                        Ordering::Relaxed,
                    ) {
                        Ok(_) => return,
                        Err(t) => top = t,
                    }
                }
            }
            #[cfg(not(target_has_atomic = "64"))]
            {
                let _ = (ss, n);
                let mut top = self.0.load(Ordering::Relaxed);
                loop {
                    (*tail).next = top;
                    match self.0.compare_exchange_weak(
                        top,
                        head,
                        Ordering::Release,
                        Ordering::Relaxed,
                    ) {
                        Ok(_) => return,
                        Err(t) => top = t,
                    }
                }
            }
        }
    }

    /// Takes the whole list: its head (null when empty) and length.
    ///
    /// # Safety
    /// The list is a slab record's in the live SuperSlab `ss`, and the
    /// caller is its owner.
    #[inline]
    unsafe fn take(&self, ss: *mut SuperSlab) -> (*mut Block, u32) {
        #[cfg(target_has_atomic = "64")]
        {
            // SAFETY: per the caller.
            unsafe { decode(ss, self.0.swap(0, Ordering::Acquire)) }
        }
        #[cfg(not(target_has_atomic = "64"))]
        {
            let _ = ss;
            let head = self.0.swap(ptr::null_mut(), Ordering::Acquire);
            // SAFETY: the swap made the chain ours; each tag is checked
            // before its link is followed.
            (head, unsafe { chain_len(head) })
        }
    }

    /// The list as it is now, head and length, left in place (for checks).
    ///
    /// # Safety
    /// As [`take`](Self::take), or a caller that only reads the chain.
    pub unsafe fn peek(&self, ss: *mut SuperSlab) -> (*mut Block, u32) {
        #[cfg(target_has_atomic = "64")]
        {
            // SAFETY: per the caller.
            unsafe { decode(ss, self.0.load(Ordering::Acquire)) }
        }
        #[cfg(not(target_has_atomic = "64"))]
        {
            let _ = ss;
            let head = self.0.load(Ordering::Acquire);
            let mut n = 0;
            let mut b = head;
            while !b.is_null() {
                n += 1;
                // SAFETY: pushed chains are only prepended to.
                b = unsafe { (*b).next };
            }
            (head, n)
        }
    }
}

/// A packed list word as head pointer (derived from `ss`, so it keeps the
/// SuperSlab's provenance) and length.
///
/// # Safety
/// `w` is a [`RemoteList`] word of a slab of the live SuperSlab `ss`.
#[cfg(target_has_atomic = "64")]
#[inline(always)]
unsafe fn decode(ss: *mut SuperSlab, w: u64) -> (*mut Block, u32) {
    let off = (w & 0xffff_ffff) as usize;
    let head = if off == 0 {
        ptr::null_mut()
    } else {
        // SAFETY: a nonzero offset is a block's inside `ss` (invariants).
        unsafe { ss.cast::<u8>().add(off).cast::<Block>() }
    };
    (head, (w >> 32) as u32)
}

/// Walks a taken chain, checking each block's free tag before following its
/// link (a block written after it was freed stops the program); returns
/// its length and last block.
///
/// # Safety
/// `head` is a taken remote chain (null or marked blocks linked by `next`).
unsafe fn chain_walk(head: *mut Block) -> (u32, *mut Block) {
    let mut n = 0;
    let mut tail = ptr::null_mut();
    let mut b = head;
    // SAFETY: per the caller; the tag vouches for the link beside it.
    unsafe {
        while !b.is_null() {
            if (*b).tag != free_tag(b.cast()) {
                corrupted(b.cast());
            }
            n += 1;
            tail = b;
            b = (*b).next;
        }
    }
    (n, tail)
}

/// Puts the taken chain `head` of `n` blocks in front of `slab`'s free list,
/// walking it to find its tail: each tag is checked (and, hardened, each
/// block's canaries, and the block poisoned) before its link is followed,
/// and a chain whose length is not `n` stops the program.
///
/// # Safety
/// `slab` is an assigned small slab of the live owned SuperSlab `ss`, and
/// `head` the non-empty chain just taken from its remote list.
unsafe fn splice_walked(ss: *mut SuperSlab, slab: *mut Slab, head: *mut Block, n: u32) {
    let _ = ss;
    // SAFETY: per the caller.
    unsafe {
        let (k, tail) = chain_walk(head);
        #[cfg(feature = "hardened")]
        {
            let mut b = head;
            while !b.is_null() {
                crate::hardened::check_collected(ss, slab, b.cast());
                b = (*b).next;
            }
        }
        if k != n {
            corrupted(head.cast());
        }
        (*tail).next = (*slab).free;
        (*slab).free = head;
    }
}

/// The last block of `slab`'s free list if the list (not empty) is at
/// most `limit` blocks long, else `None`; each block's tag is checked before
/// its link is followed.
///
/// # Safety
/// `slab` is an assigned slab of a live owned SuperSlab, with a non-empty
/// free list.
unsafe fn free_list_tail(slab: *mut Slab, limit: u32) -> Option<*mut Block> {
    // SAFETY: per the caller; the tag vouches for the link beside it.
    unsafe {
        let mut b = (*slab).free;
        for _ in 0..limit {
            if (*b).tag != free_tag(b.cast()) {
                corrupted(b.cast());
            }
            let next = (*b).next;
            if next.is_null() {
                return Some(b);
            }
            b = next;
        }
    }
    None
}

/// The length of a taken chain (see [`chain_walk`]).
///
/// # Safety
/// As [`chain_walk`].
#[cfg(not(target_has_atomic = "64"))]
unsafe fn chain_len(head: *mut Block) -> u32 {
    // SAFETY: per the caller.
    unsafe { chain_walk(head).0 }
}

/// Frees a block on behalf of a thread that does not own it (or has no
/// heap at all): the block goes to its owner's remote list at once. `geo`
/// must be the owning heap's geometry.
///
/// # Safety
/// If `ptr` is a live block, nothing uses it afterwards; the same pointer
/// rules as [`Heap::dealloc`](crate::Heap::dealloc) apply.
pub unsafe fn free_remote<P: PageSource>(
    source: &P,
    geo: &Geometry,
    ptr: *mut u8,
) -> Result<(), FreeError> {
    if ptr.is_null() {
        return Ok(());
    }
    // SAFETY: `locate` reads only headers that `contains` vouched for.
    match unsafe { locate::locate(source, geo, ptr) } {
        Err(kind) => Err(FreeError {
            ptr: ptr as usize,
            kind,
        }),
        // SAFETY: `locate` found a live SuperSlab and slab holding `ptr`.
        Ok(Found::Small { ss, slab }) => unsafe {
            mark_freed(ss, slab, ptr, geo.units)?;
            let b = ptr.cast::<Block>();
            (*slab).remote.push(ss, b, b, 1);
            Ok(())
        },
        // SAFETY: `locate` found a live large block.
        Ok(Found::Large(h)) => unsafe {
            #[cfg(feature = "hardened")]
            if (*h).state.load(Ordering::Acquire) == crate::large::LARGE_LIVE {
                crate::hardened::check_large(h).map_err(|kind| FreeError {
                    ptr: ptr as usize,
                    kind,
                })?;
            }
            free_large(source, h)
        },
    }
}

/// Checks that a located block is not already free, marks it freed and
/// counts it pending in its SuperSlab.
///
/// # Safety
/// `ss` is a live SuperSlab and `ptr` a carved block start of it
/// (`locate` said so); the block is the application's to give.
unsafe fn mark_freed(
    ss: *mut SuperSlab,
    slab: *mut Slab,
    ptr: *mut u8,
    units: u8,
) -> Result<(), FreeError> {
    let _ = (units, slab);
    let b = ptr.cast::<Block>();
    // SAFETY: per the caller nobody else writes the block.
    unsafe {
        if (*b).tag == free_tag(ptr) {
            return Err(FreeError {
                ptr: ptr as usize,
                kind: FreeErrorKind::DoubleFree,
            });
        }
        // (Hardened: the canaries are checked, and the block poisoned, by
        // the owner when it collects the block: `check_collected`; those on
        // the first line here, before the tag covers them.)
        #[cfg(feature = "hardened")]
        crate::hardened::check_remote_free(slab, ptr).map_err(|kind| FreeError {
            ptr: ptr as usize,
            kind,
        })?;
        (*b).tag = free_tag(ptr);
        // Count first: the owner must never take a block it has not counted.
        (*ss).remote_count.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

impl<P: PageSource> Heap<P> {
    /// Frees a block of another heap's SuperSlab: marks and counts it, then
    /// batches it for its slab.
    ///
    /// # Safety
    /// `ss` and `slab` hold `ptr`, as `locate` found them.
    pub(crate) unsafe fn send_remote(
        &mut self,
        ss: *mut SuperSlab,
        slab: *mut Slab,
        ptr: *mut u8,
    ) -> Result<(), FreeError> {
        // SAFETY: per the caller.
        unsafe { mark_freed(ss, slab, ptr, self.geo.units)? };
        // SAFETY: per the caller.
        let i = unsafe { batch_of(slab) };
        let b = ptr.cast::<Block>();
        // SAFETY: `b` is ours to link (marked freed); a batch's blocks and
        // slab stay valid until it is pushed (module invariants).
        unsafe {
            if self.outgoing.batches[i].slab == slab {
                self.join_batch(i, b);
            } else {
                self.push_batch(i);
                (*b).next = ptr::null_mut();
                self.outgoing.batches[i] = Batch {
                    slab,
                    head: b,
                    tail: b,
                    n: 1,
                };
                self.outgoing.blocks += 1;
            }
        }
        if self.outgoing.batches[i].n >= BATCH_MAX {
            self.push_batch(i);
        }
        Ok(())
    }

    /// The cross-thread free's common case, for [`Heap::dealloc_unknown`]
    /// to try before anything else: `ptr` is a carved block, not tagged
    /// free, of a slab of another heap's SuperSlab, and the batch of the
    /// slab's class holds that slab with room for one more — then the block
    /// is marked, counted and joins the batch, and the answer is true. False,
    /// with nothing changed, for everything else (null, a large block, a new
    /// batch or a full one, an own block, a bad pointer), which the full path
    /// frees or reports, making every check again. Kept to what needs no
    /// call, so its caller saves no registers for it. Default build only
    /// (`FAST_PATHS`): it reads the header at the masked address, as the
    /// default build's `locate` does; the hardened one reads headers only
    /// at a region's start.
    ///
    /// # Safety
    /// As [`Heap::dealloc`].
    #[inline(always)]
    pub(crate) unsafe fn send_remote_batched(&mut self, ptr: *mut u8) -> bool {
        let p = ptr as usize;
        let base = p & self.geo.superslab_mask();
        if base == p {
            return false;
        }
        // SAFETY: per the caller (the source's `contains` is truthful); a
        // block that passes `check_carved` is a block boundary of the slab's
        // carved range, whose first words are the application's to give
        // and ours to read; the batch's slab is assigned while it holds
        // blocks (module invariants).
        unsafe {
            let Some(ss) = locate::superslab_at(&self.source, ptr, base) else {
                return false;
            };
            if (*ss).owner.load(Ordering::Relaxed) == self.id {
                return false;
            }
            let slab = SuperSlab::slab_of(ss, p, self.geo.unit_shift);
            if locate::check_carved(slab, p - base).is_err() {
                return false;
            }
            let i = batch_of(slab);
            let batch = &self.outgoing.batches[i];
            if batch.slab != slab || batch.n + 1 >= BATCH_MAX {
                return false;
            }
            if mark_freed(ss, slab, ptr, self.geo.units).is_err() {
                return false;
            }
            self.join_batch(i, ptr.cast());
        }
        true
    }

    /// Links `b`, a block marked freed of batch `i`'s slab, into that batch.
    ///
    /// # Safety
    /// Batch `i` holds `b`'s slab; `b` is ours to link.
    #[inline(always)]
    unsafe fn join_batch(&mut self, i: usize, b: *mut Block) {
        let batch = &mut self.outgoing.batches[i];
        // SAFETY: per the caller.
        unsafe { (*b).next = batch.head };
        batch.head = b;
        batch.n += 1;
        self.outgoing.blocks += 1;
    }

    /// Pushes batch `i` (if any) to its slab.
    fn push_batch(&mut self, i: usize) {
        let batch = core::mem::replace(&mut self.outgoing.batches[i], Batch::EMPTY);
        if batch.n != 0 {
            let ss = self.superslab_of(batch.slab.cast());
            // SAFETY: a batch holds `n` marked, counted blocks of its slab,
            // an assigned slab of the live SuperSlab `ss`.
            unsafe {
                (*batch.slab)
                    .remote
                    .push(ss, batch.head, batch.tail, batch.n)
            };
            self.outgoing.blocks -= batch.n as usize;
        }
    }

    /// Hands every batch of blocks freed into other heaps to its owner.
    pub(crate) fn push_outgoing(&mut self) {
        if self.outgoing.blocks != 0 {
            for i in 0..BATCHES {
                self.push_batch(i);
            }
        }
    }

    /// Collects the blocks other threads freed into this heap's slabs and
    /// the large blocks they freed, making the accounting exact again and
    /// releasing what became empty; first hands this heap's own batches to
    /// their owners. Returns how many blocks it took. Work: one look at
    /// each owned SuperSlab and large block, one look per slab of a
    /// SuperSlab with pending frees, plus at most two steps per collected
    /// block (its list, or as many blocks of the free list it joins).
    pub fn collect(&mut self) -> usize {
        self.collect_pending(false)
    }

    /// [`collect`](Self::collect) before a new slab is made: the same,
    /// except that a current slab that has free blocks keeps its remote
    /// list unless taking it would empty the slab. Such a slab is pinned
    /// (counted live whatever it holds, `account.rs`), so taking its list
    /// would release nothing and give no other class room, only walk blocks
    /// the freeing core just wrote (in a producer/consumer ring, the list
    /// that became the free list at the last collection, not yet popped,
    /// in every class the producer uses); it takes the list itself when it
    /// runs dry, and [`Heap::flush`] takes every list.
    pub(crate) fn collect_for_room(&mut self) -> usize {
        self.collect_pending(true)
    }

    /// [`collect`](Self::collect); `room_only` as in
    /// [`collect_for_room`](Self::collect_for_room).
    fn collect_pending(&mut self, room_only: bool) -> usize {
        self.push_outgoing();
        let mut n = 0;
        let mut ss = self.superslabs;
        while !ss.is_null() {
            // SAFETY: list members are live owned SuperSlabs; `next` is read
            // before `ss` may be released.
            unsafe {
                let next = (*ss).next;
                if (*ss).remote_count.load(Ordering::Relaxed) != 0 {
                    n += self.collect_superslab(ss, room_only);
                }
                ss = next;
            }
        }
        n + self.collect_large()
    }

    /// # Safety
    /// `ss` is a live owned SuperSlab.
    unsafe fn collect_superslab(&mut self, ss: *mut SuperSlab, room_only: bool) -> usize {
        let mut n = 0;
        let mut u = 0usize;
        // SAFETY: per the caller; unit records are valid. Once the SuperSlab
        // empties (and may be gone) no slab of it has pending blocks left.
        unsafe {
            while u < self.geo.units as usize {
                let slab = SuperSlab::slab(ss, u);
                if (*slab).class == NO_CLASS {
                    u += 1;
                    continue;
                }
                u += (*slab).span as usize;
                if room_only
                    && (*slab).flags & PINNED != 0
                    && !(*slab).free.is_null()
                    && (*slab).remote.peek(ss).1 != (*slab).used
                {
                    continue;
                }
                let (k, emptied) = self.collect_slab(ss, slab);
                n += k as usize;
                if emptied {
                    break;
                }
            }
        }
        n
    }

    /// Takes `slab`'s remote list whole onto its free list. Returns how many
    /// blocks it took and whether that emptied the SuperSlab (which may then
    /// be released: the caller touches neither again).
    ///
    /// # Safety
    /// `slab` is an assigned slab of the live owned SuperSlab `ss`.
    pub(crate) unsafe fn collect_slab(
        &mut self,
        ss: *mut SuperSlab,
        slab: *mut Slab,
    ) -> (u32, bool) {
        // SAFETY: the swap hands us the whole list; pushers publish each
        // chain with Release before it is reachable, so its links are
        // visible after our Acquire; each is a counted block of `slab`.
        unsafe {
            // A plain load first: most slabs have nothing pending, and a
            // swap would take the line exclusive for nothing.
            if (*slab).remote.is_empty() {
                return (0, false);
            }
            let (head, n) = (*slab).remote.take(ss);
            if head.is_null() {
                return (0, false);
            }
            if (*slab).class == MEDIUM_CLASS {
                let k = self.collect_medium(ss, slab, head);
                if k != n {
                    corrupted(head.cast());
                }
            } else if cfg!(feature = "hardened") {
                // Every collected block's canaries are checked (and the
                // block poisoned): the walk is the check.
                splice_walked(ss, slab, head, n);
            } else if (*slab).free.is_null() {
                // The list becomes the free list as it is: no walk. Each
                // block's tag is checked when it is popped (`take_free`),
                // before its link is followed, as on every free list.
                (*slab).free = head;
            } else if let Some(t) = free_list_tail(slab, n) {
                // A local free list no longer than the chain (the owner's
                // own, warm blocks): the chain goes behind it, unwalked.
                (*t).next = head;
            } else {
                splice_walked(ss, slab, head, n);
            }
            (*ss).remote_count.fetch_sub(n as usize, Ordering::Release);
            if (*slab).class != MEDIUM_CLASS && (*slab).flags & IN_PARTIAL == 0 {
                self.link_partial_tail(slab);
            }
            let emptied = (*slab).used == n && (*ss).live == 1;
            self.count_free(slab, n);
            (n, emptied)
        }
    }

    /// Whether other threads freed blocks (small or large) into this heap
    /// that [`collect`](Self::collect) has not taken yet, or this heap holds
    /// batches of blocks freed into others. Reads one atomic per SuperSlab
    /// and large block.
    pub fn has_pending(&self) -> bool {
        if self.outgoing.blocks != 0 {
            return true;
        }
        let mut ss = self.superslabs;
        while !ss.is_null() {
            // SAFETY: list members are live owned SuperSlabs.
            unsafe {
                if (*ss).remote_count.load(Ordering::Relaxed) != 0 {
                    return true;
                }
                ss = (*ss).next;
            }
        }
        let mut h = self.large;
        while !h.is_null() {
            // SAFETY: list members are live large block headers.
            unsafe {
                if (*h).state.load(Ordering::Relaxed) != LARGE_LIVE {
                    return true;
                }
                h = (*h).next;
            }
        }
        false
    }
}

/// Frees a large block owned by another heap: marks it freeing (a second
/// mark is a double free), decommits its pages now, then marks it freed so
/// the owner may unmap it (never while the decommit runs).
///
/// # Safety
/// `h` is a live large block header from `locate`.
pub(crate) unsafe fn free_large<P: PageSource>(
    source: &P,
    h: *mut LargeBlock,
) -> Result<(), FreeError> {
    // SAFETY: `h` is live; its state is only changed atomically.
    unsafe {
        if (*h)
            .state
            .compare_exchange(
                LARGE_LIVE,
                LARGE_FREEING,
                Ordering::AcqRel,
                Ordering::Relaxed,
            )
            .is_err()
        {
            return Err(FreeError {
                ptr: (*h).user,
                kind: FreeErrorKind::DoubleFree,
            });
        }
        if P::CAN_DECOMMIT {
            LargeBlock::decommit_body(h, source);
        }
        (*h).state.store(LARGE_FREED, Ordering::Release);
    }
    Ok(())
}
