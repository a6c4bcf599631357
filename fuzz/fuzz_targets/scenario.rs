#![no_main]
//! libFuzzer driver of [`ruche_fuzz::scenario`].

libfuzzer_sys::fuzz_target!(|data: &[u8]| ruche_fuzz::scenario::run(data));
