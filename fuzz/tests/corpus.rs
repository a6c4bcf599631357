//! The corpus of every target, replayed: each input the fuzzer kept (and each crash it found,
//! once fixed) must pass its target again. `make fuzz` grows the corpus; this keeps it honest.

#![allow(clippy::panic)] // helpers of the tests, which fail by panicking

use std::path::{Path, PathBuf};

use ruche_fuzz::TARGETS;

fn corpus(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target)
}

fn inputs(target: &str) -> Vec<PathBuf> {
    let dir = corpus(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn every_target_passes_its_whole_corpus() {
    for (target, run) in TARGETS {
        let inputs = inputs(target);
        assert!(!inputs.is_empty(), "{target} has no corpus");
        for input in inputs {
            let data = std::fs::read(&input).unwrap_or_else(|e| panic!("{}: {e}", input.display()));
            // A panic names the target; the file is printed first so it can be run alone.
            eprintln!("{target}: {}", input.display());
            run(&data);
        }
    }
}

#[test]
fn every_target_has_a_libfuzzer_driver() {
    let drivers = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz_targets");
    for (target, _) in TARGETS {
        let driver = drivers.join(format!("{target}.rs"));
        let text = std::fs::read_to_string(&driver)
            .unwrap_or_else(|e| panic!("{}: {e}", driver.display()));
        assert!(
            text.contains(&format!("ruche_fuzz::{target}::run")),
            "{} does not drive {target}",
            driver.display()
        );
    }
}
