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

/// Every file under `dir` (none if it does not exist).
fn inputs(dir: &Path) -> Vec<std::path::PathBuf> {
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
fn every_corpus_input_and_past_finding_passes_its_harness() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut total = 0;
    for (name, harness) in postsocket::fuzzing::TARGETS {
        let corpus = inputs(&root.join("corpus").join(name));
        assert!(
            !corpus.is_empty(),
            "fuzz/corpus/{name} is empty: the target has never been run"
        );
        let findings = inputs(&root.join("regressions").join(name));
        for file in corpus.iter().chain(&findings) {
            // (A fuzzer running meanwhile may remove an input it reduced.)
            let Ok(data) = std::fs::read(file) else {
                continue;
            };
            let run = std::panic::catch_unwind(|| harness(&data));
            assert!(run.is_ok(), "{name}: {} fails its harness", file.display());
            total += 1;
        }
    }
    eprintln!("{total} inputs replayed");
}
