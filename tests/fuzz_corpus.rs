//! Replays the committed fuzzing corpus and the inputs of past findings
//! through the same harnesses libFuzzer drives (`src/fuzzing.rs`): every
//! input must pass, on the stable toolchain, in every test run. Needs the
//! `fuzzing` feature: `cargo test --features fuzzing --test fuzz_corpus`
//! (the test command runs it). Fuzzing itself: see fuzz/README.md.
#![cfg(all(
    feature = "fuzzing",
    not(all(target_arch = "wasm32", target_os = "unknown"))
))]

use std::path::Path;

#[path = "common/corpus.rs"]
mod corpus;

#[test]
fn every_corpus_input_and_past_finding_passes_its_harness() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let total: usize = postsocket::fuzzing::TARGETS
        .iter()
        .map(|(name, harness)| corpus::replay(&root, name, harness))
        .sum();
    eprintln!("{total} inputs replayed");
}
