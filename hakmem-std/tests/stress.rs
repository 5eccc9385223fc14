//! An mstress-like stress test (after mimalloc's `test-stress`): rounds of
//! freshly created threads that allocate, free, reallocate and exchange
//! objects through shared slots, so that most objects are freed by a thread
//! other than the one that made them — often after their maker exited and
//! its heap was abandoned, then adopted — while a few long-lived survivors
//! outlive several rounds. Every object's contents are checked before it
//! is freed; the resident set is checked to stay bounded by the live data
//! at every round's end and to come back to the baseline after the last
//! free.
//!
//! Runs for `STRESS_SECONDS` (default 8; `.ci/reliability.sh` runs it 25 s
//! in release) or `STRESS_ROUNDS` rounds, whichever ends first, with
//! `STRESS_THREADS` threads a round (default 8); `STRESS_VERBOSE=1` prints
//! each round's live bytes and resident set.

use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[global_allocator]
static GLOBAL: hakmem_std::HakMem = hakmem_std::HakMem::new();

mod common;
use common::{mib, rss};

/// Under ThreadSanitizer (`--cfg hakmem_tsan`) the resident set is not
/// hakmem's: TSan's shadow memory grows with every byte the program
/// touches and is never returned, so the RSS bounds are not checked (the
/// block counts still are).
const TSAN: bool = cfg!(hakmem_tsan);

/// Shared slots objects migrate through.
const SLOTS: usize = 4096;
/// Operations per thread per round.
const OPS: usize = 20_000;
/// Objects a thread keeps to itself at most.
const LOCAL: usize = 256;
/// Survivors live this many rounds.
const SURVIVE_ROUNDS: usize = 4;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// SplitMix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Bytes in live objects (all of them: slots, survivors, threads' own).
static LIVE: AtomicUsize = AtomicUsize::new(0);

/// An object: its contents are its tag's filler byte, its first 16 bytes
/// the tag and the length; `LIVE` counts its bytes.
struct Obj {
    data: Vec<u8>,
}

fn filler(tag: u64) -> u8 {
    (tag.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56) as u8
}

impl Obj {
    fn new(tag: u64, len: usize) -> Box<Obj> {
        let len = len.max(16);
        let mut data = vec![filler(tag); len];
        data[..8].copy_from_slice(&tag.to_le_bytes());
        data[8..16].copy_from_slice(&(len as u64).to_le_bytes());
        LIVE.fetch_add(len, Ordering::Relaxed);
        Box::new(Obj { data })
    }

    /// Checks the contents (panics naming the object if they changed).
    fn check(&self) {
        let tag = u64::from_le_bytes(self.data[..8].try_into().unwrap());
        let len = u64::from_le_bytes(self.data[8..16].try_into().unwrap());
        assert_eq!(len, self.data.len() as u64, "object {tag:#x}: length field");
        let fill = [filler(tag); 256];
        for (c, chunk) in self.data[16..].chunks(256).enumerate() {
            assert!(
                chunk == &fill[..chunk.len()],
                "object {tag:#x} ({len} B) corrupted near byte {}",
                16 + c * 256
            );
        }
    }

    /// Grows or shrinks the object in place (a `realloc`), keeping its
    /// contents valid.
    fn resize(&mut self, new_len: usize) {
        let new_len = new_len.max(16);
        let tag = u64::from_le_bytes(self.data[..8].try_into().unwrap());
        let old = self.data.len();
        if new_len > old {
            self.data.reserve_exact(new_len - old);
        }
        self.data.resize(new_len, filler(tag));
        self.data.shrink_to_fit();
        self.data[8..16].copy_from_slice(&(new_len as u64).to_le_bytes());
        LIVE.fetch_add(new_len, Ordering::Relaxed);
        LIVE.fetch_sub(old, Ordering::Relaxed);
    }
}

impl Drop for Obj {
    fn drop(&mut self) {
        self.check();
        LIVE.fetch_sub(self.data.len(), Ordering::Relaxed);
    }
}

/// Sizes: mostly small, some medium, a few large (beyond the 128 KiB
/// largest class), as mstress's.
fn size_for(r: &mut Rng) -> usize {
    match r.below(1000) {
        0..=4 => 130_000 + r.below(400_000),
        5..=99 => 1024 + r.below(16_000),
        _ => 8 + r.below(400),
    }
}

struct Shared {
    slots: Vec<AtomicPtr<Obj>>,
    /// Long-lived objects and the round after which they are freed.
    survivors: Mutex<Vec<(usize, Box<Obj>)>>,
}

/// One thread's round.
fn worker(shared: &Shared, round: usize, id: usize) {
    let mut r = Rng(((round as u64) << 32) ^ (id as u64) ^ 0x5eed);
    let mut local: Vec<Box<Obj>> = Vec::with_capacity(LOCAL);
    let mut serial = 0u64;
    let mut tag = || {
        serial += 1;
        ((round as u64) << 40) | ((id as u64) << 32) | serial
    };
    for _ in 0..OPS {
        match r.below(100) {
            // A short-lived object of its own.
            0..=29 => {
                if local.len() >= LOCAL {
                    let i = r.below(local.len());
                    drop(local.swap_remove(i));
                }
                let len = size_for(&mut r);
                local.push(Obj::new(tag(), len));
            }
            // Free one of its own.
            30..=44 if !local.is_empty() => {
                let i = r.below(local.len());
                drop(local.swap_remove(i));
            }
            // Migrate: put an object in a shared slot; what was there (made
            // by another thread, maybe dead) is freed here or kept a while.
            45..=84 => {
                let len = size_for(&mut r);
                let new = Box::into_raw(Obj::new(tag(), len));
                let old = shared.slots[r.below(SLOTS)].swap(new, Ordering::AcqRel);
                if !old.is_null() {
                    // SAFETY: every slot holds null or a pointer from
                    // `Box::into_raw`, and the swap gave it to this thread only.
                    let old = unsafe { Box::from_raw(old) };
                    old.check();
                    if r.below(4) == 0 && local.len() < LOCAL {
                        local.push(old);
                    } else {
                        drop(old);
                    }
                }
            }
            // Realloc one of its own (grow or shrink).
            85..=94 if !local.is_empty() => {
                let i = r.below(local.len());
                let len = local[i].data.len();
                let new_len = if r.below(2) == 0 {
                    len + r.below(len + 64)
                } else {
                    len / 2
                };
                local[i].resize(new_len.min(600_000));
            }
            // A survivor: outlives this thread and a few rounds.
            95 if !local.is_empty() && r.below(20) == 0 => {
                let o = local.swap_remove(r.below(local.len()));
                shared
                    .survivors
                    .lock()
                    .unwrap()
                    .push((round + SURVIVE_ROUNDS, o));
            }
            _ => {}
        }
    }
    // This thread's own objects die with it; the slots' outlive it.
}

#[test]
fn threads_exchange_objects_over_rounds_contents_kept_rss_bounded() {
    let seconds = env_or("STRESS_SECONDS", 8);
    let max_rounds = env_or("STRESS_ROUNDS", 100_000);
    let threads = env_or("STRESS_THREADS", 8);
    let baseline = rss();
    let before = hakmem_std::stats();
    let shared = Arc::new(Shared {
        slots: (0..SLOTS)
            .map(|_| AtomicPtr::new(std::ptr::null_mut()))
            .collect(),
        survivors: Mutex::new(Vec::new()),
    });
    let start = Instant::now();
    let (mut rounds, mut peak_live, mut peak_rss) = (0usize, 0usize, 0usize);
    while rounds < max_rounds
        && (rounds < 3 || start.elapsed() < Duration::from_secs(seconds as u64))
    {
        let handles: Vec<_> = (0..threads)
            .map(|id| {
                let shared = Arc::clone(&shared);
                std::thread::spawn(move || worker(&shared, rounds, id))
            })
            .collect();
        for h in handles {
            h.join().expect("a stress thread panicked");
        }
        // Survivors whose time has come are freed here, on the main thread.
        let due: Vec<_> = {
            let mut s = shared.survivors.lock().unwrap();
            let (due, keep) = s.drain(..).partition(|(r, _)| *r <= rounds);
            *s = keep;
            due
        };
        drop(due);
        // Bounded by the live data: every thread's heap may hold some
        // partly used SuperSlabs and its magazine-free slabs, nothing that
        // grows with the rounds.
        let live = LIVE.load(Ordering::Relaxed);
        let now = rss().saturating_sub(baseline);
        peak_live = peak_live.max(live);
        peak_rss = peak_rss.max(now);
        let bound = 2 * live + threads * (8 << 20) + (16 << 20);
        assert!(
            now <= bound || TSAN,
            "round {rounds}: RSS {:.1} MiB over the baseline with {:.1} MiB live (bound {:.1} MiB)\n{}",
            mib(now),
            mib(live),
            mib(bound),
            hakmem_std::stats()
        );
        if std::env::var_os("STRESS_VERBOSE").is_some() {
            println!(
                "round {rounds}: live {:.1} MiB, RSS +{:.1} MiB",
                mib(live),
                mib(now)
            );
        }
        rounds += 1;
    }
    let ran = start.elapsed();
    // Free everything left: the slots and the survivors.
    for s in &shared.slots {
        let p = s.swap(std::ptr::null_mut(), Ordering::AcqRel);
        if !p.is_null() {
            // SAFETY: as in `worker`: a pointer from `Box::into_raw`, ours now.
            drop(unsafe { Box::from_raw(p) });
        }
    }
    shared.survivors.lock().unwrap().clear();
    assert_eq!(LIVE.load(Ordering::Relaxed), 0, "bytes still counted live");
    let freed_at = rss();
    // Every block came back and the memory with it (the background thread
    // returns what dead threads' heaps held).
    let t0 = Instant::now();
    loop {
        let g = hakmem_std::stats();
        let held_ok = g.process.held_blocks <= before.process.held_blocks + 200;
        let now = rss();
        if held_ok && (now <= baseline + (2 << 20) || TSAN) {
            println!(
                "stress: {rounds} rounds of {threads} threads in {:.1} s; peak live {:.1} MiB, \
                 peak RSS +{:.1} MiB; after free-all +{:.2} MiB at once, +{:.2} MiB after {:.2} s",
                ran.as_secs_f64(),
                mib(peak_live),
                mib(peak_rss),
                mib(freed_at.saturating_sub(baseline)),
                mib(now.saturating_sub(baseline)),
                t0.elapsed().as_secs_f64()
            );
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "10 s after free-all: {} blocks held (before {}), RSS +{:.2} MiB\n{g}",
            g.process.held_blocks,
            before.process.held_blocks,
            mib(now.saturating_sub(baseline))
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
