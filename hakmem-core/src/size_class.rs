//! Size classes: the block sizes slabs are carved into.
//!
//! Sizes up to [`EXACT_MAX`] (256 B) are served in exact steps of 16 B, so a
//! 16 B request costs 16 B. Above that there are eight classes per power of
//! two (steps of 1/8 of the power), which keeps internal waste — the bytes a
//! block has beyond the request, over the block size — below 12.5 % for every
//! request larger than 128 B. (Four classes per power of two, as mimalloc
//! has, cannot meet that bound: a request one byte above a power of two would
//! waste almost 1/5 of its block.) The table stops at [`MAX_CLASS_SIZE`];
//! a heap's geometry may serve fewer classes from slabs (see
//! [`Geometry`](crate::config::Geometry)), and larger requests are large blocks.
//!
//! Invariants:
//! - `CLASS_SIZES` is strictly increasing, every entry a multiple of 16.
//! - `class_of(s)` is the smallest class whose size is at least `s`.

/// Granularity and minimum alignment of every block, in bytes.
pub const MIN_ALIGN: usize = 16;
/// Largest size served in exact 16-byte steps.
pub const EXACT_MAX: usize = 256;
/// Classes per power of two above [`EXACT_MAX`].
pub const CLASSES_PER_DOUBLING: usize = 8;
/// Largest class size in the table (128 KiB).
pub const MAX_CLASS_SIZE: usize = 128 * 1024;

const EXACT_CLASSES: usize = EXACT_MAX / MIN_ALIGN;
const DOUBLINGS: usize = (MAX_CLASS_SIZE.trailing_zeros() - EXACT_MAX.trailing_zeros()) as usize;

/// Number of size classes.
pub const NUM_CLASSES: usize = EXACT_CLASSES + DOUBLINGS * CLASSES_PER_DOUBLING;

/// Block size of each class, built at compile time.
pub const CLASS_SIZES: [u32; NUM_CLASSES] = build_table();

const fn build_table() -> [u32; NUM_CLASSES] {
    let mut t = [0u32; NUM_CLASSES];
    let mut i = 0;
    while i < EXACT_CLASSES {
        t[i] = ((i + 1) * MIN_ALIGN) as u32;
        i += 1;
    }
    let mut d = 0;
    while d < DOUBLINGS {
        let base = EXACT_MAX << d;
        let step = base / CLASSES_PER_DOUBLING;
        let mut k = 1;
        while k <= CLASSES_PER_DOUBLING {
            t[i] = (base + k * step) as u32;
            i += 1;
            k += 1;
        }
        d += 1;
    }
    t
}

const _: () = {
    assert!(NUM_CLASSES <= 128, "class masks are u128");
    assert!(CLASS_SIZES[NUM_CLASSES - 1] as usize == MAX_CLASS_SIZE);
    assert!(EXACT_MAX / CLASSES_PER_DOUBLING >= MIN_ALIGN);
};

/// The size of class `class`. Panics if `class >= NUM_CLASSES`.
#[inline]
pub const fn class_size(class: usize) -> usize {
    CLASS_SIZES[class] as usize
}

/// The smallest class that holds `size` bytes (size 0 is served as 1), or
/// `None` above [`MAX_CLASS_SIZE`]. O(1): a shift for the exact range, a
/// leading-zero count above it.
#[inline]
pub const fn class_of(size: usize) -> Option<usize> {
    if size <= EXACT_MAX {
        let s = if size == 0 { 1 } else { size };
        return Some(s.div_ceil(MIN_ALIGN) - 1);
    }
    if size > MAX_CLASS_SIZE {
        return None;
    }
    // size lies in (2^k, 2^(k+1)] with k >= 8.
    let k = (usize::BITS - 1 - (size - 1).leading_zeros()) as usize;
    let base = 1usize << k;
    let step = base / CLASSES_PER_DOUBLING;
    let within = (size - base).div_ceil(step); // 1..=8
    Some(
        EXACT_CLASSES + (k - EXACT_MAX.trailing_zeros() as usize) * CLASSES_PER_DOUBLING + within
            - 1,
    )
}

/// Largest size [`class_of_table`] answers: 8 KiB, a 513-byte table.
pub const TABLE_MAX: usize = 8192;

/// `class_of` for every multiple of 16 up to [`TABLE_MAX`], indexed by
/// `ceil(size / 16)`, built at compile time.
static CLASS_TABLE: [u8; TABLE_MAX / MIN_ALIGN + 1] = {
    let mut t = [0u8; TABLE_MAX / MIN_ALIGN + 1];
    let mut i = 0;
    while i < t.len() {
        t[i] = match class_of(i * MIN_ALIGN) {
            Some(c) => c as u8,
            None => panic!("the table covers class sizes only"),
        };
        i += 1;
    }
    t
};

/// [`class_of`] by one table load, for `size <= TABLE_MAX` (the allocation
/// path's common case). Every class is a multiple of 16, so the class of
/// `size` is that of `size` rounded up to 16.
#[inline(always)]
pub fn class_of_table(size: usize) -> usize {
    debug_assert!(size <= TABLE_MAX);
    CLASS_TABLE[size.div_ceil(MIN_ALIGN)] as usize
}

/// The alignment every block of a class gets for free when its slab starts
/// suitably aligned: the largest power of two dividing the class size.
#[inline]
pub const fn natural_align(class: usize) -> usize {
    let s = class_size(class);
    s & s.wrapping_neg()
}

/// The smallest class whose blocks hold `size` bytes at alignment `align`
/// (a power of two), or `None` if no class does.
pub const fn class_for(size: usize, align: usize) -> Option<usize> {
    let need = if size > align { size } else { align };
    let mut c = match class_of(need) {
        Some(c) => c,
        None => return None,
    };
    // At most CLASSES_PER_DOUBLING steps: the next power of two is a class.
    while c < NUM_CLASSES {
        if natural_align(c) >= align {
            return Some(c);
        }
        c += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_monotone_and_granular() {
        assert_eq!(CLASS_SIZES[0], 16);
        for w in CLASS_SIZES.windows(2) {
            assert!(w[0] < w[1], "{} !< {}", w[0], w[1]);
        }
        for &s in CLASS_SIZES.iter() {
            assert_eq!(s as usize % MIN_ALIGN, 0);
        }
    }

    #[test]
    fn every_size_maps_to_smallest_fitting_class() {
        let step = if cfg!(miri) { 97 } else { 1 };
        let mut size = 0;
        while size <= MAX_CLASS_SIZE {
            let c = class_of(size).unwrap();
            assert!(
                class_size(c) >= size.max(1),
                "size {size}: class {c} too small"
            );
            if c > 0 {
                assert!(
                    class_size(c - 1) < size.max(1),
                    "size {size}: class {c} not smallest"
                );
            }
            size += step;
        }
        assert_eq!(class_of(MAX_CLASS_SIZE + 1), None);
        assert_eq!(class_of(usize::MAX), None);
    }

    #[test]
    fn waste_bound_beyond_first_classes() {
        // For every request above 128 B, waste = (block - request) / block < 1/8.
        let step = if cfg!(miri) { 61 } else { 1 };
        let mut size = 129;
        while size <= MAX_CLASS_SIZE {
            let b = class_size(class_of(size).unwrap());
            assert!((b - size) * 8 < b, "size {size} -> block {b}");
            size += step;
        }
    }

    #[test]
    fn the_table_agrees_with_the_computation() {
        for size in 0..=TABLE_MAX {
            assert_eq!(Some(class_of_table(size)), class_of(size), "size {size}");
        }
    }

    #[test]
    fn exact_small_sizes() {
        for c in 0..EXACT_CLASSES {
            assert_eq!(class_size(c), (c + 1) * 16);
            assert_eq!(class_of((c + 1) * 16), Some(c));
        }
        assert_eq!(class_size(class_of(16).unwrap()), 16);
        assert_eq!(class_of(0), Some(0));
    }

    #[test]
    fn aligned_classes_are_naturally_aligned() {
        for align_shift in 4..=17 {
            let align = 1usize << align_shift;
            for size in [1, align / 2, align, align + 1, 3 * align] {
                if let Some(c) = class_for(size, align) {
                    assert!(class_size(c) >= size);
                    assert_eq!(class_size(c) % align, 0);
                    assert!(natural_align(c) >= align);
                } else {
                    assert!(size.max(align) > MAX_CLASS_SIZE / 2 || size > MAX_CLASS_SIZE);
                }
            }
        }
        assert_eq!(class_for(100, 64).map(class_size), Some(128));
        assert_eq!(class_for(200, 64).map(class_size), Some(256));
    }
}
