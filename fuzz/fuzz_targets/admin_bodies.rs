#![no_main]
//! libFuzzer driver of [`ruche_fuzz::admin_bodies`].

libfuzzer_sys::fuzz_target!(|data: &[u8]| ruche_fuzz::admin_bodies::run(data));
