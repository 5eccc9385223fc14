//! The Rust workloads, each run on the binary's `#[global_allocator]`.
//! Every one prints `metric` lines and a `check` computed from values read
//! back out of its blocks (see [`crate::out`]).

pub mod channels;
pub mod churn;
pub mod collections;
pub mod growth;
pub mod pairs;
pub mod scaling;

/// Names of the Rust workloads, as given to [`run`] (the scaling test
/// takes one case per process: `scaling:16:1000000`).
pub const NAMES: [&str; 6] = [
    "scaling",
    "collections",
    "growth",
    "churn",
    "channels",
    "pairs",
];

/// Runs workload `name` with work multiplied by `scale` over the thread
/// counts `threads`; false if there is no such workload.
pub fn run(name: &str, scale: f64, threads: &[usize]) -> bool {
    match name {
        case if case.starts_with("scaling:") => {
            let mut f = case.split(':').skip(1);
            let mixed = f.next() == Some("mixed");
            match f.next().and_then(|n| n.parse().ok()) {
                Some(n) => scaling::run_case(mixed, n),
                None => return false,
            }
        }
        "collections" => collections::run(scale),
        "growth" => growth::run(scale),
        "churn" => churn::run(scale),
        "channels" => channels::run(scale, threads),
        "pairs" => pairs::run(scale),
        _ => return false,
    }
    true
}

/// `n × scale`, at least 1.
pub fn scaled(n: f64, scale: f64) -> usize {
    ((n * scale) as usize).max(1)
}
