//! Counting what a fuzz target executed, for its summary line: inputs run
//! and operations applied (each operation checked against the model), by
//! target, printed to stderr when the process exits (libFuzzer ends with
//! `exit`, so an `atexit` handler sees the final figures).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Once;

static INPUTS: AtomicU64 = AtomicU64::new(0);
static OPS: AtomicU64 = AtomicU64::new(0);
static NAME: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();
static REGISTER: Once = Once::new();

extern "C" {
    fn atexit(f: extern "C" fn()) -> i32;
}

extern "C" fn print_totals() {
    let name = NAME.get().copied().unwrap_or("fuzz");
    eprintln!(
        "hakmem-fuzz {name}: {} inputs, {} operations executed and checked",
        INPUTS.load(Ordering::Relaxed),
        OPS.load(Ordering::Relaxed)
    );
}

/// Counts one input of target `name` that executed `ops` operations; the
/// first call registers the summary printed at exit.
pub fn record(name: &'static str, ops: u64) {
    REGISTER.call_once(|| {
        let _ = NAME.set(name);
        // SAFETY: `print_totals` is a plain `extern "C" fn()` that only
        // reads atomics and writes to stderr.
        unsafe { atexit(print_totals) };
    });
    INPUTS.fetch_add(1, Ordering::Relaxed);
    OPS.fetch_add(ops, Ordering::Relaxed);
}
