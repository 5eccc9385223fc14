//! Cross-thread frees and thread churn: blocks allocated on one thread and
//! freed on another (core `Heap::dealloc` → remote list of the owner's
//! SuperSlab, collected by the owner or the background thread), and 1,000
//! short-lived threads whose heaps are flushed at exit, abandoned while the
//! main thread still holds some of their blocks, adopted by the next new
//! thread, and finally returned by the background thread: RSS stays bounded
//! during the churn and comes back to the baseline after the last free.
//!
//! The two tests share the process RSS, so they run one at a time (a
//! static mutex).

use std::sync::mpsc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[global_allocator]
static GLOBAL: hakmem_std::HakMem = hakmem_std::HakMem::new();

mod common;
use common::{mib, rss};

/// Serialises the tests of this binary (they share the process RSS).
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A pseudo-random number from `x` (splitmix64 finaliser).
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The filler byte of the blocks of `tag`.
fn filler(tag: u64) -> u8 {
    (mix(tag) >> 56) as u8
}

/// A block whose contents say who made it: the tag, its length, then a
/// filler byte derived from the tag up to the end.
fn make_block(tag: u64, len: usize) -> Box<[u8]> {
    let len = len.max(16);
    let mut v = vec![filler(tag); len];
    v[..8].copy_from_slice(&tag.to_le_bytes());
    v[8..16].copy_from_slice(&(len as u64).to_le_bytes());
    v.into_boxed_slice()
}

/// Checks a block made by `make_block` and returns its tag.
fn check_block(b: &[u8]) -> u64 {
    let tag = u64::from_le_bytes(b[..8].try_into().unwrap());
    let len = u64::from_le_bytes(b[8..16].try_into().unwrap());
    assert_eq!(len, b.len() as u64, "block of tag {tag:#x}: length field");
    let fill = [filler(tag); 64];
    for (c, chunk) in b[16..].chunks(64).enumerate() {
        assert!(
            chunk == &fill[..chunk.len()],
            "block of tag {tag:#x} ({len} B) corrupted near byte {}",
            16 + c * 64
        );
    }
    tag
}

/// Block sizes: mostly small, some medium, a few large (above the 128 KiB
/// largest class).
fn size_for(r: u64) -> usize {
    match r % 100 {
        0 => 130_000 + (r >> 8) as usize % 200_000,
        1..=9 => 1024 + (r >> 8) as usize % 16_000,
        _ => 8 + (r >> 8) as usize % 500,
    }
}

/// Eight threads in a ring: thread `i` sends boxes to thread `i + 1`, which
/// checks and frees them (and forwards some one more hop first), so nearly
/// every free is a remote one, while every heap is also busy allocating.
#[test]
fn eight_threads_free_each_others_blocks_in_a_ring() {
    let _g = serial();
    const THREADS: usize = 8;
    const ROUNDS: u64 = 40;
    const PER_ROUND: u64 = 250;

    /// What travels around the ring.
    enum Msg {
        Blocks(Vec<Box<[u8]>>, Vec<Box<dyn Fn() -> u64 + Send>>),
        Done,
    }

    let before = hakmem_std::stats();
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..THREADS).map(|_| mpsc::channel::<Msg>()).unzip();
    let mut handles = Vec::new();
    for (i, rx) in rxs.into_iter().enumerate() {
        let next = txs[(i + 1) % THREADS].clone();
        handles.push(std::thread::spawn(move || {
            let mut freed_here = 0u64;
            let mut forwarded = Vec::new();
            for round in 0..ROUNDS {
                // Make and send this round's blocks.
                let mut blocks = Vec::new();
                let mut closures: Vec<Box<dyn Fn() -> u64 + Send>> = Vec::new();
                for k in 0..PER_ROUND {
                    let tag = ((i as u64) << 48) | (round << 24) | k;
                    blocks.push(make_block(tag, size_for(mix(tag))));
                    let s = format!("{tag}");
                    closures.push(Box::new(move || s.parse().unwrap()));
                }
                // Blocks from two hops back, forwarded once more.
                blocks.append(&mut forwarded);
                next.send(Msg::Blocks(blocks, closures)).unwrap();
                // Receive the predecessor's blocks, check and free them.
                let Msg::Blocks(got, calls) = rx.recv().unwrap() else {
                    panic!("ring ended early");
                };
                let prev = (i + THREADS - 1) % THREADS;
                for b in got {
                    let tag = check_block(&b);
                    let origin = (tag >> 48) as usize;
                    let k = tag & 0xff_ffff;
                    if origin == prev && k % 5 == 0 {
                        // Pass it on once more: freed two hops from home.
                        forwarded.push(b);
                    } else {
                        freed_here += 1;
                        drop(b);
                    }
                }
                for (k, c) in calls.iter().enumerate() {
                    let tag = c();
                    assert_eq!(tag >> 48, prev as u64);
                    assert_eq!(tag & 0xff_ffff, k as u64);
                    assert_eq!((tag >> 24) & 0xff_ffff, round);
                }
            }
            // The last forwarded blocks are freed here.
            for b in forwarded.drain(..) {
                check_block(&b);
                freed_here += 1;
            }
            next.send(Msg::Done).unwrap();
            assert!(matches!(rx.recv().unwrap(), Msg::Done));
            freed_here
        }));
    }
    drop(txs);
    let freed: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(freed, THREADS as u64 * ROUNDS * PER_ROUND);

    // Every block came back: the ring's blocks are no longer counted held
    // anywhere, and the ring heaps' memory went back to the system (at
    // thread exit, or through the background thread for the frees that
    // arrived after their owner exited).
    let t0 = Instant::now();
    loop {
        let g = hakmem_std::stats();
        let held_ok = g.process.held_blocks <= before.process.held_blocks + 200;
        let mapped_ok = g.os_mapped_bytes <= before.os_mapped_bytes + (4 << 20);
        if held_ok && mapped_ok {
            println!(
                "ring returned in {:.2} s: {} B mapped before, {} B after",
                t0.elapsed().as_secs_f64(),
                before.os_mapped_bytes,
                g.os_mapped_bytes
            );
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "5 s after the ring: held {} blocks (before: {}), {} B mapped (before: {})\n{g}",
            g.process.held_blocks,
            before.process.held_blocks,
            g.os_mapped_bytes,
            before.os_mapped_bytes
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Messages from the churn threads to the main thread.
type Survivors = Vec<Box<[u8]>>;

/// 1,000 threads, 16 at a time: each allocates a mixed set of blocks, frees
/// most, and hands the rest to the main thread, which frees them later.
#[test]
fn thousand_short_lived_threads_rss_bounded_then_returned() {
    let _g = serial();
    const THREADS: usize = 1000;
    const WAVE: usize = 16;
    const BLOCKS: usize = 1000;
    /// Survivors are kept this many waves, then freed by the main thread.
    const KEEP_WAVES: usize = 8;

    fn worker(id: usize) -> Survivors {
        let mut live: Vec<Box<[u8]>> = Vec::with_capacity(BLOCKS);
        for k in 0..BLOCKS {
            let tag = ((id as u64) << 32) | k as u64;
            let r = mix(tag);
            live.push(make_block(tag, size_for(r) % 4096));
            // Free some on the way (a quarter of the time, a random one).
            if r % 4 == 0 {
                let j = (r >> 40) as usize % live.len();
                let b = live.swap_remove(j);
                check_block(&b);
            }
        }
        // Keep one in 16 for the main thread, free the rest here.
        let mut keep = Vec::new();
        for b in live {
            let tag = check_block(&b);
            if mix(tag ^ 0xabc) % 16 == 0 {
                keep.push(b);
            }
        }
        keep
    }

    /// Runs `threads` workers (ids from `first_id`) in waves, the main
    /// thread freeing each wave's survivors `KEEP_WAVES` waves later.
    /// Checks RSS against `limit` after each wave; returns the survivors
    /// still held, the peak RSS and how many blocks were handed over.
    fn churn(threads: usize, first_id: usize, limit: usize) -> (Vec<Vec<Survivors>>, usize, usize) {
        let mut waves: Vec<Vec<Survivors>> = Vec::with_capacity(threads / WAVE + 2);
        let mut peak = 0;
        let mut spawned = 0;
        let mut kept_total = 0;
        while spawned < threads {
            let n = WAVE.min(threads - spawned);
            let hs: Vec<_> = (spawned..spawned + n)
                .map(|id| std::thread::spawn(move || worker(first_id + id)))
                .collect();
            spawned += n;
            let wave: Vec<Survivors> = hs.into_iter().map(|h| h.join().unwrap()).collect();
            kept_total += wave.iter().map(Vec::len).sum::<usize>();
            waves.push(wave);
            // Free (after checking) the survivors of an older wave.
            if waves.len() > KEEP_WAVES {
                let idx = waves.len() - 1 - KEEP_WAVES;
                let old = std::mem::take(&mut waves[idx]);
                for b in old.into_iter().flatten() {
                    check_block(&b);
                }
            }
            let r = rss();
            peak = peak.max(r);
            assert!(
                r < limit,
                "RSS {:.1} MiB after {spawned} threads, limit {:.1} MiB\n{}",
                mib(r),
                mib(limit),
                hakmem_std::stats()
            );
        }
        (waves, peak, kept_total)
    }

    // Warm-up: a smaller churn of the same shape, all freed and purged, so
    // thread stacks, slots, the background thread and the libc's
    // per-thread state exist before the baseline (and whatever the other
    // test of this binary left is settled).
    let (warm, _, kept) = churn(2 * KEEP_WAVES * WAVE, 0, usize::MAX);
    assert!(kept > 0);
    for b in warm.into_iter().flatten().flatten() {
        check_block(&b);
    }
    std::thread::sleep(Duration::from_millis(1500));
    let baseline = rss();
    println!("baseline RSS {:.2} MiB", mib(baseline));

    let t0 = Instant::now();
    let (waves, peak, kept_total) = churn(THREADS, 1 << 20, baseline + (64 << 20));
    println!(
        "{THREADS} threads in {:.2} s, {kept_total} blocks handed over, peak RSS +{:.2} MiB",
        t0.elapsed().as_secs_f64(),
        mib(peak.saturating_sub(baseline))
    );
    // Meaningful only if the churn held memory worth returning.
    assert!(
        peak >= baseline + (4 << 20),
        "the churn only grew RSS from {:.2} to {:.2} MiB",
        mib(baseline),
        mib(peak)
    );
    let live = rss();
    for b in waves.into_iter().flatten().flatten() {
        check_block(&b);
    }
    let (took, end) = wait_for_rss(baseline + (1 << 20), Duration::from_secs(5));
    println!(
        "all freed: RSS {:.2} MiB live, {:.2} MiB after {:.2} s (baseline {:.2} MiB)",
        mib(live),
        mib(end),
        took.as_secs_f64(),
        mib(baseline)
    );
    // Under ThreadSanitizer (`--cfg hakmem_tsan`) RSS is TSan's shadow
    // memory too, which grows with every byte touched and is never returned.
    assert!(
        end <= baseline + (1 << 20) || cfg!(hakmem_tsan),
        "RSS {:.2} MiB 5 s after the last free, baseline {:.2} MiB\n{}",
        mib(end),
        mib(baseline),
        hakmem_std::stats()
    );
}

/// Polls RSS every 100 ms until it is at most `target` or `limit` passed;
/// returns the time taken and the last RSS.
fn wait_for_rss(target: usize, limit: Duration) -> (Duration, usize) {
    let t0 = Instant::now();
    loop {
        let r = rss();
        if r <= target || t0.elapsed() >= limit {
            return (t0.elapsed(), r);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
