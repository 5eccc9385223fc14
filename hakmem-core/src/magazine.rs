//! A magazine: the owner's bounded, per-class LIFO cache of freed blocks.
//!
//! It is an intrusive singly linked list threaded through the cached blocks
//! themselves (first word), with its length beside it, so a heap carries no
//! array of pointers and a magazine costs two words per class. Every block
//! entering a magazine has already been subtracted from its SuperSlab's and
//! slab's held counts (the slab counts it as `cached`), which is what keeps
//! the accounting exact: a cached block is never mistaken for a held one.
//!
//! Invariants:
//! - `len` is the number of blocks on the list;
//! - every block on the list belongs to a live SuperSlab of the owning heap
//!   and is counted in its slab's `used` but not in the SuperSlab's `held`.

use core::ptr;

use crate::slab::{corrupted, free_tag, Block};

/// A per-class cache of freed blocks.
pub(crate) struct Magazine {
    head: *mut Block,
    len: u32,
}

impl Magazine {
    /// An empty magazine.
    pub const EMPTY: Magazine = Magazine {
        head: ptr::null_mut(),
        len: 0,
    };

    /// Number of cached blocks.
    #[inline(always)]
    pub fn len(&self) -> u32 {
        self.len
    }

    /// Pushes a block.
    ///
    /// # Safety
    /// `block` is a free block of at least two words that nothing else uses.
    #[inline(always)]
    pub unsafe fn push(&mut self, block: *mut Block) {
        // SAFETY: the block is ours and large enough, per the caller.
        unsafe { (*block).next = self.head };
        self.head = block;
        self.len += 1;
    }

    /// Pops the most recently pushed block. A block whose free tag is gone
    /// was written after it was freed: its link cannot be trusted, and the
    /// heap stops with [`corrupted`] rather than follow it.
    #[inline(always)]
    pub fn pop(&mut self) -> Option<*mut Block> {
        let b = self.head;
        if b.is_null() {
            return None;
        }
        // SAFETY: every block on the list is a block of a live SuperSlab
        // (invariant); its tag says whether its link is still ours.
        unsafe {
            if (*b).tag != free_tag(b.cast()) {
                corrupted(b.cast());
            }
            self.head = (*b).next;
        }
        self.len -= 1;
        Some(b)
    }

    /// Calls `f` on every cached block, newest first.
    pub fn for_each(&self, mut f: impl FnMut(*mut Block)) {
        let mut b = self.head;
        while !b.is_null() {
            f(b);
            // SAFETY: blocks on the list are valid (invariant).
            b = unsafe { (*b).next };
        }
    }

    /// Detaches and returns the list of blocks after the first `keep`
    /// (the oldest ones), with its length.
    pub fn split_off(&mut self, keep: u32) -> (*mut Block, u32) {
        if keep >= self.len {
            return (ptr::null_mut(), 0);
        }
        if keep == 0 {
            let all = (self.head, self.len);
            *self = Magazine::EMPTY;
            return all;
        }
        let mut last = self.head;
        for _ in 1..keep {
            // SAFETY: `keep < len`, so these nodes exist (invariant).
            last = unsafe { (*last).next };
        }
        // SAFETY: `last` is the keep-th node, a valid block.
        let tail = unsafe { core::mem::replace(&mut (*last).next, ptr::null_mut()) };
        let n = self.len - keep;
        self.len = keep;
        (tail, n)
    }

    /// Removes every block for which `pred` holds, handing each to `take`.
    /// Returns how many were removed. Work: one pass over the magazine.
    pub fn evict(
        &mut self,
        mut pred: impl FnMut(*mut Block) -> bool,
        mut take: impl FnMut(*mut Block),
    ) -> u32 {
        let mut removed = 0;
        let mut link: *mut *mut Block = &mut self.head;
        // SAFETY: `link` always points at the head field or at the `next`
        // field of a block on the list; those blocks are valid (invariant).
        unsafe {
            while !(*link).is_null() {
                let b = *link;
                if pred(b) {
                    *link = (*b).next;
                    removed += 1;
                    take(b);
                } else {
                    link = &mut (*b).next;
                }
            }
        }
        self.len -= removed;
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocks<const N: usize>() -> [Block; N] {
        core::array::from_fn(|_| Block {
            next: ptr::null_mut(),
            tag: 0,
        })
    }

    #[test]
    #[should_panic(expected = "heap corruption")]
    fn a_block_written_after_free_is_not_followed() {
        let mut bs = blocks::<2>();
        let a: *mut Block = &mut bs[0];
        let b: *mut Block = &mut bs[1];
        let mut m = Magazine::EMPTY;
        // SAFETY: distinct test blocks.
        unsafe {
            (*a).tag = free_tag(a.cast());
            m.push(a);
            (*b).tag = free_tag(b.cast());
            m.push(b);
            // The application writes into `b` after freeing it.
            (*b).next = 0x0707_0707 as *mut Block;
            (*b).tag = 0x0707_0707;
        }
        m.pop();
    }

    #[test]
    fn lifo_split_and_evict() {
        let mut bs = blocks::<6>();
        let ptrs: [*mut Block; 6] = core::array::from_fn(|i| &mut bs[i] as *mut Block);
        let mut m = Magazine::EMPTY;
        for &p in &ptrs {
            // SAFETY: test blocks are distinct, live and unused; a freed
            // block carries its tag.
            unsafe {
                (*p).tag = free_tag(p.cast());
                m.push(p);
            }
        }
        assert_eq!(m.len(), 6);
        assert_eq!(m.pop(), Some(ptrs[5]));
        let (tail, n) = m.split_off(2); // keeps 4, 3
        assert_eq!(n, 3);
        assert_eq!(tail, ptrs[2]);
        assert_eq!(m.len(), 2);
        let mut gone = 0;
        assert_eq!(m.evict(|b| b == ptrs[3], |_| gone += 1), 1);
        assert_eq!(gone, 1);
        assert_eq!(m.pop(), Some(ptrs[4]));
        assert_eq!(m.pop(), None);
        assert_eq!(m.len(), 0);
        // SAFETY: as above.
        unsafe { m.push(ptrs[0]) };
        let (all, n) = m.split_off(0);
        assert_eq!((all, n), (ptrs[0], 1));
        assert_eq!(m.len(), 0);
    }
}
