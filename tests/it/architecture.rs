//! DESIGN.md's dependency rule: web → ra → {ca, store}; everything → domain, error.
//! Checked by scanning the `crate::` paths each module uses.

use std::path::Path;

fn crate_paths(dir: &Path, out: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            crate_paths(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs")
            // Test modules (`tests.rs`, `*_tests.rs`) may use the test harness.
            && !path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().ends_with("tests.rs"))
        {
            let text = std::fs::read_to_string(&path).unwrap();
            let text = text.split("#[cfg(test)]").next().unwrap_or("");
            for (i, _) in text.match_indices("crate::") {
                let rest = &text[i + "crate::".len()..];
                let module: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '{')
                    .collect();
                out.push((
                    path.display().to_string(),
                    module.trim_end_matches('{').to_string(),
                ));
            }
        }
    }
}

#[test]
fn modules_only_use_what_the_design_allows() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let allowed: &[(&str, &[&str])] = &[
        ("domain", &["domain"]),
        ("ca", &["ca", "domain", "error"]),
        ("store", &["store", "domain", "error"]),
        ("ra", &["ra", "ca", "store", "domain", "error"]),
        ("web", &["web", "ra", "domain", "error"]),
        ("mail", &["mail", "store", "domain", "error"]),
        // The CLI opens the database and builds the RA through `app`, then only calls RA
        // verbs (issue 9: one set of rules).
        ("cli", &["cli", "app", "ra", "config", "domain", "error"]),
    ];
    let mut violations = Vec::new();
    for (module, ok) in allowed {
        let mut uses = Vec::new();
        crate_paths(&root.join(module), &mut uses);
        assert!(
            !uses.is_empty() || *module == "domain",
            "no crate:: paths found in {module}"
        );
        for (file, used) in uses {
            if !ok.contains(&used.as_str()) {
                violations.push(format!("{file} uses crate::{used}"));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "dependency rule broken:\n{}",
        violations.join("\n")
    );
}

/// The CLI never holds the store, not even one `app` opened for it: every administration
/// command goes through an RA verb, so the RA's policy and audit apply (issue 9).
#[test]
fn the_cli_never_reaches_the_store() {
    let mut files = Vec::new();
    collect_rs(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src/cli"),
        &mut files,
    );
    assert!(!files.is_empty(), "no src/cli/*.rs");
    let mut offenders = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        for (n, line) in text.lines().enumerate() {
            for banned in [
                "crate::store",
                "open_store",
                "Store::",
                ": Store",
                "estgate::store",
            ] {
                if line.contains(banned) {
                    offenders.push(format!("{}:{}: {}", path.display(), n + 1, line.trim()));
                }
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "the CLI reaches the store:\n{}",
        offenders.join("\n")
    );
}

/// The RA hands out no store: front ends reach the database only through RA verbs, so
/// policy cannot be bypassed (issue 9). Fails if a public function of `ra/` returns one.
#[test]
fn the_ra_hands_out_no_store() {
    let mut offenders = Vec::new();
    let mut files = Vec::new();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/ra");
    collect_rs(&root, &mut files);
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        for line in text.lines() {
            let l = line.trim();
            let public = l.starts_with("pub fn") || l.starts_with("pub async fn");
            if public
                && (l.contains("-> &Store")
                    || l.contains("-> Store")
                    || l.contains("&crate::store::Store"))
            {
                offenders.push(format!("{}: {l}", path.display()));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "the RA hands out its store:\n{}",
        offenders.join("\n")
    );
}

fn collect_rs(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect_rs(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}
