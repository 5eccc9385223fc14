//! The logic of hakmem's fuzz targets, as a library: each target in
//! `fuzz_targets/` is one call to a `run` function here, and
//! `tests/corpus.rs` replays the committed corpus through the same
//! functions on stable Rust (no libFuzzer), so a corpus input that once
//! found a bug stays a regression test.
//!
//! Each `run` decodes its input as a sequence of operations ([`input`]),
//! applies them to the allocator and to a model of the live blocks, checks
//! the allocator against the model after every operation, frees everything
//! at the end and checks that every byte went back. It returns how many
//! operations it executed; [`report`] adds them up for the target's
//! summary line at exit.
#![deny(missing_docs)]

pub mod bare_ops;
pub mod c_abi;
pub mod core_ops;
pub mod input;
pub mod live;
pub mod pattern;
pub mod report;
