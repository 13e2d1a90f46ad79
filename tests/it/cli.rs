//! `estgate cert issue`: the admin CLI issues with a server-generated key into a PKCS#12 file.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::support::{openssl, start, Server};

fn estgate(s: &Server, args: &[&str], stdin: &str) -> (bool, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_estgate"))
        .arg("--data-dir")
        .arg(&s.config.data_dir)
        .args(args)
        .env("ESTGATE_DATABASE_URL", &s.config.database_url)
        .env("ESTGATE_OPERATOR", "it-ops")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test]
async fn cert_issue_writes_a_pkcs12_and_refuses_bad_input() {
    let s = start().await;
    let store = s.store().await;
    let dir = s.dir.path();
    let pw = dir.join("pw");
    std::fs::write(&pw, "a long enough passphrase\n").unwrap();
    let p12 = dir.join("alice.p12");
    let p12s = p12.to_str().unwrap();
    let pws = pw.to_str().unwrap();

    let (ok, out) = estgate(
        &s,
        &[
            "cert",
            "issue",
            "--account",
            "staff",
            "--subject",
            "alice@example.org",
            "--p12",
            p12s,
            "--password-file",
            pws,
        ],
        "",
    );
    assert!(ok, "{out}");
    assert!(out.contains("Alice Example <alice@example.org>"), "{out}");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&p12).unwrap().permissions())
            & 0o777;
    assert_eq!(mode, 0o600);
    let text = openssl(
        &[
            "pkcs12",
            "-in",
            p12s,
            "-passin",
            &format!("file:{pws}"),
            "-nodes",
            "-info",
        ],
        dir,
    );
    assert!(
        text.contains("friendlyName: Alice Example <alice@example.org>")
            && text.contains("BEGIN PRIVATE KEY"),
        "{text}"
    );

    // Device, chosen key type, legacy encryption, password typed twice on stdin.
    let dev = dir.join("dev.p12");
    let (ok, out) = estgate(
        &s,
        &[
            "cert",
            "issue",
            "--account",
            "devices",
            "--subject",
            "gw-1.example.org",
            "--key-type",
            "rsa-2048",
            "--p12-encryption",
            "legacy",
            "--p12",
            dev.to_str().unwrap(),
        ],
        "device passphrase\ndevice passphrase\n",
    );
    assert!(ok, "{out}");
    let info = Command::new("openssl")
        .args([
            "pkcs12",
            "-in",
            dev.to_str().unwrap(),
            "-passin",
            "pass:device passphrase",
            "-noout",
            "-info",
        ])
        .output()
        .unwrap();
    let info =
        String::from_utf8_lossy(&info.stderr).into_owned() + &String::from_utf8_lossy(&info.stdout);
    assert!(
        info.contains("MAC: sha1") && info.contains("pbeWithSHA1And3-KeyTripleDES-CBC"),
        "{info}"
    );
    assert_eq!(store.certificates().await.unwrap().len(), 2);

    // Refusals: nothing issued, no file written.
    let refused = [
        (
            vec!["--account", "staff", "--subject", "alice@example.org"],
            "typed\ndiffers\n",
            "differ",
        ),
        (
            vec!["--account", "staff", "--subject", "alice@example.org"],
            "short\nshort\n",
            "at least 8",
        ),
        (
            vec![
                "--account",
                "staff",
                "--subject",
                "nobody@example.org",
                "--password-file",
                pws,
            ],
            "",
            "no person",
        ),
        (
            vec![
                "--account",
                "devices",
                "--subject",
                "evil.example.com",
                "--password-file",
                pws,
            ],
            "",
            "not within",
        ),
        (
            vec![
                "--account",
                "devices",
                "--subject",
                "gw-2.example.org",
                "--key-type",
                "rsa-4096",
                "--password-file",
                pws,
            ],
            "",
            "not allowed",
        ),
        (
            vec![
                "--account",
                "nosuch",
                "--subject",
                "alice@example.org",
                "--password-file",
                pws,
            ],
            "",
            "unknown EST label",
        ),
    ];
    for (args, stdin, text) in refused {
        let out_file = dir.join("refused.p12");
        let mut all = vec!["cert", "issue", "--p12", out_file.to_str().unwrap()];
        all.extend(args.iter().copied());
        let (ok, out) = estgate(&s, &all, stdin);
        assert!(!ok && out.contains(text), "{args:?}: {out}");
        assert!(!out_file.exists());
    }
    // An existing file is never overwritten.
    let (ok, out) = estgate(
        &s,
        &[
            "cert",
            "issue",
            "--account",
            "staff",
            "--subject",
            "alice@example.org",
            "--p12",
            p12s,
            "--password-file",
            pws,
        ],
        "",
    );
    assert!(!ok && out.contains("not overwriting"), "{out}");
    assert_eq!(store.certificates().await.unwrap().len(), 2);
    s.stop().await;
}

#[tokio::test]
async fn endpoint_help_links_are_web_or_mail_addresses_only() {
    let s = start().await;
    let org = estgate::demo::ORG;
    for bad in ["javascript:alert(1)", "data:text/html,hi", "ftp://x"] {
        let (ok, out) = estgate(
            &s,
            &[
                "endpoint",
                "add",
                "Bad",
                "--org",
                org,
                "--help-link-target",
                bad,
            ],
            "",
        );
        assert!(!ok, "{bad}: {out}");
        assert!(out.contains("--help-link-target"), "{out}");
    }
    let (ok, out) = estgate(
        &s,
        &[
            "endpoint",
            "add",
            "Good",
            "--org",
            org,
            "--help-link-target",
            "mailto:pki@example.org",
        ],
        "",
    );
    assert!(ok, "{out}");
    assert!(out.contains("uri-extension:"), "{out}");
    s.stop().await;
}

fn estgate_as(s: &Server, operator: Option<&str>, args: &[&str]) -> (bool, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_estgate"));
    cmd.arg("--data-dir")
        .arg(&s.config.data_dir)
        .args(args)
        .env("ESTGATE_DATABASE_URL", &s.config.database_url)
        .env_remove("ESTGATE_OPERATOR");
    if let Some(o) = operator {
        cmd.env("ESTGATE_OPERATOR", o);
    }
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_admin_is_audited_as_the_named_operator_and_the_chain_verifies() {
    let s = start().await;
    let dir = s.dir.path();
    let pw = dir.join("admin-pw");
    std::fs::write(&pw, "a long admin password\n").unwrap();
    let pws = pw.to_str().unwrap();
    let add = [
        "admin",
        "add",
        "--role",
        "mrao",
        "--name",
        "Jane Ops",
        "--email",
        "jane@example.org",
        "--password-file",
        pws,
    ];
    // Without a name for the operator nothing is written.
    let (ok, out) = estgate_as(&s, None, &add);
    assert!(!ok && out.contains("--operator"), "{out}");
    let (ok, out) = estgate_as(&s, Some("ops-jane"), &add);
    assert!(ok, "{out}");
    assert!(out.contains("TOTP secret"), "{out}");
    let (ok, out) = estgate_as(&s, Some("ops-jane"), &add);
    assert!(!ok && out.contains("already exists"), "{out}");
    let (ok, out) = estgate_as(&s, None, &["admin", "list"]);
    assert!(
        ok && out.contains("jane@example.org") && out.contains("mrao"),
        "{out}"
    );

    let (ok, out) = estgate_as(&s, None, &["audit", "verify"]);
    assert!(ok && out.contains("audit chain intact"), "{out}");
    let (ok, out) = estgate_as(&s, None, &["audit", "export"]);
    assert!(ok, "{out}");
    let events: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let created = events
        .iter()
        .find(|e| e["action"] == "admin.create")
        .expect("admin.create exported");
    assert_eq!(created["actor"], "cli:ops-jane");
    assert!(created["hash"].as_str().unwrap().len() == 64);

    // Remove one event behind the server's back: verify names it and fails.
    let seq = created["seq"].as_i64().unwrap();
    let db = sea_orm::Database::connect(&s.config.database_url)
        .await
        .unwrap();
    sea_orm::ConnectionTrait::execute_unprepared(
        &db,
        &format!("DELETE FROM audit_event WHERE seq = {seq}"),
    )
    .await
    .unwrap();
    let (ok, out) = estgate_as(&s, None, &["audit", "verify"]);
    assert!(!ok, "{out}");
    assert!(
        out.contains(&format!("events {seq}..{seq} were removed")),
        "{out}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_into_a_closed_pipe_ends_quietly() {
    let s = start().await;
    let mut child = Command::new(env!("CARGO_BIN_EXE_estgate"))
        .arg("--data-dir")
        .arg(&s.config.data_dir)
        .args(["cert", "list"])
        .env("ESTGATE_DATABASE_URL", &s.config.database_url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The reader goes away before the first line is written, as `| head -0` would.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(out.status.success(), "{stderr}");
    s.stop().await;
}
