//! Replays the committed fuzzing corpus of the npm package's option parsing
//! (`fuzz/corpus/npm_options`) and the inputs of past findings
//! (`fuzz/regressions/npm_options`) through the harness libFuzzer drives,
//! `postsocket_web::options::fuzz`, natively, in every test run (`cargo test
//! --workspace`). Fuzzing itself: see fuzz/README.md.
#![cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]

use std::path::Path;

#[path = "../../tests/common/corpus.rs"]
mod corpus;

#[test]
fn every_npm_options_corpus_input_and_past_finding_passes_the_harness() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let replayed = corpus::replay(&root, "npm_options", postsocket_web::options::fuzz);
    eprintln!("{replayed} inputs replayed");
}
