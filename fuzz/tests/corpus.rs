//! Replays the committed corpus of each target through the same `run`
//! functions libFuzzer calls, on stable Rust: `cargo test` in `fuzz/`.
//! Every input that once found a bug is kept here (minimised) as a
//! regression test, beside the inputs that reach each path.

use std::fs;
use std::path::Path;

fn replay(target: &str, run: fn(&[u8]) -> u64) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    let mut inputs = 0;
    let mut ops = 0;
    for e in fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = e.unwrap().path();
        let data = fs::read(&path).unwrap();
        ops += run(&data);
        inputs += 1;
    }
    eprintln!("{target}: {inputs} inputs, {ops} operations");
    assert!(inputs > 0, "no corpus for {target}");
    assert!(ops > 0, "the corpus of {target} executes nothing");
}

#[test]
fn core_ops_corpus() {
    replay("core_ops", hakmem_fuzz::core_ops::run);
}

#[test]
fn bare_ops_corpus() {
    replay("bare_ops", hakmem_fuzz::bare_ops::run);
}

#[test]
fn c_abi_corpus() {
    replay("c_abi", hakmem_fuzz::c_abi::run);
}
