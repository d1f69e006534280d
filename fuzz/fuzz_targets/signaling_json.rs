//! libFuzzer target: postsocket::fuzzing::signaling_json (see src/fuzzing.rs).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| postsocket::fuzzing::signaling_json(data));
