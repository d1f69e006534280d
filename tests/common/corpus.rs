//! Replaying a committed fuzzing corpus (`fuzz/corpus/NAME`) and the inputs
//! of past findings (`fuzz/regressions/NAME`) through a target's harness.
//! Included by path by the replay tests of this crate and of the npm
//! package's (`web/tests/options_corpus.rs`).

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

/// Every input of target `name` under the fuzz directory `root` through
/// `harness`, which must not panic; how many were replayed. An empty corpus
/// fails: the target has never been run.
pub fn replay(
    root: &Path,
    name: &str,
    harness: impl Fn(&[u8]) + std::panic::RefUnwindSafe,
) -> usize {
    let corpus = inputs(&root.join("corpus").join(name));
    assert!(
        !corpus.is_empty(),
        "fuzz/corpus/{name} is empty: the target has never been run"
    );
    let findings = inputs(&root.join("regressions").join(name));
    let mut replayed = 0;
    for file in corpus.iter().chain(&findings) {
        // (A fuzzer running meanwhile may remove an input it reduced.)
        let Ok(data) = std::fs::read(file) else {
            continue;
        };
        let run = std::panic::catch_unwind(|| harness(&data));
        assert!(run.is_ok(), "{name}: {} fails its harness", file.display());
        replayed += 1;
    }
    replayed
}
