//! The `core_ops` fuzz target: see `hakmem_fuzz::core_ops`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let ops = hakmem_fuzz::core_ops::run(data);
    hakmem_fuzz::report::record("core_ops", ops);
});
