//! DESIGN.md's dependency rule: `{web, cli} → ra → {ca, store}`; `web → protocol`; everything
//! → `domain, error`, and the layers that count → `metrics` (a leaf); `domain` uses no other
//! crate of ours; web, cli and the `serve --demo`
//! seeding never reach the store. Checked by scanning the source text of each module.
//!
//! Test code is exempt: a `#[cfg(test)]` item (an inline `mod tests { … }`, a function, a `use`)
//! and a file declared as `#[cfg(test)] mod name;` may build fixtures through any module. Only
//! that item is left out: the scan goes on after its closing brace, so a break placed after a
//! test module is still found. An item whose end cannot be found (unbalanced braces) is scanned
//! as ordinary code, so a parsing slip makes the check stricter, never blind.
//!
//! Every rule is a function over source text, and each has a self-test below that plants a
//! violation (also one after a test module) and sees it reported.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

// ---- reading the source ------------------------------------------------------------------

/// A source file of `src/` without its test-only items.
struct Source {
    path: String,
    text: String,
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The `.rs` files under `dir` (or `dir` itself when it is a file), test-only files left out.
fn sources(dir: &Path) -> Vec<Source> {
    let mut files = Vec::new();
    collect_rs(dir, &mut files);
    let test_only = test_only_files(&src());
    files
        .into_iter()
        .filter(|p| !test_only.contains(p))
        .map(|p| Source {
            path: p.display().to_string(),
            text: without_test_items(&std::fs::read_to_string(&p).unwrap()),
        })
        .collect()
}

fn collect_rs(dir: &Path, out: &mut Vec<PathBuf>) {
    if dir.is_file() {
        out.push(dir.to_path_buf());
        return;
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            collect_rs(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Files declared `#[cfg(test)] mod name;` by their parent module, and everything under them.
fn test_only_files(root: &Path) -> BTreeSet<PathBuf> {
    let mut all = Vec::new();
    collect_rs(root, &mut all);
    let mut out = BTreeSet::new();
    for parent in all {
        let text = std::fs::read_to_string(&parent).unwrap();
        let stem = parent.file_stem().unwrap().to_string_lossy().into_owned();
        let dir = parent.parent().unwrap();
        // A module file's children live beside it for mod.rs/lib.rs, else in a folder named
        // after it.
        let children = if stem == "mod" || stem == "lib" || stem == "main" {
            dir.to_path_buf()
        } else {
            dir.join(&stem)
        };
        for name in test_mod_declarations(&text) {
            let file = children.join(format!("{name}.rs"));
            let folder = children.join(&name);
            if file.exists() {
                out.insert(file);
            }
            if folder.is_dir() {
                let mut inner = Vec::new();
                collect_rs(&folder, &mut inner);
                out.extend(inner);
            }
        }
    }
    out
}

/// The names `x` of `#[cfg(test)] mod x;` (other attributes may stand between the two).
fn test_mod_declarations(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    for (at, _) in text.match_indices("#[cfg(test)]") {
        let item = skip_attributes(&text[at + "#[cfg(test)]".len()..]);
        let item = item.strip_prefix("pub(crate) ").unwrap_or(item);
        let item = item.strip_prefix("pub ").unwrap_or(item);
        if let Some(rest) = item.strip_prefix("mod ") {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if rest[name.len()..].trim_start().starts_with(';') {
                names.push(name);
            }
        }
    }
    names
}

/// `text` after leading whitespace and attributes (`#[…]`, brackets balanced).
fn skip_attributes(mut text: &str) -> &str {
    loop {
        text = text.trim_start();
        if !text.starts_with("#[") {
            return text;
        }
        let mut depth = 0;
        let mut end = None;
        for (i, c) in text.char_indices() {
            match c {
                '[' => depth += 1,
                ']' => {
                    depth -= 1;
                    if depth == 0 {
                        end = Some(i + 1);
                        break;
                    }
                }
                _ => {}
            }
        }
        match end {
            Some(e) => text = &text[e..],
            None => return text,
        }
    }
}

/// `text` with every item that a `#[cfg(test)]` attribute guards cut out (the attribute, any
/// further attributes, and the item up to its `;` or its matching `}`).
fn without_test_items(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let after = &rest[at + "#[cfg(test)]".len()..];
        let item = skip_attributes(after);
        match item_len(item) {
            Some(n) => rest = &item[n..],
            None => {
                // End not found: keep it all, so the item is checked like any other code.
                out.push_str(&rest[at..]);
                return out;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The length of the item at the start of `text`: up to a `;` met before any `{`, or up to
/// the `}` that closes the first `{`. Strings, character literals and comments are skipped,
/// so braces inside them do not count.
fn item_len(text: &str) -> Option<usize> {
    let b = text.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                    i += 1;
                }
                i += 1;
            }
            b'r' if (b.get(i + 1) == Some(&b'"') || b.get(i + 1) == Some(&b'#'))
                && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_')) =>
            {
                let hashes = b[i + 1..].iter().take_while(|c| **c == b'#').count();
                if b.get(i + 1 + hashes) != Some(&b'"') {
                    i += 1;
                    continue;
                }
                let close: Vec<u8> = std::iter::once(b'"')
                    .chain(std::iter::repeat_n(b'#', hashes))
                    .collect();
                let start = i + 2 + hashes;
                let end = b[start..].windows(close.len()).position(|w| w == close)?;
                i = start + end + close.len() - 1;
            }
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            // A character literal ('{', '\'', '\u{7b}'); a lifetime has no closing quote.
            b'\'' => {
                if b.get(i + 1) == Some(&b'\\') {
                    let close = b[i + 2..].iter().position(|c| *c == b'\'')?;
                    i += 2 + close;
                } else {
                    let ch = text[i + 1..].chars().next()?;
                    if text[i + 1 + ch.len_utf8()..].starts_with('\'') {
                        i += 1 + ch.len_utf8();
                    }
                }
            }
            b';' if depth == 0 => return Some(i + 1),
            b'{' => depth += 1,
            b'}' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// Whether `word` occurs in `line` as a whole identifier (not inside `RootCertStore`).
fn has_word(line: &str, word: &str) -> bool {
    line.match_indices(word).any(|(i, _)| {
        let before = line[..i].chars().next_back();
        let after = line[i + word.len()..].chars().next();
        let ident = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
        !ident(before) && !ident(after)
    })
}

/// Each line of `s` that `bad` flags, as `path:line: text`. Comment lines are prose (a doc
/// comment may name what the module does not use).
fn flag(s: &Source, bad: impl Fn(&str) -> bool) -> Vec<String> {
    s.text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim_start().starts_with("//") && bad(l))
        .map(|(n, l)| format!("{}:{}: {}", s.path, n + 1, l.trim()))
        .collect()
}

// ---- the rules ----------------------------------------------------------------------------

/// The `crate::<module>` paths a file uses that `allowed` does not list.
fn crate_path_breaks(s: &Source, allowed: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for (i, _) in s.text.match_indices("crate::") {
        // `estgate_crate::` and the like are other words.
        if s.text[..i]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_')
        {
            continue;
        }
        let module: String = s.text[i + "crate::".len()..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if module.is_empty() {
            // `crate::{a, b}`: each name in the braces.
            let rest = &s.text[i + "crate::".len()..];
            if let Some(list) = rest.strip_prefix('{') {
                // The top-level names of the group (nested groups belong to them).
                let mut depth = 0;
                let mut names = vec![String::new()];
                for c in list.chars() {
                    match c {
                        '{' => depth += 1,
                        '}' if depth == 0 => break,
                        '}' => depth -= 1,
                        ',' if depth == 0 => names.push(String::new()),
                        c if depth == 0 => names.last_mut().unwrap().push(c),
                        _ => {}
                    }
                }
                for name in &names {
                    let name: String = name
                        .trim()
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    if !name.is_empty() && !allowed.contains(&name.as_str()) {
                        out.push(format!("{} uses crate::{name}", s.path));
                    }
                }
            }
        } else if !allowed.contains(&module.as_str()) {
            out.push(format!("{} uses crate::{module}", s.path));
        }
    }
    out
}

/// What reaches the store: its module, its type, or an accessor that hands it out
/// (`ra.store()`, `self.ra.store.…`, `store_mut()`), the binary's own path to it, and a
/// binding named `store` called as a receiver (`store.create_account(…)`, as the demo
/// seeding wrote before it went through the RA).
fn store_access(line: &str) -> bool {
    line.contains("crate::store")
        || line.match_indices("store.").any(|(i, _)| {
            !line[..i]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_alphanumeric() || c == '_')
        })
        || line.contains("estgate::store")
        || has_word(line, "Store")
        || has_word(line, "open_store")
        || line.contains(".store()")
        || line.contains(".store.")
        || line.contains(".store_mut(")
        || line.contains("::store(")
}

/// Lines that reach the store (the web front end, the CLI and the demo seeding go through
/// RA verbs only).
fn store_breaks(s: &Source) -> Vec<String> {
    flag(s, store_access)
}

/// The database layer's crates (only `store` and `app` may name them).
fn database_breaks(s: &Source) -> Vec<String> {
    flag(s, |l| {
        ["sea_orm", "sea_orm_migration", "sqlx", "estgate_migrations"]
            .iter()
            .any(|w| has_word(l, w))
    })
}

/// Other crates of this workspace (`domain` uses none of them).
fn workspace_crate_breaks(s: &Source) -> Vec<String> {
    flag(s, |l| {
        ["estgate_protocol", "estgate_migrations", "estgate_bench"]
            .iter()
            .any(|w| has_word(l, w))
            || l.contains("estgate::")
    })
}

/// Public functions and fields of the RA that hand out a store (a `Store`, `&Store`,
/// `Arc<Store>` in a return type, or a public field of that type).
fn ra_store_handout_breaks(s: &Source) -> Vec<String> {
    flag(s, |l| {
        let l = l.trim();
        let Some(item) = l
            .strip_prefix("pub ")
            .or_else(|| l.strip_prefix("pub(crate) "))
        else {
            return false;
        };
        let names_store = |t: &str| has_word(t, "Store") || t.contains("store::Store");
        if l.contains(" fn ") {
            return l.split_once("->").is_some_and(|(_, ret)| names_store(ret));
        }
        // A public field: `pub store: Store` (not a `pub use crate::store::…` of value types).
        let field: String = item
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let rest = item[field.len()..].trim_start();
        !field.is_empty()
            && field != "use"
            && rest.starts_with(':')
            && !rest.starts_with("::")
            && names_store(rest)
    })
}

// ---- the checks on src/ -------------------------------------------------------------------

#[test]
fn modules_only_use_what_the_design_allows() {
    let allowed: &[(&str, &[&str])] = &[
        ("domain", &["domain"]),
        // The operator's counters: a leaf every layer may count in.
        ("metrics.rs", &["metrics"]),
        ("ca", &["ca", "domain", "error"]),
        ("store", &["store", "domain", "error", "metrics"]),
        ("ra", &["ra", "ca", "store", "domain", "error", "metrics"]),
        ("web", &["web", "ra", "domain", "error", "metrics"]),
        ("mail", &["mail", "store", "domain", "error", "metrics"]),
        // The CLI opens the database and builds the RA through `app`, then only calls RA
        // verbs (issue 9: one set of rules).
        ("cli", &["cli", "app", "ra", "config", "domain", "error"]),
        // `serve --demo` seeds its data through the RA's administration verbs, as an
        // operator at the command line would (issue 10).
        ("demo.rs", &["demo", "ra", "config", "domain", "error"]),
    ];
    let mut violations = Vec::new();
    for (module, ok) in allowed {
        let files = sources(&src().join(module));
        assert!(!files.is_empty(), "no files in src/{module}");
        let mut uses = 0;
        for s in &files {
            uses += s.text.matches("crate::").count();
            violations.extend(crate_path_breaks(s, ok));
        }
        assert!(
            uses > 0 || matches!(*module, "domain" | "metrics.rs"),
            "no crate:: paths in src/{module}"
        );
    }
    assert!(
        violations.is_empty(),
        "dependency rule broken:\n{}",
        violations.join("\n")
    );
}

/// The web front end, the CLI and the `serve --demo` seeding never hold the store, not even
/// one handed out by the RA or opened by `app`: every action goes through an RA verb, so the
/// RA's policy and audit apply (issues 9 and 10). The demo has no exception: it seeds as the
/// operator `demo`.
#[test]
fn front_ends_and_the_demo_never_reach_the_store() {
    let mut offenders = Vec::new();
    for module in ["web", "cli", "demo.rs"] {
        let files = sources(&src().join(module));
        assert!(!files.is_empty(), "no src/{module}");
        for s in &files {
            offenders.extend(store_breaks(s));
        }
    }
    assert!(
        offenders.is_empty(),
        "a front end reaches the store:\n{}",
        offenders.join("\n")
    );
}

/// The web front end speaks to no database crate; only `store` (and `app`, which opens it)
/// know sea-orm.
#[test]
fn web_uses_no_database_crate() {
    let files = sources(&src().join("web"));
    let offenders: Vec<String> = files.iter().flat_map(database_breaks).collect();
    assert!(
        offenders.is_empty(),
        "web uses a database crate:\n{}",
        offenders.join("\n")
    );
}

/// `domain` holds pure types and uses no other crate of ours (DESIGN.md), so the wire format
/// can change without touching the model.
#[test]
fn domain_uses_no_other_crate_of_ours() {
    let files = sources(&src().join("domain"));
    let offenders: Vec<String> = files.iter().flat_map(workspace_crate_breaks).collect();
    assert!(
        offenders.is_empty(),
        "domain uses another crate of the workspace:\n{}",
        offenders.join("\n")
    );
}

/// The RA hands out no store: front ends reach the database only through RA verbs, so
/// policy cannot be bypassed (issue 9).
#[test]
fn the_ra_hands_out_no_store() {
    let files = sources(&src().join("ra"));
    let offenders: Vec<String> = files.iter().flat_map(ra_store_handout_breaks).collect();
    assert!(
        offenders.is_empty(),
        "the RA hands out its store:\n{}",
        offenders.join("\n")
    );
}

// ---- self-tests: each rule catches a planted violation --------------------------------------

/// A planted source, as `sources` would give it.
fn planted(text: &str) -> Source {
    Source {
        path: "planted.rs".into(),
        text: without_test_items(text),
    }
}

/// A test module with the usual hazards for a brace matcher, followed by `tail`.
fn after_a_test_module(tail: &str) -> String {
    format!(
        "use crate::ra::Ra;\n#[cfg(test)]\n#[allow(clippy::unwrap_used)]\nmod tests {{\n    use crate::store::Store;\n    fn f<'a>(s: &'a str) -> String {{ let _ = ('{{', '\\'', \"}}\\\"{{\", r#\"}}\"#); format!(\"{{s}}\") }}\n    // a comment with }}\n    /* and }} here */\n}}\n{tail}\n"
    )
}

#[test]
fn self_test_test_items_are_cut_exactly() {
    let s = planted(&after_a_test_module("fn after() {}"));
    assert!(s.text.contains("use crate::ra::Ra;"), "{}", s.text);
    assert!(s.text.contains("fn after() {}"), "{}", s.text);
    assert!(!s.text.contains("crate::store"), "{}", s.text);
    // `#[cfg(test)] mod x;` and `#[cfg(test)] use …;` end at their semicolon.
    let s =
        planted("#[cfg(test)]\nmod tests;\n#[cfg(test)] use crate::store::Store;\nfn kept() {}");
    assert_eq!(s.text.trim(), "fn kept() {}");
    assert_eq!(
        test_mod_declarations(
            "#[cfg(test)]\n#[path = \"x\"]\nmod lifecycle_tests;\n#[cfg(test)]\nmod inline { }"
        ),
        vec!["lifecycle_tests".to_string()]
    );
    // Unbalanced: everything stays and is checked.
    let s = planted("#[cfg(test)]\nmod tests {\n use crate::store::Store;\n");
    assert!(s.text.contains("crate::store"));
}

#[test]
fn self_test_crate_paths() {
    let web = ["web", "ra", "domain", "error"];
    for bad in [
        "use crate::store::Store;",
        "use crate::{ra::Ra, store::Store};",
        "use crate::{ra::{Ra, Credentials}, store::{Store, StoreError}};",
        "let x = crate::ca::sign();",
    ] {
        assert!(!crate_path_breaks(&planted(bad), &web).is_empty(), "{bad}");
        let hidden = after_a_test_module(bad);
        assert!(
            !crate_path_breaks(&planted(&hidden), &web).is_empty(),
            "after tests: {bad}"
        );
    }
    assert!(crate_path_breaks(&planted("use crate::{ra::Ra, domain::Id};"), &web).is_empty());
    assert!(crate_path_breaks(
        &planted("use crate::{ra::{Ra, Credentials}, domain::{Id, KeyType}};"),
        &web
    )
    .is_empty());
    assert!(crate_path_breaks(&planted(&after_a_test_module("")), &web).is_empty());
}

#[test]
fn self_test_web_reaching_the_store_through_the_ra() {
    for bad in [
        "let order = state.ra.store().create_order(x).await?;",
        "self.ra.store.revoke(id).await?;",
        "fn h(s: &Store) {}",
        "use estgate::store::Store;",
        "let s = app::open_store(&config).await?;",
        "let s = Ra::store(&ra);",
    ] {
        assert!(!store_breaks(&planted(bad)).is_empty(), "{bad}");
        assert!(
            !store_breaks(&planted(&after_a_test_module(bad))).is_empty(),
            "after tests: {bad}"
        );
    }
    for fine in [
        "let roots = rustls::RootCertStore::empty();",
        "h.insert(CACHE_CONTROL, \"no-store\");",
        "let restored = x.restore();",
        "self.too_slow.store(true, Ordering::Relaxed);",
    ] {
        assert!(store_breaks(&planted(fine)).is_empty(), "{fine}");
    }
}

#[test]
fn self_test_the_ra_handing_out_a_store() {
    for bad in [
        "    pub fn store(&self) -> &Store {",
        "    pub(crate) fn store(&self) -> &crate::store::Store {",
        "    pub async fn db(&self) -> Arc<Store> {",
        "    pub store: Store,",
    ] {
        assert!(!ra_store_handout_breaks(&planted(bad)).is_empty(), "{bad}");
        assert!(
            !ra_store_handout_breaks(&planted(&after_a_test_module(bad))).is_empty(),
            "after tests: {bad}"
        );
    }
    for fine in [
        "    pub fn new(store: Store, ca: Ca) -> Ra {",
        "    fn store(&self) -> &Store {",
        "    store: Store,",
        "pub use crate::store::{AuditFilter, ChainReport};",
        "    pub fn filter(&self) -> store::AuditFilter {",
    ] {
        assert!(ra_store_handout_breaks(&planted(fine)).is_empty(), "{fine}");
    }
}

/// The demo seeding as it was before it went through the RA: each of its ways to the store
/// is reported, also after a test module; the RA verbs it calls now are not.
#[test]
fn self_test_the_demo_writing_to_the_store() {
    for bad in [
        "pub async fn seed(store: &Store, config: &Config, now: UnixTime) -> Result<Demo, StoreError> {",
        "use crate::store::{AuditEntry, NewAccount, NewEndpoint, NewPerson, NewProfile, Store, StoreError};",
        "            store.set_account_access_code(a.id, &hash_secret(&code)).await?",
        "    let org = store.create_organisation(ORG, &[DOMAIN.to_string()], now).await?;",
        "    ra.store().create_account(new).await?;",
        "    let s = estgate::app::open_store(&config).await?;",
        "    let e = crate::store::NewEndpoint { name };",
    ] {
        assert!(!store_breaks(&planted(bad)).is_empty(), "{bad}");
        assert!(
            !store_breaks(&planted(&after_a_test_module(bad))).is_empty(),
            "after tests: {bad}"
        );
    }
    for fine in [
        "pub async fn seed(ra: &Ra) -> Result<Demo, Error> {",
        "        Some(a) => ra.rotate_access_code(caller, a.id).await,",
        "    let secret = ra.reset_person_secret_id(&caller, p.id, None).await?;",
        "use crate::ra::admin::{AccountRequest, Caller, OrganisationChanges};",
    ] {
        assert!(store_breaks(&planted(fine)).is_empty(), "{fine}");
    }
    // The demo module is held to the module rule too: the store's value types are not its.
    let demo = ["demo", "ra", "config", "domain", "error"];
    assert!(!crate_path_breaks(&planted("use crate::store::NewAccount;"), &demo).is_empty());
    assert!(crate_path_breaks(&planted("use crate::ra::admin::Caller;"), &demo).is_empty());
}

#[test]
fn self_test_web_importing_sea_orm() {
    for bad in [
        "use sea_orm::EntityTrait;",
        "let db: sea_orm::DatabaseConnection = x;",
        "sqlx::query(\"x\")",
    ] {
        assert!(!database_breaks(&planted(bad)).is_empty(), "{bad}");
        assert!(
            !database_breaks(&planted(&after_a_test_module(bad))).is_empty(),
            "after tests: {bad}"
        );
    }
}

#[test]
fn self_test_domain_importing_the_protocol_crate() {
    for bad in [
        "pub use estgate_protocol::KeyAlgorithm as KeyType;",
        "use estgate_protocol::{pkcs10, Csr};",
        "fn f(k: estgate_protocol::KeyAlgorithm) {}",
    ] {
        assert!(!workspace_crate_breaks(&planted(bad)).is_empty(), "{bad}");
        assert!(
            !workspace_crate_breaks(&planted(&after_a_test_module(bad))).is_empty(),
            "after tests: {bad}"
        );
    }
    assert!(workspace_crate_breaks(&planted("pub enum KeyType { EcP256 }")).is_empty());
    assert!(workspace_crate_breaks(&planted("/// unlike `estgate_protocol::X`")).is_empty());
}
