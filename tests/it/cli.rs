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

/// The edit, disable and delete verbs of the CLI, run against a running server's
/// database: outcomes checked in the listings, the store and the audit trail; a duplicate
/// endpoint name, a name several organisations share and an unknown name are refused
/// clearly; a dry run of a bad CSV names every bad line and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edit_disable_remove_and_import_go_through_the_ra() {
    let s = start().await;
    let store = s.store().await;
    let org = estgate::demo::ORG;
    let form = "Example self-enrollment";
    let run = |args: &[&str]| estgate(&s, args, "");
    let ok = |args: &[&str]| {
        let (ok, out) = run(args);
        assert!(ok, "{args:?}: {out}");
        out
    };
    let refused = |args: &[&str], text: &str| {
        let (ok, out) = run(args);
        assert!(
            !ok && out.contains(text),
            "{args:?} should fail with {text:?}: {out}"
        );
        out
    };

    // Organisations, domains, departments.
    ok(&["org", "add", "Second Org", "--domain", "second.example"]);
    ok(&["org", "edit", "Second Org", "--name", "Second Organisation"]);
    ok(&[
        "org",
        "add-domain",
        "Second Organisation",
        "--domain",
        "two.example",
    ]);
    ok(&[
        "org",
        "remove-domain",
        "Second Organisation",
        "--domain",
        "two.example",
    ]);
    let list = ok(&["org", "list"]);
    let row = list
        .lines()
        .find(|l| l.starts_with("Second Organisation "))
        .unwrap_or_else(|| panic!("{list}"));
    assert!(row.ends_with(" second.example"), "{row}");
    refused(
        &["org", "edit", "No Such Org", "--name", "X"],
        "organisation \"No Such Org\" not found",
    );
    ok(&["dept", "add", "--org", "Second Organisation", "Eng"]);
    ok(&[
        "dept",
        "rename",
        "--org",
        "Second Organisation",
        "Eng",
        "Engineering",
    ]);
    let list = ok(&["dept", "list", "--org", "Second Organisation"]);
    assert!(
        list.lines()
            .any(|l| l.starts_with("Second Organisation") && l.ends_with(" Engineering")),
        "{list}"
    );

    // Endpoints: a name is unique per organisation, so a second organisation may reuse it,
    // but then a bare name is refused, naming both organisations.
    let out = refused(
        &["endpoint", "add", form, "--org", org],
        "already has this name",
    );
    assert!(out.contains(&format!("{form:?}")), "{out}");
    ok(&["endpoint", "add", form, "--org", "Second Organisation"]);
    let out = refused(&["endpoint", "edit", form, "--help-text", "x"], "--org");
    assert!(
        out.contains(&format!("{org:?}")) && out.contains("\"Second Organisation\""),
        "{out}"
    );
    ok(&[
        "endpoint",
        "edit",
        form,
        "--org",
        "Second Organisation",
        "--name",
        "Second form",
        "--auth",
        "secret-id",
    ]);
    let before = ok(&["endpoint", "list", "--org", "Second Organisation"]);
    let out = ok(&["endpoint", "regenerate-uri", "Second form"]);
    let ext = out
        .lines()
        .find_map(|l| l.strip_prefix("uri-extension: "))
        .unwrap();
    assert!(!before.contains(ext), "{before} {ext}");
    let after = ok(&["endpoint", "list"]);
    let row = after.lines().find(|l| l.contains("Second form")).unwrap();
    assert!(
        row.starts_with("Second Organisation") && row.contains(ext) && row.ends_with("secret-id"),
        "{row}"
    );
    refused(
        &["endpoint", "edit", "Nope", "--org", org, "--help-text", "x"],
        "endpoint \"Nope\" not found",
    );
    refused(
        &["endpoint", "add", "Bad", "--org", org, "--auth", "magic"],
        "--auth",
    );
    ok(&["endpoint", "remove", "Second form"]);
    assert!(!ok(&["endpoint", "list"]).contains("Second form"));

    // Profiles and accounts.
    ok(&[
        "profile",
        "add",
        "tmp",
        "--subject",
        "device",
        "--terms",
        "1",
    ]);
    ok(&[
        "profile",
        "edit",
        "tmp",
        "--name",
        "tmp2",
        "--requires-approval",
    ]);
    let list = ok(&["profile", "list"]);
    let row = list
        .lines()
        .find(|l| l.starts_with("tmp2 "))
        .unwrap_or_else(|| panic!("{list}"));
    assert!(row.contains("required"), "{row}");
    refused(&["profile", "edit", "tmp2", "--terms", "9"], "--terms");
    let out = ok(&[
        "account",
        "add",
        "Temp",
        "--org",
        org,
        "--endpoint",
        form,
        "--profile",
        "tmp2",
        "--authorization",
        "access-code",
        "--label",
        "temp",
    ]);
    let code1 = out
        .lines()
        .find_map(|l| l.strip_prefix("access-code: "))
        .unwrap()
        .to_string();
    let out = ok(&["account", "rotate-access-code", "Temp"]);
    let code2 = out
        .lines()
        .find_map(|l| l.strip_prefix("access-code: "))
        .unwrap()
        .to_string();
    assert_ne!(code1, code2);
    refused(&["profile", "remove", "tmp2"], "used by");
    ok(&[
        "account",
        "edit",
        "Temp",
        "--org",
        org,
        "--authorization",
        "none",
        "--no-label",
    ]);
    let list = ok(&["account", "list"]);
    let row = list
        .lines()
        .find(|l| l.starts_with("Temp "))
        .unwrap_or_else(|| panic!("{list}"));
    assert!(
        row.contains(org) && row.contains(form) && row.contains(" none ") && row.ends_with(" tmp2"),
        "{row}"
    );
    refused(
        &["account", "rotate-access-code", "Temp"],
        "without an access code",
    );
    ok(&["account", "remove", "Temp", "--org", org]);
    assert!(!ok(&["account", "list"])
        .lines()
        .any(|l| l.starts_with("Temp ")));
    refused(&["account", "remove", "Temp"], "account \"Temp\" not found");
    ok(&["profile", "remove", "tmp2"]);
    assert!(!ok(&["profile", "list"]).contains("tmp2"));

    // Persons: edit, disable, enable, unlock, remove.
    let out = ok(&[
        "person",
        "add",
        "--org",
        "Second Organisation",
        "--email",
        "bob@second.example",
        "--first",
        "Bob",
        "--last",
        "Builder",
        "--dept",
        "Engineering",
    ]);
    assert!(out.contains("secret-id: "), "{out}");
    ok(&[
        "person",
        "edit",
        "--email",
        "bob@second.example",
        "--first",
        "Robert",
        "--no-dept",
    ]);
    let email = estgate::domain::EmailAddress::parse("bob@second.example").unwrap();
    let bob = store.person_by_email(&email).await.unwrap().unwrap();
    assert_eq!(
        (bob.first_name.as_str(), bob.department_id),
        ("Robert", None)
    );
    ok(&["person", "disable", "--email", "bob@second.example"]);
    let list = ok(&["person", "list"]);
    let row = list
        .lines()
        .find(|l| l.starts_with("bob@second.example"))
        .unwrap();
    assert!(
        row.contains("Robert Builder")
            && row.contains("Second Organisation")
            && row.contains("disabled"),
        "{row}"
    );
    ok(&["person", "enable", "--email", "bob@second.example"]);
    ok(&["person", "unlock", "--email", "bob@second.example"]);
    refused(
        &["person", "disable", "--email", "nobody@example.org"],
        "person nobody@example.org not found",
    );
    refused(
        &[
            "person",
            "edit",
            "--email",
            "bob@second.example",
            "--dept",
            "Nope",
        ],
        "department \"Nope\" not found",
    );
    ok(&["person", "remove", "--email", "bob@second.example"]);
    assert!(store.person_by_email(&email).await.unwrap().is_none());
    assert!(!ok(&["person", "list"]).contains("bob@second.example"));
    ok(&[
        "dept",
        "remove",
        "--org",
        "Second Organisation",
        "Engineering",
    ]);
    assert!(!ok(&["dept", "list"]).contains("Engineering"));

    // Import: a dry run of a bad file names every bad line and adds nobody.
    let dir = s.dir.path();
    let bad = dir.join("bad.csv");
    std::fs::write(
        &bad,
        "email,first_name,middle_name,last_name,department,secret_id\n\
         carl@second.example,Carl,,C,,generate\n\
         eve@evil.example,Eve,,E,,\n\
         dora@second.example,Dora,,D,Nowhere,\n\
         finn@second.example,Finn,,F,,short\n",
    )
    .unwrap();
    let persons = store.persons().await.unwrap().len();
    let out = refused(
        &[
            "person",
            "import",
            "--org",
            "Second Organisation",
            "--file",
            bad.to_str().unwrap(),
            "--dry-run",
        ],
        "3 of 4 lines refused",
    );
    for line in [
        "line 3: email:",
        "line 4: department:",
        "line 5: secret_id:",
    ] {
        assert!(out.contains(line), "{line}: {out}");
    }
    assert!(!out.contains("line 2:"), "{out}");
    refused(
        &[
            "person",
            "import",
            "--org",
            "Second Organisation",
            "--file",
            bad.to_str().unwrap(),
        ],
        "nothing was imported",
    );
    assert_eq!(store.persons().await.unwrap().len(), persons);
    let good = dir.join("good.csv");
    std::fs::write(
        &good,
        "email,first_name,middle_name,last_name,department,secret_id\n\
         carl@second.example,Carl,,C,,generate\n\
         gina@second.example,Gina,,G,,\n",
    )
    .unwrap();
    let out = ok(&[
        "person",
        "import",
        "--org",
        "Second Organisation",
        "--file",
        good.to_str().unwrap(),
        "--dry-run",
    ]);
    assert!(out.contains("2 persons checked; nothing imported"), "{out}");
    assert_eq!(store.persons().await.unwrap().len(), persons);
    let out = ok(&[
        "person",
        "import",
        "--org",
        "Second Organisation",
        "--file",
        good.to_str().unwrap(),
    ]);
    assert!(
        out.contains("line 2: carl@second.example secret-id: "),
        "{out}"
    );
    assert!(
        out.lines().any(|l| l == "line 3: gina@second.example"),
        "{out}"
    );
    assert_eq!(store.persons().await.unwrap().len(), persons + 2);

    // An organisation still in use stays; every change above is the operator's.
    refused(
        &["org", "remove", "Second Organisation"],
        "still referred to",
    );
    let (ok_, out) = estgate_as(
        &s,
        None,
        &["person", "disable", "--email", "carl@second.example"],
    );
    assert!(!ok_ && out.contains("--operator"), "{out}");
    let export = ok(&["audit", "export"]);
    let events: Vec<serde_json::Value> = export
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for action in [
        "organisation.edit",
        "endpoint.delete",
        "account.rotate-access-code",
        "person.disable",
        "person.delete",
        "department.delete",
    ] {
        let e = events
            .iter()
            .find(|e| e["action"] == action)
            .unwrap_or_else(|| panic!("no {action}"));
        assert_eq!(e["actor"], "cli:it-ops", "{action}");
    }
    s.stop().await;
}
