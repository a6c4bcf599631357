#![no_main]
//! libFuzzer driver of [`ruche_fuzz::custom_resources`].

libfuzzer_sys::fuzz_target!(|data: &[u8]| ruche_fuzz::custom_resources::run(data));
