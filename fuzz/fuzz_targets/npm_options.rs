//! The npm package's options (`new Preconnection(options)`, Connection and
//! Message Properties), decoded from the fuzzer's bytes by
//! `postsocket_web::options::fuzz_value`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| postsocket_web::options::fuzz(data));
