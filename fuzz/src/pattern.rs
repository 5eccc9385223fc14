//! The contents each model block is filled with: a window of one fixed
//! pseudo-random buffer starting at an offset derived from the block's id,
//! so a block's bytes name the block (a block that overlaps another, or
//! that the allocator wrote into, shows up as a mismatch at a known
//! offset). Filling and checking are one `memcpy` and one `memcmp`: the
//! fuzzer's comparison tracing instruments the harness's own loops, and a
//! byte loop over megabyte blocks would cost more than the allocator.

use std::sync::OnceLock;

/// The largest block any target fills.
pub const MAX_BLOCK: usize = 4 << 20;
/// Windows start at an offset below this.
const OFFSETS: usize = 4093;

fn buffer() -> &'static [u8] {
    static BUF: OnceLock<Vec<u8>> = OnceLock::new();
    BUF.get_or_init(|| {
        let mut v = Vec::with_capacity(MAX_BLOCK + OFFSETS + 8);
        let mut z = 0x5eed_u64;
        while v.len() < MAX_BLOCK + OFFSETS {
            // SplitMix64.
            z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut x = z;
            x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            v.extend_from_slice(&(x ^ (x >> 31)).to_le_bytes());
        }
        v
    })
}

/// Block `id`'s pattern over `from..to`.
fn window(id: u64, from: usize, to: usize) -> &'static [u8] {
    assert!(
        to <= MAX_BLOCK,
        "pattern: block of {to} bytes is beyond MAX_BLOCK"
    );
    let off = (id.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40) as usize % OFFSETS;
    &buffer()[off + from..off + to]
}

/// Writes block `id`'s pattern into `block[from..to]`.
///
/// # Safety
/// `block..block + to` is valid for writes.
pub unsafe fn fill(block: *mut u8, id: u64, from: usize, to: usize) {
    if from >= to {
        return;
    }
    let src = window(id, from, to);
    // SAFETY: per the caller; the pattern buffer does not overlap the block.
    unsafe { core::ptr::copy_nonoverlapping(src.as_ptr(), block.add(from), src.len()) };
}

/// The first offset in `from..to` where `block` differs from block `id`'s
/// pattern, with the byte found and the byte expected.
///
/// # Safety
/// `block..block + to` is valid for reads and initialised.
pub unsafe fn mismatch(
    block: *const u8,
    id: u64,
    from: usize,
    to: usize,
) -> Option<(usize, u8, u8)> {
    if from >= to {
        return None;
    }
    let want = window(id, from, to);
    // SAFETY: per the caller.
    let got = unsafe { core::slice::from_raw_parts(block.add(from), to - from) };
    if got == want {
        return None;
    }
    let i = got.iter().zip(want).position(|(g, w)| g != w).unwrap_or(0);
    Some((from + i, got[i], want[i]))
}

/// [`mismatch`] over the first and last `edge` bytes of `block[..len]`
/// only: cheap enough to run over every live block, and enough to see a
/// block that another overlaps or that the allocator wrote its links into.
///
/// # Safety
/// As [`mismatch`] over `0..len`.
pub unsafe fn mismatch_edges(
    block: *const u8,
    id: u64,
    len: usize,
    edge: usize,
) -> Option<(usize, u8, u8)> {
    if len <= 2 * edge {
        // SAFETY: per the caller.
        return unsafe { mismatch(block, id, 0, len) };
    }
    // SAFETY: per the caller; both ranges lie inside `0..len`.
    unsafe { mismatch(block, id, 0, edge).or_else(|| mismatch(block, id, len - edge, len)) }
}

/// The first non-zero byte of `block[..len]`, if any.
///
/// # Safety
/// `block..block + len` is valid for reads and initialised.
pub unsafe fn first_nonzero(block: *const u8, len: usize) -> Option<usize> {
    static ZEROS: [u8; 4096] = [0; 4096];
    // SAFETY: per the caller.
    let s = unsafe { core::slice::from_raw_parts(block, len) };
    for (k, chunk) in s.chunks(ZEROS.len()).enumerate() {
        if chunk != &ZEROS[..chunk.len()] {
            return Some(k * ZEROS.len() + chunk.iter().position(|&b| b != 0).unwrap_or(0));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_then_check_finds_each_changed_byte() {
        let mut buf = vec![0u8; 100];
        // SAFETY: `buf` has 100 bytes.
        unsafe {
            assert_eq!(first_nonzero(buf.as_ptr(), 100), None);
            fill(buf.as_mut_ptr(), 7, 3, 97);
            assert_eq!(mismatch(buf.as_ptr(), 7, 3, 97), None);
            assert!(mismatch(buf.as_ptr(), 8, 3, 97).is_some());
            assert_eq!(first_nonzero(buf.as_ptr(), 3), None);
        }
        buf[50] ^= 1;
        // SAFETY: as above.
        let m = unsafe { mismatch(buf.as_ptr(), 7, 3, 97) };
        assert_eq!(m.map(|(at, _, _)| at), Some(50));
        let mut whole = vec![0u8; 100];
        // SAFETY: `whole` has 100 bytes.
        unsafe {
            fill(whole.as_mut_ptr(), 9, 0, 100);
            whole[50] ^= 1;
            assert_eq!(mismatch_edges(whole.as_ptr(), 9, 100, 8), None);
            assert_eq!(
                mismatch_edges(whole.as_ptr(), 9, 100, 50).map(|m| m.0),
                Some(50)
            );
        }
    }
}
