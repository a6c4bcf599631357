#![no_main]
//! libFuzzer driver of [`ruche_fuzz::signaling`].

libfuzzer_sys::fuzz_target!(|data: &[u8]| ruche_fuzz::signaling::run(data));
