//! libFuzzer target: postsocket::fuzzing::context_json (see src/fuzzing.rs).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| postsocket::fuzzing::context_json(data));
