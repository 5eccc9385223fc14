//! The `c_abi` fuzz target: see `hakmem_fuzz::c_abi`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let ops = hakmem_fuzz::c_abi::run(data);
    hakmem_fuzz::report::record("c_abi", ops);
});
