//! Errors of bad input: frees (and size queries) of pointers that are not
//! live blocks of a heap.

use core::fmt;

/// What is wrong with a pointer handed to `dealloc`, `realloc` or
/// `usable_size`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FreeErrorKind {
    /// The pointer lies in no memory this heap's page source handed out.
    NotOurs,
    /// The pointer lies in hakmem memory that is not an allocated block
    /// (metadata, a free slab unit, memory never carved).
    NotAllocated,
    /// The pointer lies inside a block but not at its start.
    Interior,
    /// The block is already free.
    DoubleFree,
    /// Bytes just past the block's requested size were overwritten (a
    /// buffer overflow). Found by `hardened` builds only.
    Overflow,
    /// Bytes just before the block were overwritten (a buffer underflow, or
    /// an overflow of the block below). Found by `hardened` builds only.
    Underflow,
}

/// A rejected pointer, with what is wrong with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FreeError {
    /// The address passed in.
    pub ptr: usize,
    /// The fault.
    pub kind: FreeErrorKind,
}

impl FreeErrorKind {
    /// A short description of the fault.
    pub const fn describe(self) -> &'static str {
        match self {
            FreeErrorKind::NotOurs => "pointer was not allocated by hakmem",
            FreeErrorKind::NotAllocated => {
                "pointer is inside hakmem memory but not an allocated block"
            }
            FreeErrorKind::Interior => "pointer is inside a block, not at its start",
            FreeErrorKind::DoubleFree => "double free",
            FreeErrorKind::Overflow => {
                "the bytes just past the block were overwritten (heap buffer overflow)"
            }
            FreeErrorKind::Underflow => {
                "the bytes just before the block were overwritten (heap buffer underflow, or an overflow of the block below)"
            }
        }
    }
}

impl fmt::Display for FreeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "hakmem: invalid free of {:#x}: {}",
            self.ptr,
            self.kind.describe()
        )
    }
}
