//! Heap configuration and the geometry derived from it.
//!
//! [`Config`] is what a user sets; [`Geometry`] is what the heap computes from
//! it once, at construction: SuperSlab and slab sizes, how many slab units the
//! SuperSlab header takes, and for each size class how many units one of its
//! slabs spans (or that the class is served as large blocks).
//!
//! Invariants:
//! - `unit_shift < superslab_shift`, `units = 2^(superslab_shift - unit_shift) <= 64`.
//! - `spans[c] == 0` exactly for the classes `>= slab_classes`.
//! - A slab of class `c` holds at least 8 blocks, so its tail waste is under 1/8.

use crate::size_class::{class_size, NUM_CLASSES};
use crate::{medium, superslab};

/// Smallest SuperSlab: 16 KiB (small embedded targets).
pub const MIN_SUPERSLAB_SHIFT: u8 = 14;
/// Largest SuperSlab: 8 MiB (block offsets must stay below 2^23 for the
/// division-free interior-pointer check, see `slab.rs`).
pub const MAX_SUPERSLAB_SHIFT: u8 = 23;
/// Default SuperSlab size on hosted targets: 2 MiB.
pub const DEFAULT_SUPERSLAB_SHIFT: u8 = 21;
/// Most slab units per SuperSlab (free units are a `u64` mask).
pub const MAX_UNITS: usize = 64;
/// Smallest slab unit: 256 B.
pub const MIN_UNIT_SHIFT: u8 = 8;
/// Fewest blocks in a slab: bounds a slab's tail waste to 1/8.
pub const MIN_BLOCKS_PER_SLAB: usize = 8;

/// What a heap is asked to be. All fields have documented defaults
/// ([`Config::DEFAULT`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// log2 of the SuperSlab size. Default 21 (2 MiB); 14 (16 KiB) to 23.
    pub superslab_shift: u8,
    /// log2 of a slab unit; 0 picks `superslab_shift - 6` (64 units), but
    /// at least 1 KiB units on small SuperSlabs.
    pub slab_shift: u8,
    /// Empty SuperSlabs kept mapped for reuse (the retain policy, K).
    /// Default 1; 0 returns every empty SuperSlab at once.
    pub retain: usize,
    /// Freed large blocks whose regions are kept mapped for reuse (their
    /// pages are still decommitted by `decommit_free`, and unmapped by
    /// `trim`). Default 0 (each freed large block is unmapped at once);
    /// capped to 8. hakmem-std sets 4.
    pub large_cache: usize,
    /// Serve requests between the slab classes and a SuperSlab from medium
    /// slabs (`medium.rs`: 16 B granularity, coalescing) instead of large
    /// blocks. Default off; on in [`Config::SMALL`].
    pub medium: bool,
    /// With `medium`: the largest request served from slabs (smaller ones
    /// than the geometry allows go to the medium tier, where a small heap
    /// loses less to partly used slabs). `usize::MAX`: every slab class the
    /// geometry allows; 0: none (every request is medium or large).
    pub slab_max: usize,
}

impl Config {
    /// The defaults: 2 MiB SuperSlabs, 64 units, retain 1.
    pub const DEFAULT: Config = Config {
        superslab_shift: DEFAULT_SUPERSLAB_SHIFT,
        slab_shift: 0,
        retain: 1,
        large_cache: 0,
        medium: false,
        slab_max: usize::MAX,
    };

    /// A small geometry for small RAM (and for Miri): 16 KiB SuperSlabs of
    /// 1 KiB units.
    pub const SMALL: Config = Config {
        superslab_shift: MIN_SUPERSLAB_SHIFT,
        slab_shift: 10,
        retain: 1,
        large_cache: 0,
        medium: true,
        slab_max: usize::MAX,
    };

    /// A geometry for a heap of about `bytes` of RAM in one region aligned
    /// to the SuperSlab size it picks (bare metal), with the medium tier on:
    /// - up to 128 KiB: one SuperSlab over the whole region (its largest
    ///   power of two, at least 16 KiB);
    /// - beyond: about 64 SuperSlabs (16 KiB to 8 MiB each);
    ///
    /// each of 2 units, every request medium or large: slabs would leave
    /// too much of a heap filled to its first failure in partly used slabs
    /// of many classes (measured in docs/design.md), and with no slabs the
    /// units serve only the medium slab over all of them, so the fewest
    /// units give the smallest header (16 units cost 1152 B of a 64 KiB
    /// SuperSlab: 1.3 points of efficiency at 4 MiB, docs/performance.md,
    /// session 17). Fewer SuperSlabs mean fewer arena boundaries (a block
    /// cannot straddle two) and fewer arenas to compare; about 64 keep the
    /// bare page source's bitmaps inside it (hakmem-bare's pages are an
    /// eighth of a SuperSlab; 512 of them fit).
    pub const fn for_heap(bytes: usize) -> Config {
        let log = if bytes < 2 {
            0
        } else {
            (usize::BITS - 1 - bytes.leading_zeros()) as u8
        };
        // One SuperSlab over a small heap; about 64 of them over a larger
        // one (2 units each: the smallest header).
        let ss = if log <= 17 {
            clamp(log)
        } else {
            clamp(log - 6)
        };
        Config {
            superslab_shift: ss,
            slab_shift: ss - 1,
            slab_max: 0,
            ..Config::SMALL
        }
    }

    /// Checks the configuration and derives the geometry.
    pub fn geometry(&self) -> Result<Geometry, ConfigError> {
        let ss = self.superslab_shift;
        if !(MIN_SUPERSLAB_SHIFT..=MAX_SUPERSLAB_SHIFT).contains(&ss) {
            return Err(ConfigError::SuperSlabSize);
        }
        let unit = if self.slab_shift == 0 {
            (ss - 6).max(10).min(ss - 2)
        } else {
            self.slab_shift
        };
        if unit < MIN_UNIT_SHIFT || unit >= ss || (1usize << (ss - unit)) > MAX_UNITS {
            return Err(ConfigError::SlabSize);
        }
        let units = 1usize << (ss - unit);
        let header = superslab::header_bytes(units);
        let unit_size = 1usize << unit;
        // Units wholly covered by the header are never free.
        let reserved = header / unit_size;
        if reserved * 2 >= units {
            return Err(ConfigError::SlabSize);
        }
        let max_span = (units - reserved) / 2;
        let mut spans = [0u8; NUM_CLASSES];
        let mut slab_classes = 0;
        let slab_max = if self.medium {
            self.slab_max
        } else {
            usize::MAX
        };
        for (c, span) in spans.iter_mut().enumerate() {
            let k = (class_size(c) * MIN_BLOCKS_PER_SLAB)
                .div_ceil(unit_size)
                .max(1);
            if k > max_span || class_size(c) > slab_max {
                break;
            }
            *span = k as u8;
            slab_classes = c + 1;
        }
        if slab_classes == 0 && !self.medium {
            return Err(ConfigError::SlabSize);
        }
        // The largest block a medium slab over every free unit holds (less
        // a granule, the slack an alignment may need).
        let medium_max = if self.medium {
            let g = medium::granules_for((1usize << ss) - header) as usize;
            (g << medium::GRANULE_SHIFT).saturating_sub(medium::GRANULE)
        } else {
            0
        };
        Ok(Geometry {
            superslab_shift: ss,
            mask: !((1usize << ss) - 1),
            unit_shift: unit,
            units: units as u8,
            header_bytes: header as u32,
            reserved_units: reserved as u8,
            slab_classes,
            spans,
            medium_max,
        })
    }
}

/// `x` within the SuperSlab shifts.
const fn clamp(x: u8) -> u8 {
    if x < MIN_SUPERSLAB_SHIFT {
        MIN_SUPERSLAB_SHIFT
    } else if x > MAX_SUPERSLAB_SHIFT {
        MAX_SUPERSLAB_SHIFT
    } else {
        x
    }
}

impl Default for Config {
    fn default() -> Self {
        Config::DEFAULT
    }
}

/// A configuration that cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// `superslab_shift` outside 14..=23.
    SuperSlabSize,
    /// `slab_shift` gives units smaller than 256 B, more than 64 per
    /// SuperSlab, or leaves no room after the header.
    SlabSize,
}

impl core::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let msg = match self {
            ConfigError::SuperSlabSize => "superslab_shift must be within 14..=23",
            ConfigError::SlabSize => {
                "slab_shift must give 256 B..SuperSlab/4 units, at most 64 per SuperSlab"
            }
        };
        f.write_str(msg)
    }
}

/// Sizes derived from a [`Config`]; fixed for the life of a heap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// log2 of the SuperSlab size.
    pub superslab_shift: u8,
    /// `!(superslab size - 1)`, precomputed for the free path.
    pub mask: usize,
    /// log2 of the slab unit size.
    pub unit_shift: u8,
    /// Units per SuperSlab.
    pub units: u8,
    /// Bytes of SuperSlab header (metadata) at the start of each SuperSlab.
    pub header_bytes: u32,
    /// Units wholly taken by the header.
    pub reserved_units: u8,
    /// Classes `0..slab_classes` are served from slabs; larger requests are
    /// large blocks.
    pub slab_classes: usize,
    /// Units spanned by one slab of each class (0: not a slab class).
    pub spans: [u8; NUM_CLASSES],
    /// Largest request served from the medium tier (0: off).
    pub medium_max: usize,
}

impl Geometry {
    /// SuperSlab size in bytes.
    #[inline]
    pub const fn superslab_size(&self) -> usize {
        1 << self.superslab_shift
    }
    /// Mask that takes any address inside a SuperSlab to its start.
    #[inline]
    pub const fn superslab_mask(&self) -> usize {
        self.mask
    }
    /// Slab unit size in bytes.
    #[inline]
    pub const fn unit_size(&self) -> usize {
        1 << self.unit_shift
    }
    /// Largest request (at alignment 16) served from a slab.
    pub const fn max_slab_size(&self) -> usize {
        if self.slab_classes == 0 {
            0
        } else {
            class_size(self.slab_classes - 1)
        }
    }
    /// Largest request (at alignment 16) served inside SuperSlabs, from a
    /// slab or the medium tier; larger ones are large blocks.
    pub const fn max_tiered_size(&self) -> usize {
        let s = self.max_slab_size();
        if self.medium_max > s {
            self.medium_max
        } else {
            s
        }
    }

    /// The free-unit mask of an empty SuperSlab: every unit not wholly taken
    /// by the header.
    pub const fn all_free_units(&self) -> u64 {
        let all = if self.units as u32 == 64 {
            u64::MAX
        } else {
            (1u64 << self.units) - 1
        };
        all & !((1u64 << self.reserved_units) - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_geometry() {
        let g = Config::DEFAULT.geometry().unwrap();
        assert_eq!(g.superslab_size(), 2 << 20);
        assert_eq!(g.unit_size(), 32 << 10);
        assert_eq!(g.units, 64);
        assert_eq!(g.max_slab_size(), 128 << 10);
        assert!(
            g.reserved_units == 0,
            "header {} fits in unit 0",
            g.header_bytes
        );
    }

    #[test]
    fn small_geometry() {
        let g = Config::SMALL.geometry().unwrap();
        assert_eq!(g.superslab_size(), 16 << 10);
        assert_eq!(g.units, 16);
        assert!(g.max_slab_size() >= 512, "{}", g.max_slab_size());
        for c in 0..g.slab_classes {
            let bytes = g.spans[c] as usize * g.unit_size();
            assert!(bytes / class_size(c) >= MIN_BLOCKS_PER_SLAB);
        }
    }

    #[test]
    fn bad_configs_are_refused() {
        let mut c = Config::DEFAULT;
        c.superslab_shift = 13;
        assert_eq!(c.geometry(), Err(ConfigError::SuperSlabSize));
        c.superslab_shift = 24;
        assert_eq!(c.geometry(), Err(ConfigError::SuperSlabSize));
        c = Config::DEFAULT;
        c.slab_shift = 12; // 512 units
        assert_eq!(c.geometry(), Err(ConfigError::SlabSize));
        c.slab_shift = 21;
        assert_eq!(c.geometry(), Err(ConfigError::SlabSize));
    }
}
