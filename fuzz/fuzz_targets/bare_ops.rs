//! The `bare_ops` fuzz target: see `hakmem_fuzz::bare_ops`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let ops = hakmem_fuzz::bare_ops::run(data);
    hakmem_fuzz::report::record("bare_ops", ops);
});
