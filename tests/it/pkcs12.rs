//! PKCS#12 files with a server-generated key, imported by four independent implementations:
//! OpenSSL 3, NSS (pk12util, as Firefox and Thunderbird), GnuTLS (certtool) and Python's
//! `cryptography`. Each must find the key, the leaf with its friendlyName, and the chain,
//! and the key must match the certificate.
//!
//! OpenSSL is on every machine; NSS, GnuTLS and Python's `cryptography` may not be: without
//! them their part is skipped with a notice, except in CI (`crate::outside`).

use std::process::Command;

use estgate::ca::keys::generate;
use estgate::ca::pkcs12::build;
use estgate::domain::KeyType;
use estgate::domain::Pkcs12Encryption;

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (is it installed? .ci/run installs it)"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// A certificate for a generated key, issued through the real server's RA and CA.
async fn issued(
    s: &crate::support::Server,
    key_type: KeyType,
) -> (Vec<u8>, zeroize::Zeroizing<Vec<u8>>) {
    let key = generate(key_type).unwrap();
    let signer = rcgen::KeyPair::try_from(key.pkcs8.as_slice()).unwrap();
    let csr = rcgen::CertificateParams::new(vec!["x".to_string()])
        .unwrap()
        .serialize_request(&signer)
        .unwrap();
    let (user, pass) = s.password("staff");
    let ra = &s.running.as_ref().unwrap().ra;
    let account = ra.account_for_label(Some("staff")).await.unwrap();
    let creds = estgate::ra::Credentials {
        username: user,
        password: estgate::domain::Secret::new(pass),
    };
    let cert = ra
        .enroll(account, Some(creds), csr.der(), "test")
        .await
        .unwrap();
    (cert.der, key.pkcs8)
}

#[tokio::test]
async fn every_variant_imports_everywhere() {
    let s = crate::support::start().await;
    let dir = s.dir.path();
    let chain = s.running.as_ref().unwrap().ra.ca_chain().to_vec();
    let name = "Alice Example <alice@example.org>";
    let cases = [
        (
            KeyType::EcP256,
            Pkcs12Encryption::Modern,
            "correct horse battery",
        ),
        (
            KeyType::Rsa { bits: 2048 },
            Pkcs12Encryption::Modern,
            "pässwört-ünïcode",
        ),
        (
            KeyType::EcP384,
            Pkcs12Encryption::Legacy,
            "correct horse battery",
        ),
        (KeyType::Rsa { bits: 2048 }, Pkcs12Encryption::Legacy, ""),
    ];
    let nss = crate::outside::available("certutil", "the NSS import", "libnss3-tools")
        && crate::outside::available("pk12util", "the NSS import", "libnss3-tools");
    let gnutls = crate::outside::available("certtool", "the GnuTLS import", "gnutls-bin");
    let python = crate::outside::python_module(
        "cryptography.hazmat.primitives.serialization.pkcs12",
        "the Python cryptography import",
        "python3-cryptography",
    );
    for (i, (key_type, enc, password)) in cases.into_iter().enumerate() {
        let (leaf, pkcs8) = issued(&s, key_type).await;
        let p12 = build(&pkcs8, &leaf, &chain, name, password, enc).unwrap();
        let file = dir.join(format!("case{i}.p12"));
        std::fs::write(&file, &p12).unwrap();
        let pass_arg = format!("pass:{password}");
        let what = format!("case {i} {key_type:?} {enc:?}");

        // OpenSSL 3: decrypt everything, and the key matches the leaf.
        let (ok, out) = run(Command::new("openssl")
            .args(["pkcs12", "-in"])
            .arg(&file)
            .args(["-passin", &pass_arg, "-nodes", "-info"]));
        assert!(ok, "{what}: openssl pkcs12: {out}");
        assert!(
            out.contains(&format!("friendlyName: {name}")),
            "{what}: {out}"
        );
        assert_eq!(out.matches("BEGIN CERTIFICATE").count(), 3, "{what}: {out}");
        assert!(out.contains("BEGIN PRIVATE KEY"), "{what}");
        let expect_mac = if enc == Pkcs12Encryption::Modern {
            "MAC: sha256"
        } else {
            "MAC: sha1"
        };
        assert!(out.contains(expect_mac), "{what}: {out}");
        let pem = dir.join(format!("case{i}.pem"));
        std::fs::write(&pem, &out).unwrap();
        let (_, leaf_pub) = run(Command::new("openssl")
            .args(["x509", "-noout", "-pubkey", "-in"])
            .arg(&pem));
        let (_, key_pub) = run(Command::new("openssl")
            .args(["pkey", "-pubout", "-in"])
            .arg(&pem));
        assert_eq!(leaf_pub, key_pub, "{what}: key and certificate differ");

        // NSS (Firefox, Thunderbird): import into a fresh database.
        if nss {
            nss_import(dir, i, &file, password, &what);
        }

        // GnuTLS.
        if gnutls {
            let (ok, out) = run(Command::new("certtool")
                .args(["--p12-info", "--inder", "--infile"])
                .arg(&file)
                .args(["--password", password]));
            assert!(ok, "{what}: certtool: {out}");
            assert!(
                out.contains("Friendly name: Alice Example"),
                "{what}: {out}"
            );
        }

        // Python cryptography.
        if python {
            python_import(&file, password, &what);
        }

        // A wrong password is refused.
        let (ok, _) = run(Command::new("openssl")
            .args(["pkcs12", "-in"])
            .arg(&file)
            .args(["-passin", "pass:wrong", "-nodes"]));
        assert!(!ok, "{what}: openssl accepted a wrong password");
    }
    s.stop().await;
}

/// pk12util imports the file into a fresh NSS database, which then lists the certificate and
/// the key under the friendly name.
fn nss_import(dir: &std::path::Path, i: usize, file: &std::path::Path, password: &str, what: &str) {
    let db = dir.join(format!("nss{i}"));
    std::fs::create_dir_all(&db).unwrap();
    let dbarg = format!("sql:{}", db.display());
    let (ok, out) = run(Command::new("certutil").args(["-N", "--empty-password", "-d", &dbarg]));
    assert!(ok, "{what}: certutil -N: {out}");
    let (ok, out) = run(Command::new("pk12util")
        .args(["-i"])
        .arg(file)
        .args(["-d", &dbarg, "-W", password, "-K", ""]));
    assert!(ok, "{what}: pk12util: {out}");
    let (ok, out) = run(Command::new("certutil").args(["-L", "-d", &dbarg]));
    assert!(
        ok && out.contains("Alice Example"),
        "{what}: certutil -L: {out}"
    );
    let (ok, out) = run(Command::new("certutil").args(["-K", "-d", &dbarg]));
    assert!(
        ok && out.contains("Alice Example"),
        "{what}: certutil -K: {out}"
    );
}

/// Python's `cryptography` loads key, leaf and both chain certificates, and the key matches.
fn python_import(file: &std::path::Path, password: &str, what: &str) {
    let script = "import sys\nfrom cryptography.hazmat.primitives.serialization import pkcs12\nd=open(sys.argv[1],'rb').read()\np=sys.argv[2].encode()\nk,c,extra=pkcs12.load_key_and_certificates(d, p if p else None)\nassert k.public_key().public_numbers()==c.public_key().public_numbers()\nassert len(extra)==2\nprint('ok', c.subject.rfc4514_string())\n";
    let (ok, out) = run(Command::new("python3")
        .args(["-c", script])
        .arg(file)
        .arg(password));
    assert!(
        ok && out.starts_with("ok "),
        "{what}: python cryptography: {out}"
    );
}
