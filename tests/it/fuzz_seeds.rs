//! Every seed of the fuzz corpora (`fuzz/seeds/<target>/`) and every input the fuzzer ever
//! crashed on (`fuzz/regressions/<target>/`, kept as regression tests) goes through the same
//! function the AFL++ target calls. This runs in the normal suite, so a decoder change that
//! panics on a known input fails `cargo test` without cargo-afl installed.

use std::path::Path;

fn replay(kind: &str) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join(kind);
    let mut count = 0;
    for (target, run) in estgate::fuzzing::TARGETS {
        let dir = root.join(target);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut files: Vec<_> = entries.map(|e| e.unwrap().path()).collect();
        files.sort();
        for file in files {
            let data = std::fs::read(&file).unwrap();
            let outcome = std::panic::catch_unwind(|| run(&data));
            assert!(outcome.is_ok(), "{target} panics on {}", file.display());
            count += 1;
        }
    }
    count
}

#[test]
fn the_seed_corpora_replay_without_a_crash() {
    let n = replay("seeds");
    // Each target has seeds (a target without any would be fuzzed from nothing).
    for (target, _) in estgate::fuzzing::TARGETS {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/seeds")
            .join(target);
        assert!(
            std::fs::read_dir(&dir).is_ok_and(|mut d| d.next().is_some()),
            "no seeds in {}",
            dir.display()
        );
    }
    assert!(n > 0);
}

#[test]
fn inputs_the_fuzzer_crashed_on_stay_fixed() {
    replay("regressions");
}
