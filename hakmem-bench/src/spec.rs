//! The workloads the driver knows: name, kind, what it measures.

use crate::alloc::Kind;

/// One workload of the report.
#[derive(Debug)]
pub struct Workload {
    /// Name on the command line (`--only`) and in the report.
    pub name: &'static str,
    /// Which allocators it runs on.
    pub kind: Kind,
    /// What it does, for the report.
    pub about: &'static str,
    /// Whether it runs at each thread count (its metrics are `tN`).
    pub threaded: bool,
}

const fn w(name: &'static str, kind: Kind, threaded: bool, about: &'static str) -> Workload {
    Workload {
        name,
        kind,
        about,
        threaded,
    }
}

/// Every workload, in report order.
pub const WORKLOADS: &[Workload] = &[
    w("scaling", Kind::C, false, "The seed's scaling test (`c/scaling.c`): N × 16 B and N × 8–1024 B (N = 100K, 500K, 1M; 1M only in --quick), each block touched; RSS growth over the data while live (overhead), right after free-all and 1.2 s later (hakmem's purge delay is 0.5 s); time of alloc + free."),
    w("scaling-fork", Kind::C, false, "The 1M cases (16 B and mixed; 16 B only in --quick) in a fork()ed child, after the parent allocated and freed a mixed working set and kept a tenth of it live."),
    w("churn", Kind::C, false, "Single-thread churn: 100k live blocks of 8–4096 B; each step frees a random one and allocates a new one (ns per step)."),
    w("pairs", Kind::C, false, "malloc/free pairs: one block allocated and freed in a loop (hot), and 1000 allocated then all freed (batch), for 16 B, 64 B, 1 KiB (ns per pair)."),
    w("larson", Kind::C, true, "Larson-style server: per thread a 1000-slot array of 16–512 B blocks, a random slot freed and refilled per step; every 1/20 of the run the threads exit and new threads take the arrays over, so blocks are freed by threads that did not allocate them (million steps per second, all threads)."),
    w("ring", Kind::C, false, "Producer/consumer ring: one thread allocates 16–512 B blocks onto a lock-free ring, another frees them (one way); then two rings in opposite directions between the same two threads (both ways). Million blocks per second."),
    w("thread-churn", Kind::C, true, "Thread churn: waves of T short-lived threads; each allocates 2000 blocks of 16–1024 B, frees the half its predecessor leaked, frees half of its own and leaks the rest to the next wave (thousand threads per second)."),
    w("realloc", Kind::C, false, "realloc growth: 10 000 vectors grown 8 B at a time to 1 KiB; one buffer grown by an eighth at a time from 16 B to 64 MiB; a loop replacing a 5–25 MiB buffer with a new one (ms)."),
    w("sqlite", Kind::C, false, "sqlite3 (Debian's) on an in-memory database: rows inserted by a recursive CTE, two indexes, aggregates, an update and a delete (wall time of the process; output compared across allocators)."),
    w("python", Kind::C, false, "python3 with PYTHONMALLOC=malloc (every object through malloc): a dict of lists and dicts, a sort, JSON out and back, many tuples (time inside the interpreter; printed checksum compared)."),
    w("redis", Kind::C, false, "redis-server (Debian's) driven by redis-benchmark (on the system allocator): SET, GET, LPUSH, LPOP with 100-byte values over 100 000 keys, 50 clients, 50 000 requests per test (10 000 in --quick), plain and pipelined ×16 (thousand requests per second); RSS at the end (peak = VmHWM) and after FLUSHALL + 1.5 s. Debian's redis links jemalloc: its system column forces glibc with LD_PRELOAD=libc.so.6."),
    w("rs-scaling", Kind::Rust, false, "The seed's scaling test on the global allocator (as hakmem-std/examples/scaling.rs), same cases and figures as `scaling`."),
    w("rs-collections", Kind::Rust, false, "BTreeMap<u64, String> and HashMap<String, Vec<u32>> built (1M inserts), read and dropped (ms)."),
    w("rs-growth", Kind::Rust, false, "Vec/String growth: 10 000 vectors and strings grown one element at a time to 100, ten times; one Vec<u64> pushed to 16M elements, five times (ms)."),
    w("rs-churn", Kind::Rust, false, "Random churn: 100k live Box<[u8]> of 8–4096 B, a random one replaced per step (ns per step)."),
    w("rs-channels", Kind::Rust, true, "Channel batches across threads: T producer/consumer pairs, batches of 1000 boxed 16–512 B buffers sent over a sync_channel and dropped by the consumer (million blocks per second)."),
    w("rs-pairs", Kind::Rust, false, "alloc/dealloc pairs, hot and in batches of 1000, for 16 B, 64 B, 1 KiB (ns per pair; as hakmem-std/examples/pairs.rs)."),
    w("bare-efficiency", Kind::Bare, false, "Heap efficiency at the first failure on a 128 MiB region (talc's method): live requested bytes ÷ region, mean over 20 runs (5 in --quick)."),
    w("bare-stream", Kind::Bare, false, "A seeded alloc/realloc/free stream on 64 KiB (sizes to 2 KiB), 4 MiB (to 10 000 B) and 64 MiB (to 100 000 B) regions: ¾ of sizes up to 256 B, ¼ up to the maximum, alignments 1–8 B, run on fresh heaps to the first failure: efficiency there and million operations per second."),
    w("bare-random-actions", Kind::Bare, false, "talc's random-actions benchmark on a 128 MiB region, one thread: successful operations per second for maximum sizes 1 000 to 100 000 B."),
];

/// The workload called `name`.
pub fn find(name: &str) -> Option<&'static Workload> {
    WORKLOADS.iter().find(|w| w.name == name)
}
