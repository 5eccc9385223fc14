//! Out of memory for real: a child process (this test binary run again)
//! limits its address space with `setrlimit(RLIMIT_AS)`, so `mmap` in
//! `LinuxPages::map` fails. hakmem must turn that into a null return on
//! every path (large blocks, new SuperSlabs for small classes, zeroed),
//! keep working once memory is freed, and let an infallible allocation end
//! in Rust's `handle_alloc_error` (message, then SIGABRT) rather than a
//! crash of its own.
//!
//! A second child forces the out-of-memory retry: a request that fits in
//! the address space only once the heap's retained empty SuperSlabs are
//! unmapped must succeed (hakmem trims its caches and retries before it
//! returns null).

use std::alloc::{alloc, alloc_zeroed, dealloc, Layout};
use std::hint::black_box;
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::process::Command;

#[global_allocator]
static GLOBAL: hakmem_std::HakMem = hakmem_std::HakMem::new();

const CHILD_ENV: &str = "HAKMEM_OOM_CHILD";
const TEST_NAME: &str = "out_of_memory_under_rlimit_as";
/// Address space the child may map beyond what it has at the start.
const HEADROOM: u64 = 256 << 20;
/// The infallible allocation that must fail: 1 GiB.
const HUGE: usize = 1 << 30;
const MIB: usize = 1 << 20;

/// Virtual size of the process, from /proc/self/statm.
fn vm_size() -> u64 {
    let s = std::fs::read_to_string("/proc/self/statm").expect("statm");
    let pages: u64 = s
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .expect("size field");
    pages * hakmem_std::page_size() as u64
}

/// Fills a Vec with 1 MiB capacity with `byte` (memcpy page by page, which
/// keeps debug builds fast).
fn fill(b: &mut Vec<u8>, byte: u8) {
    let page = [byte; 4096];
    while b.len() < MIB {
        b.extend_from_slice(&page);
    }
}

fn step(msg: &str) {
    println!("child: {msg}");
    std::io::stdout().flush().unwrap();
}

/// The child's side: everything runs under the address-space limit.
fn child() {
    // Everything the checks need is allocated before the limit.
    let mut big: Vec<Vec<u8>> = Vec::with_capacity(4096);
    let mut small: Vec<*mut u8> = Vec::with_capacity(1 << 20);
    step("start");

    let limit = limit_address_space(HEADROOM);
    step(&format!("RLIMIT_AS set to {} MiB", limit >> 20));

    // 1. A request beyond the limit returns null, on every path.
    for align in [8usize, 4096, 2 * MIB] {
        let layout = Layout::from_size_align(HUGE, align).unwrap();
        // SAFETY: a valid, non-zero-size layout.
        let p = black_box(unsafe { alloc(layout) });
        assert!(p.is_null(), "1 GiB alloc succeeded");
        // SAFETY: as above.
        let p = black_box(unsafe { alloc_zeroed(layout) });
        assert!(p.is_null(), "1 GiB alloc_zeroed succeeded");
    }
    let mut v: Vec<u8> = Vec::new();
    assert!(v.try_reserve(HUGE).is_err());
    step("huge requests return null");

    // 2. 1 MiB blocks until the address space runs out.
    loop {
        let mut b: Vec<u8> = Vec::new();
        if b.try_reserve_exact(MIB).is_err() {
            break;
        }
        fill(&mut b, big.len() as u8);
        big.push(b);
        assert!(big.len() < 4096, "RLIMIT_AS not enforced?");
    }
    let n_big = big.len();
    let n_big_ok = (32..=(HEADROOM as usize / MIB)).contains(&n_big);
    // (Nothing is printed until memory is freed: formatting allocates.)

    // 3. Small blocks until even a new SuperSlab cannot be mapped: null,
    // not a crash, within a few SuperSlabs' worth of blocks.
    let layout = Layout::from_size_align(64, 8).unwrap();
    let mut got_null = false;
    while small.len() < small.capacity() {
        // SAFETY: non-zero size.
        let p = unsafe { alloc(layout) };
        if p.is_null() {
            got_null = true;
            break;
        }
        // SAFETY: `p` holds 64 bytes.
        unsafe { p.write_bytes(small.len() as u8, 64) };
        small.push(p);
    }
    let n_small = small.len();

    // 4. Free everything (checking contents), then allocate again.
    for (i, b) in big.iter().enumerate() {
        let page = [i as u8; 4096];
        assert!(
            b.chunks(4096).all(|c| c == page),
            "1 MiB block {i} corrupted"
        );
    }
    big.clear();
    for (i, &p) in small.iter().enumerate() {
        // SAFETY: live 64-byte blocks, freed once with their layout.
        unsafe {
            assert_eq!(p.read(), i as u8);
            assert_eq!(p.add(63).read(), i as u8);
            dealloc(p, layout);
        }
    }
    small.clear();
    step(&format!("{n_big} blocks of 1 MiB, then Err"));
    assert!(
        n_big_ok,
        "{n_big} blocks of 1 MiB under a {} MiB headroom",
        HEADROOM >> 20
    );
    assert!(got_null, "{n_small} small blocks and no failure");
    step(&format!("{n_small} blocks of 64 B, then null"));
    step("all freed");

    for i in 0..n_big / 2 {
        let mut b: Vec<u8> = Vec::new();
        b.try_reserve_exact(MIB)
            .unwrap_or_else(|e| panic!("1 MiB block {i} after the frees: {e}"));
        fill(&mut b, 0xC3);
        big.push(b);
    }
    for _ in 0..100_000 {
        // SAFETY: non-zero size.
        let p = unsafe { alloc(layout) };
        assert!(!p.is_null(), "small allocation failed after the frees");
        small.push(p);
    }
    let s: String = (0..10_000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    assert_eq!(s.len(), 10_000);
    let page = [0xC3u8; 4096];
    assert!(big.iter().all(|b| b.chunks(4096).all(|c| c == page)));
    for &p in &small {
        // SAFETY: live blocks, freed once with their layout.
        unsafe { dealloc(p, layout) };
    }
    small.clear();
    big.clear();
    step("allocating works again after the frees");

    // 5. An infallible allocation beyond the limit: handle_alloc_error
    // prints its message and aborts.
    step("before infallible");
    let v = vec![0u8; HUGE];
    black_box(&v);
    step("survived the infallible allocation");
}

/// Sets RLIMIT_AS to the current virtual size plus `headroom`; returns the
/// limit.
fn limit_address_space(headroom: u64) -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = vm_size() + headroom;
    let old = getrlimit(Resource::As);
    setrlimit(
        Resource::As,
        Rlimit {
            current: Some(limit),
            maximum: old.maximum,
        },
    )
    .expect("setrlimit(RLIMIT_AS)");
    limit
}

const RETRY_TEST: &str = "out_of_memory_retries_after_trimming_the_caches";

/// The retry child: small blocks are allocated and freed, so the heap keeps
/// its retained empty SuperSlabs (4 × 2 MiB by default) mapped; then a
/// large block 2 MiB bigger than the address space left is asked for. It
/// fits only if those SuperSlabs are unmapped first.
fn retry_child() {
    let mut small: Vec<*mut u8> = Vec::with_capacity(1 << 18);
    let limit = limit_address_space(HEADROOM);
    let layout = Layout::from_size_align(64, 8).unwrap();
    // 16 MiB of 64-byte blocks, written, then all freed.
    for _ in 0..small.capacity() {
        // SAFETY: non-zero size.
        let p = unsafe { alloc(layout) };
        assert!(
            !p.is_null(),
            "out of memory with 16 MiB in a 256 MiB headroom"
        );
        // SAFETY: `p` holds 64 bytes.
        unsafe { p.write_bytes(0x11, 64) };
        small.push(p);
    }
    for &p in &small {
        // SAFETY: live blocks, freed once with their layout.
        unsafe { dealloc(p, layout) };
    }
    small.clear();
    let retained = hakmem_std::thread_stats().expect("a heap").mapped_bytes;
    let left = (limit - vm_size()) as usize;
    let want = left + 2 * MIB;
    step(&format!(
        "{} MiB mapped by the heap after the frees, {} MiB of address space left, asking for {} MiB",
        retained / MIB,
        left / MIB,
        want / MIB
    ));
    // The large block maps `want` plus a header at SuperSlab alignment
    // (over-mapped by up to 2 MiB while aligning): it needs `left + 4 MiB`
    // and a bit, which the retained SuperSlabs give back.
    assert!(
        retained >= 6 * MIB,
        "the heap retained only {retained} bytes: the case proves nothing"
    );
    let mut v: Vec<u8> = Vec::new();
    match v.try_reserve_exact(want) {
        Ok(()) => {
            v.push(1);
            step("the request succeeded after the retry");
        }
        Err(e) => step(&format!("the request failed: {e}")),
    }
}

/// Runs test `name` of this binary again as a child with `CHILD_ENV` set
/// to `mode`; prints and returns its status and output.
fn run_child(name: &str, mode: &str) -> (std::process::Output, String, String) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, mode)
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("run the child");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    println!(
        "child status: {:?}\nchild stdout:\n{stdout}\nchild stderr:\n{stderr}",
        out.status
    );
    (out, stdout, stderr)
}

#[test]
fn out_of_memory_retries_after_trimming_the_caches() {
    if std::env::var_os(CHILD_ENV).is_some_and(|v| v == "retry") {
        retry_child();
        return;
    }
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    let (out, stdout, _) = run_child(RETRY_TEST, "retry");
    assert!(out.status.success(), "the child failed");
    assert!(
        stdout.contains("child: the request succeeded after the retry"),
        "the request that fits only once the caches are trimmed failed"
    );
}

#[test]
fn out_of_memory_under_rlimit_as() {
    if std::env::var_os(CHILD_ENV).is_some_and(|v| v == "retry") {
        return;
    }
    if std::env::var_os(CHILD_ENV).is_some() {
        child();
        return;
    }
    let (out, stdout, stderr) = run_child(TEST_NAME, "1");
    for line in [
        "child: huge requests return null",
        "then Err",
        "then null",
        "child: all freed",
        "child: allocating works again after the frees",
        "child: before infallible",
    ] {
        assert!(stdout.contains(line), "the child did not report {line:?}");
    }
    assert!(
        !stdout.contains("survived"),
        "a 1 GiB allocation succeeded under the limit"
    );
    let msg = format!("memory allocation of {HUGE} bytes failed");
    assert!(stderr.contains(&msg), "no {msg:?} in the child's stderr");
    assert_eq!(
        out.status.signal(),
        Some(6),
        "the child should die of SIGABRT, got {:?}",
        out.status
    );
}
