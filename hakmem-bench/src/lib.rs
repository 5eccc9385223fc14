//! hakmem-bench: every hakmem claim measured side by side with its peers.
//!
//! The driver (`src/main.rs`) runs each workload in a child process per
//! allocator and per repetition and writes the report. This library holds
//! what the children share: the Rust workloads ([`workloads`]), run by one
//! small binary per `#[global_allocator]` (`src/bin/rs-*.rs`), the
//! bare-metal workloads ([`bare`], run by `src/bin/bare.rs`), RSS reading
//! ([`rss`]) and the lines a child prints ([`out`]).

pub mod bare;
pub mod out;
pub mod rng;
pub mod rss;
pub mod workloads;

/// Entry point of the `rs-*` binaries: `rs-NAME WORKLOAD SCALE THREADS`,
/// where SCALE multiplies the work (1 = full run) and THREADS is a comma
/// list of thread counts. Exits with status 2 on bad arguments.
pub fn rust_child_main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 4 {
        eprintln!("usage: {} WORKLOAD SCALE THREADS", args[0]);
        std::process::exit(2);
    }
    let scale: f64 = args[2].parse().unwrap_or(1.0);
    let threads: Vec<usize> = args[3]
        .split(',')
        .filter_map(|t| t.parse().ok())
        .map(|t: usize| t.max(1))
        .collect();
    if !workloads::run(&args[1], scale, &threads) {
        eprintln!("unknown workload {}", args[1]);
        std::process::exit(2);
    }
}
