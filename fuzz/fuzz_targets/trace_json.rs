//! libFuzzer target: postsocket::fuzzing::trace_json (see src/fuzzing.rs).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| postsocket::fuzzing::trace_json(data));
