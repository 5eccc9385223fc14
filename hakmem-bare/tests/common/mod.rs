//! Backing memory for the tests: aligned buffers with guard bytes around
//! the part handed to the heap, so any write out of bounds is seen.
#![allow(dead_code)]

use std::alloc::{alloc, dealloc, Layout};

/// The byte the guards and the untouched memory hold.
pub const GUARD: u8 = 0xA5;
/// Guard bytes on each side.
pub const GUARD_LEN: usize = 4096;

/// `len` bytes at `offset` from an `align`-aligned address, with guards.
pub struct Arena {
    base: *mut u8,
    layout: Layout,
    offset: usize,
    len: usize,
}

// SAFETY: an arena's own methods only read its memory (the guards, the
// bounds); what the heap under test writes there it synchronises itself.
unsafe impl Sync for Arena {}
// SAFETY: as above; the allocation moves with the value.
unsafe impl Send for Arena {}

impl Arena {
    /// The usable part starts `offset` bytes past an `align` boundary.
    pub fn new(len: usize, align: usize, offset: usize) -> Arena {
        let pre = GUARD_LEN.next_multiple_of(align);
        let layout = Layout::from_size_align(pre + offset + len + GUARD_LEN, align).unwrap();
        // SAFETY: the layout has a non-zero size.
        let base = unsafe { alloc(layout) };
        assert!(!base.is_null());
        // SAFETY: the whole allocation is ours.
        unsafe { base.write_bytes(GUARD, layout.size()) };
        Arena {
            base,
            layout,
            offset: pre + offset,
            len,
        }
    }

    /// An aligned arena.
    pub fn aligned(len: usize, align: usize) -> Arena {
        Arena::new(len, align, 0)
    }

    /// The start of the usable part.
    pub fn start(&self) -> *mut u8 {
        // SAFETY: inside the allocation.
        unsafe { self.base.add(self.offset) }
    }

    /// The usable length.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether `[p, p + n)` lies inside the usable part.
    pub fn holds(&self, p: *const u8, n: usize) -> bool {
        let s = self.start() as usize;
        (p as usize) >= s && (p as usize) + n <= s + self.len
    }

    /// Panics if a guard byte changed.
    pub fn check_guards(&self) {
        // SAFETY: the whole allocation is ours and initialised.
        let all = unsafe { std::slice::from_raw_parts(self.base, self.layout.size()) };
        let (before, rest) = all.split_at(self.offset);
        let after = &rest[self.len..];
        if let Some(i) = before.iter().position(|&b| b != GUARD) {
            panic!(
                "guard byte written {} bytes before the region",
                self.offset - i
            );
        }
        if let Some(i) = after.iter().position(|&b| b != GUARD) {
            panic!("guard byte written {i} bytes after the region");
        }
    }

    /// Whether every byte of the usable part still holds `GUARD`.
    pub fn untouched(&self) -> bool {
        // SAFETY: as above.
        let all = unsafe { std::slice::from_raw_parts(self.start(), self.len) };
        all.iter().all(|&b| b == GUARD)
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            self.check_guards();
        }
        // SAFETY: allocated with this layout in `new`.
        unsafe { dealloc(self.base, self.layout) };
    }
}

/// A small deterministic generator (xorshift64*).
pub struct Rng(pub u64);

impl Rng {
    /// The next number.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}
