//! The model's map of live blocks by address (start → end), shared by the
//! targets: a new block must overlap none of them.

use std::collections::BTreeMap;

/// Live blocks' byte ranges, `start → end` (end exclusive).
pub type Ranges = BTreeMap<usize, usize>;

/// The live range that `[start, end)` overlaps, if any (the nearest one at
/// or below `start`, else the first above it).
pub fn overlap(live: &Ranges, start: usize, end: usize) -> Option<(usize, usize)> {
    let below = live.range(..=start).next_back().filter(|(_, &e)| e > start);
    let above = live.range(start..).next().filter(|(&s, _)| s < end);
    below.or(above).map(|(&s, &e)| (s, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlap_finds_neighbours_that_intersect() {
        let live: Ranges = [(100, 200), (300, 400)].into_iter().collect();
        assert_eq!(overlap(&live, 200, 300), None);
        assert_eq!(overlap(&live, 0, 100), None);
        assert_eq!(overlap(&live, 199, 250), Some((100, 200)));
        assert_eq!(overlap(&live, 250, 301), Some((300, 400)));
        assert_eq!(overlap(&live, 100, 101), Some((100, 200)));
        assert_eq!(overlap(&live, 0, 1000), Some((100, 200)));
    }
}
