//! The seed scaling run (1M × 16 B, each block written, then free all) in
//! a process and then in a child of `fork()`: ns per block while
//! allocating, ns per block while freeing, and RSS growth right after the
//! frees and 1 s later, relative to the level before the run. A forked
//! child must keep the memory promise (RSS back within about the purge
//! delay) and allocate as fast as its parent.
//!
//! `cargo run --release -p hakmem-std --example fork`
//! (`fork child-first` forks before the parent's own run; `fork parent` and
//! `fork child` run only that one, e.g. under `perf stat`; `fork inherited`
//! has the child fill the parent's pointer table.)

use std::alloc::{alloc, dealloc, Layout};
use std::io::Write;
use std::time::{Duration, Instant};

#[global_allocator]
static GLOBAL: hakmem_std::HakMem = hakmem_std::HakMem::new();

extern "C" {
    fn fork() -> i32;
    fn waitpid(pid: i32, status: *mut i32, options: i32) -> i32;
    fn _exit(code: i32) -> !;
}

const N: usize = 1_000_000;

#[path = "common/rss.rs"]
mod rss;
use rss::rss;

fn mib(b: isize) -> f64 {
    b as f64 / (1 << 20) as f64
}

/// One run, printed as one line labelled `who`. The pointer table is made
/// and touched first, in the running process (a table inherited from the
/// parent, as in `fork inherited`, adds a copy-on-write fault per page of
/// it to the child's figure).
fn run(who: &str, inherited: Option<&mut Vec<usize>>) {
    let layout = Layout::from_size_align(16, 8).unwrap();
    let mut own = Vec::new();
    let slots = inherited.unwrap_or_else(|| {
        own = vec![1; N];
        &mut own
    });
    slots.clear();
    let base = rss() as isize;
    let t0 = Instant::now();
    for i in 0..N {
        // SAFETY: non-zero size.
        let p = unsafe { alloc(layout) };
        assert!(!p.is_null(), "out of memory");
        // SAFETY: `p` holds 16 bytes.
        unsafe { p.cast::<u64>().write(i as u64) };
        slots.push(p as usize);
    }
    let alloc_ns = t0.elapsed().as_nanos() as f64 / N as f64;
    let t1 = Instant::now();
    for &p in slots.iter() {
        // SAFETY: each block is live and freed once, with its layout.
        unsafe { dealloc(p as *mut u8, layout) };
    }
    let free_ns = t1.elapsed().as_nanos() as f64 / N as f64;
    let freed = rss() as isize;
    std::thread::sleep(Duration::from_secs(1));
    let later = rss() as isize;
    println!(
        "{who:<7} {alloc_ns:>9.1} {free_ns:>8.1} {:>11.2} {:>10.2}",
        mib(freed - base),
        mib(later - base)
    );
    std::io::stdout().flush().unwrap();
}

fn child(inherited: Option<&mut Vec<usize>>) {
    // SAFETY: plain fork; the child only runs Rust code of this program.
    let pid = unsafe { fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        run("child", inherited);
        // SAFETY: leaves the child at once, as a forked child should.
        unsafe { _exit(0) };
    }
    let mut status = 0;
    // SAFETY: `pid` is our child.
    assert_eq!(unsafe { waitpid(pid, &mut status, 0) }, pid);
    assert_eq!(status, 0, "child failed");
}

fn main() {
    let mode = std::env::args().nth(1).unwrap_or_default();
    println!("1M x 16 B: ns per block; RSS growth in MiB after free-all");
    println!(
        "{:<7} {:>9} {:>8} {:>11} {:>10}",
        "process", "alloc ns", "free ns", "freed MiB", "+1 s MiB"
    );
    // One allocation first, so the allocator's set-up happens before any run.
    drop(vec![0u8; 16]);
    match mode.as_str() {
        "child-first" => {
            child(None);
            run("parent", None);
        }
        "parent" => run("parent", None),
        "child" => child(None),
        "inherited" => {
            let mut table = vec![1; N];
            run("parent", Some(&mut table));
            child(Some(&mut table));
        }
        _ => {
            run("parent", None);
            child(None);
        }
    }
}
