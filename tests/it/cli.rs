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
