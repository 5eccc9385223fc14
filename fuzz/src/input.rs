//! Decoding a fuzz input: a cursor over its bytes that yields small
//! integers and stops the run when the input is exhausted.

/// A cursor over the fuzz input. Every read returns `None` once the bytes
/// run out, which ends the operation sequence.
pub struct Input<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Input<'a> {
    /// A cursor at the start of `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Input { data, pos: 0 }
    }

    /// The next byte.
    pub fn u8(&mut self) -> Option<u8> {
        let b = *self.data.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }

    /// The next two bytes, little-endian.
    pub fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes([self.u8()?, self.u8()?]))
    }

    /// The next four bytes, little-endian.
    pub fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes([
            self.u8()?,
            self.u8()?,
            self.u8()?,
            self.u8()?,
        ]))
    }

    /// An index below `n` (`n > 0`), from two bytes.
    pub fn index(&mut self, n: usize) -> Option<usize> {
        Some(self.u16()? as usize % n)
    }

    /// Whether bytes remain.
    pub fn is_empty(&self) -> bool {
        self.pos >= self.data.len()
    }
}

const KIB: usize = 1 << 10;

/// A request size from three bytes, spread over every tier: tiny (the 16 B
/// steps up to 256 B), the eight-per-doubling slab classes up to 128 KiB,
/// the edges of the geometry (`max_slab` and `unit`, ± 2 bytes), and large
/// blocks up to `max_large` (mostly up to 512 KiB; few inputs reach more).
pub fn size(inp: &mut Input<'_>, max_slab: usize, unit: usize, max_large: usize) -> Option<usize> {
    let sel = inp.u8()?;
    let v = inp.u16()? as usize;
    let s = match sel % 16 {
        0..=4 => v % 257,
        5..=7 => 257 + v % (4 * KIB),
        8..=9 => 4 * KIB + v % (60 * KIB),
        10 => 64 * KIB + v % (64 * KIB),
        11 => (max_slab + v % 5).saturating_sub(2),
        12 => (unit + v % 5).saturating_sub(2),
        13..=14 => 128 * KIB + (v << 3) % (384 * KIB),
        _ => 512 * KIB + (v << 6) % (max_large.max(512 * KIB + 1) - 512 * KIB),
    };
    Some(s)
}

/// An alignment from one byte: mostly 1 to 16, then up to 4 KiB, a few up
/// to 64 KiB (beyond a slab unit on small geometries), rarely 2 MiB or 4 MiB
/// (the SuperSlab size or more).
pub fn align(inp: &mut Input<'_>) -> Option<usize> {
    let b = inp.u8()?;
    Some(match b {
        0..=159 => 1 << (b % 5),
        160..=229 => 1 << (5 + b % 8),
        230..=251 => 1 << (13 + b % 4),
        _ => 1 << (21 + b % 2),
    })
}
