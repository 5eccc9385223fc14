//! Why a region or a heap set-up was refused.

use core::fmt;

use hakmem_core::ConfigError;

/// A refused [`init`](crate::BareHeap::init) or [`claim`](crate::BareHeap::claim)
/// (or [`FixedRegion::claim`](crate::FixedRegion::claim)). Nothing was written
/// and nothing changed when one of these is returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BareError {
    /// `init` on a heap that already has memory.
    AlreadyInitialized,
    /// `claim` (or an allocation-time operation) on a heap never `init`ed.
    NotInitialized,
    /// A region of zero bytes.
    ZeroLength,
    /// A region starting at the null address.
    Null,
    /// `start + len` wraps around the address space.
    Overflow,
    /// After rounding to pages and setting aside the region's own bookkeeping,
    /// the region cannot hold a single block the heap could use there.
    TooSmall,
    /// The region overlaps one already claimed.
    Overlap,
    /// [`MAX_REGIONS`](crate::MAX_REGIONS) regions are claimed already.
    TooManyRegions,
    /// The heap configuration is invalid.
    Config(ConfigError),
    /// A fault poisoned the heaps ([`is_poisoned`](crate::is_poisoned)).
    Poisoned,
}

impl From<ConfigError> for BareError {
    fn from(e: ConfigError) -> Self {
        BareError::Config(e)
    }
}

impl fmt::Display for BareError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let msg = match self {
            BareError::AlreadyInitialized => "the heap is already initialised",
            BareError::NotInitialized => "the heap is not initialised",
            BareError::ZeroLength => "the region is empty",
            BareError::Null => "the region starts at the null address",
            BareError::Overflow => "the region wraps around the address space",
            BareError::TooSmall => "the region is too small or misaligned to hold any block",
            BareError::Overlap => "the region overlaps one already claimed",
            BareError::TooManyRegions => "too many regions claimed",
            BareError::Poisoned => "a fault stopped the heap",
            BareError::Config(e) => return write!(f, "hakmem-bare: {e}"),
        };
        write!(f, "hakmem-bare: {msg}")
    }
}
