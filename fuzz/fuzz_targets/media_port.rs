#![no_main]
//! libFuzzer driver of [`ruche_fuzz::media_port`].

libfuzzer_sys::fuzz_target!(|data: &[u8]| ruche_fuzz::media_port::run(data));
