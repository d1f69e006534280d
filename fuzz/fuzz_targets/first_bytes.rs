//! libFuzzer target: postsocket::fuzzing::first_bytes (see src/fuzzing.rs).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| postsocket::fuzzing::first_bytes(data));
