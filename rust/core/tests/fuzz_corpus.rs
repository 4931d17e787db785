//! Replays the committed fuzz corpus (`fuzz/corpus/<target>/`) through the fuzz targets on
//! stable Rust, so every input that once found a defect, and the seeds, keep passing
//! without nightly or cargo-fuzz. New fuzzing is `fuzz/run.sh`; this only replays.

use std::path::{Path, PathBuf};

use atacformer_core::fuzzing::{self, TARGETS};

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target)
}

/// Every file of a target's corpus, in name order.
fn inputs(target: &str) -> Vec<PathBuf> {
    let dir = corpus_dir(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("readable folder").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

fn replay(target: &str) {
    let files = inputs(target);
    assert!(!files.is_empty(), "the {target} corpus is empty");
    for file in files {
        let data = std::fs::read(&file).expect("readable corpus file");
        let outcome = std::panic::catch_unwind(|| fuzzing::run(target, &data));
        match outcome {
            Ok(known) => assert!(known, "no target {target}"),
            Err(_) => panic!("fuzz target {target} fails on {}", file.display()),
        }
    }
}

#[test]
fn every_target_has_a_corpus() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
    let mut found: Vec<String> = std::fs::read_dir(&dir)
        .expect("fuzz/corpus exists")
        .map(|e| {
            e.expect("readable")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    found.sort();
    let mut want: Vec<String> = TARGETS.iter().map(|t| t.to_string()).collect();
    want.sort();
    assert_eq!(found, want);
    assert!(!fuzzing::run("no such target", b""));
}

#[test]
fn bed_corpus() {
    replay("bed");
}

#[test]
fn fragments_corpus() {
    replay("fragments");
}

#[test]
fn gzip_corpus() {
    replay("gzip");
}

#[test]
fn toml_corpus() {
    replay("toml");
}

#[test]
fn atok_corpus() {
    replay("atok");
}

#[test]
fn state_corpus() {
    replay("state");
}
