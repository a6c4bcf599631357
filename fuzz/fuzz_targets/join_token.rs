#![no_main]
//! libFuzzer driver of [`ruche_fuzz::join_token`].

libfuzzer_sys::fuzz_target!(|data: &[u8]| ruche_fuzz::join_token::run(data));
