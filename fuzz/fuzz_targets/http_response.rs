//! libFuzzer target: postsocket::fuzzing::http_response (see src/fuzzing.rs).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| postsocket::fuzzing::http_response(data));
