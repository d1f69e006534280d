//! libFuzzer target: postsocket::fuzzing::framers (see src/fuzzing.rs).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| postsocket::fuzzing::framers(data));
