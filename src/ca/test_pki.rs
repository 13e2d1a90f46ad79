//! Test fixtures for the ca module: a development PKI in a temporary directory, leaves issued
//! from it, and the independent tools (OpenSSL, pkilint) that check what we make.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::dev::{ensure_dev_ca, PkiFiles};
use super::{new_serial, pem_certificate, Ca, IssuancePlan, PublicationUrls, Subject, Usage};
use crate::domain::{KeyType, SmimeType, UnixTime};

pub(crate) const HTTP_BASE: &str = "http://pki.example.org/";

pub(crate) struct TestPki {
    pub dir: tempfile::TempDir,
    pub ca: Ca,
    /// The issuing CA alone, PEM.
    pub issuing_pem: PathBuf,
    /// The root alone, PEM: the trust anchor.
    pub root_pem: PathBuf,
    /// Issuing CA then root, PEM.
    pub chain_pem: PathBuf,
}

pub(crate) fn now() -> UnixTime {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The development PKI `serve` makes, with publication URLs under `HTTP_BASE`.
pub(crate) fn test_pki() -> TestPki {
    let dir = tempfile::tempdir().unwrap();
    let files = PkiFiles::in_dir(dir.path());
    assert!(ensure_dev_ca(&files, now()).unwrap());
    let ca = Ca::load(&files.ca_chain, &files.ca_key)
        .unwrap()
        .with_publication(PublicationUrls::from_base(HTTP_BASE));
    let issuing_pem = write(dir.path(), "issuing.pem", pem_certificate(&ca.chain()[0]));
    let root_pem = write(dir.path(), "root.pem", pem_certificate(&ca.chain()[1]));
    TestPki {
        chain_pem: files.ca_chain.clone(),
        dir,
        ca,
        issuing_pem,
        root_pem,
    }
}

impl TestPki {
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn write(&self, name: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
        write(self.dir.path(), name, bytes)
    }

    /// Signs `plan` for a fresh key of its key type.
    pub fn issue(&self, plan: &IssuancePlan) -> Vec<u8> {
        let key = super::keys::generate(plan.key).unwrap();
        self.ca.sign(plan, &key.spki_der).unwrap()
    }
}

pub(crate) fn write(dir: &Path, name: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// A person certificate for Erika Mustermann of Example Ltd, valid for a year.
pub(crate) fn person_plan(key: KeyType, smime: Option<SmimeType>) -> IssuancePlan {
    let now = now();
    IssuancePlan {
        serial: new_serial(),
        not_before: now - 60,
        not_after: now + 365 * 86_400,
        subject: Subject {
            common_name: "Erika Mustermann".into(),
            given_name: Some("Erika".into()),
            surname: Some("Mustermann".into()),
            organisation: Some("Example Ltd".into()),
            organisational_unit: Some("Research".into()),
            organization_identifier: Some("NTRGB-01234567".into()),
        },
        emails: vec!["erika@example.org".into()],
        dns_names: Vec::new(),
        usage: Usage::Person,
        key,
        smime,
    }
}

pub(crate) fn device_plan(key: KeyType) -> IssuancePlan {
    let now = now();
    IssuancePlan {
        serial: new_serial(),
        not_before: now - 60,
        not_after: now + 365 * 86_400,
        subject: Subject {
            common_name: "printer7.example.org".into(),
            organisation: Some("Example Ltd".into()),
            ..Subject::default()
        },
        emails: Vec::new(),
        dns_names: vec!["printer7.example.org".into()],
        usage: Usage::Device,
        key,
        smime: None,
    }
}

/// Runs `openssl` and returns whether it succeeded and what it printed (stdout then stderr).
pub(crate) fn openssl(args: &[&dyn AsRef<std::ffi::OsStr>]) -> (bool, String) {
    let out = Command::new("openssl")
        .args(args.iter().map(|a| a.as_ref()))
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Runs a pkilint command on `der` and fails on any ERROR, WARNING or FATAL finding.
/// Returns the findings it printed (notices and informational ones), or `None` when pkilint
/// is not installed (`python3 -m pip install pkilint==0.13.3`).
pub(crate) fn pkilint(dir: &Path, command: &str, args: &[&str], der: &[u8]) -> Option<String> {
    let file = write(dir, &format!("{command}.der"), der);
    let out = match Command::new(command)
        .arg("lint")
        .args(args)
        .arg(&file)
        .output()
    {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // CI installs pkilint and sets ESTGATE_TEST_REQUIRE_TOOLS=1: there it must run.
            assert!(
                std::env::var("ESTGATE_TEST_REQUIRE_TOOLS").map_or(true, |v| v != "1"),
                "{command}: pkilint is not on PATH and ESTGATE_TEST_REQUIRE_TOOLS=1 requires it"
            );
            // Past the harness's capture, so the skip shows in a passing run.
            let _ = std::io::Write::write_all(
                &mut std::io::stderr(),
                format!("\n*** SKIPPED: the {command} check: pkilint is not on PATH (python3 -m pip install pkilint==0.13.3; .ci/run does) ***\n").as_bytes(),
            );
            return None;
        }
        Err(e) => panic!("{command}: {e}"),
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let bad: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("(ERROR)") || l.contains("(WARNING)") || l.contains("(FATAL)"))
        .collect();
    assert!(bad.is_empty(), "{command} {args:?} found:\n{text}");
    // pkilint exits non-zero when it found anything at or above its threshold (notice by
    // default); a crash shows as a traceback instead of findings.
    assert!(!text.contains("Traceback"), "{command} failed:\n{text}");
    Some(text)
}
