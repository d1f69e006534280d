//! Replays the committed fuzzing corpus of the npm package's option parsing
//! (`fuzz/corpus/npm_options`) and the inputs of past findings
//! (`fuzz/regressions/npm_options`) through the harness libFuzzer drives,
//! `postsocket_web::options::fuzz`, natively, in every test run (`cargo test
//! --workspace`). Fuzzing itself: see fuzz/README.md.
#![cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]

use std::path::{Path, PathBuf};

/// Every file under `dir` (none if it does not exist).
fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn every_npm_options_corpus_input_and_past_finding_passes_the_harness() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let corpus = inputs(&root.join("corpus/npm_options"));
    assert!(
        !corpus.is_empty(),
        "fuzz/corpus/npm_options is empty: the target has never been run"
    );
    let findings = inputs(&root.join("regressions/npm_options"));
    for file in corpus.iter().chain(&findings) {
        let Ok(data) = std::fs::read(file) else {
            continue;
        };
        let run = std::panic::catch_unwind(|| postsocket_web::options::fuzz(&data));
        assert!(run.is_ok(), "{} fails the harness", file.display());
    }
    eprintln!("{} inputs replayed", corpus.len() + findings.len());
}
