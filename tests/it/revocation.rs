//! Revocation as relying parties see it: the CRL, the caIssuers certificate and OCSP over
//! the real plain-HTTP listener, checked with OpenSSL (`crl -verify`, `verify -crl_check`,
//! `ocsp`), before and after a revocation.

use std::process::Command;

use estgate::domain::{Actor, RevocationReason};
use estgate_bench::{basic_auth, make_csrs};
use estgate_protocol::transfer;
use x509_parser::prelude::*;

use crate::support::{openssl, pem, single_cert, start, Server};

async fn enroll_device(s: &Server, cn: &str) -> Vec<u8> {
    let (user, code) = s.password("devices");
    let (csr, _key) = make_csrs("ec-p256", cn, 1).unwrap().remove(0);
    let auth = basic_auth(&user, &code);
    let body = transfer::encode_base64(&csr, transfer::Wrap::Columns64);
    let mut c = s.connect().await;
    let r = c
        .request(
            "POST",
            "/.well-known/est/devices/simpleenroll",
            &[
                ("Content-Type", "application/pkcs10"),
                ("Authorization", &auth),
                ("User-Agent", "estgate-tests"),
            ],
            body.as_bytes(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body_text());
    single_cert(&r)
}

/// A plain HTTP/1.1 exchange through curl: (status, content type, body).
fn curl(args: &[&str]) -> (u16, String, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("body");
    let o = Command::new("curl")
        .args(["-s", "--max-time", "10", "-o"])
        .arg(&out)
        .args(["-w", "%{http_code} %{content_type}"])
        .args(args)
        .output()
        .expect("curl must be installed");
    let meta = String::from_utf8_lossy(&o.stdout).into_owned();
    let (code, ctype) = meta.split_once(' ').unwrap_or((&meta, ""));
    (
        code.parse().unwrap_or(0),
        ctype.to_string(),
        std::fs::read(&out).unwrap_or_default(),
    )
}

/// `openssl ocsp` against the server for `leaf`; returns its combined output.
fn ocsp(s: &Server, leaf_pem: &std::path::Path, extra: &[&str]) -> String {
    let url = format!("http://{}/ocsp", s.http_addr());
    let o = Command::new("openssl")
        .arg("ocsp")
        .arg("-issuer")
        .arg(s.issuing_ca_pem())
        .arg("-cert")
        .arg(leaf_pem)
        .arg("-url")
        .arg(&url)
        .arg("-CAfile")
        .arg(&s.config.trust_anchor)
        .args(extra)
        .output()
        .expect("openssl must be installed");
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn crl_pem(s: &Server, dir: &std::path::Path) -> std::path::PathBuf {
    let (status, ctype, body) = curl(&[&format!("http://{}/crl", s.http_addr())]);
    assert_eq!(status, 200);
    assert_eq!(ctype, "application/pkix-crl");
    let der = dir.join("ca.crl");
    std::fs::write(&der, &body).unwrap();
    let out = dir.join("ca.crl.pem");
    openssl(
        &[
            "crl",
            "-inform",
            "DER",
            "-in",
            "ca.crl",
            "-out",
            "ca.crl.pem",
        ],
        dir,
    );
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crl_and_ocsp_show_a_revocation_at_once() {
    let s = start().await;
    let leaf = enroll_device(&s, "ocsp-1.example.org").await;
    let dir = tempfile::tempdir().unwrap();
    let leaf_pem = dir.path().join("leaf.pem");
    std::fs::write(&leaf_pem, pem(&leaf)).unwrap();
    let (_, cert) = parse_x509_certificate(&leaf).unwrap();
    let serial = cert.raw_serial_as_string().replace(':', "").to_uppercase();

    // The certificate names the public HTTP base in its CDP and AIA.
    let text = openssl(&["x509", "-in", "leaf.pem", "-noout", "-text"], dir.path());
    let public = crate::support::PUBLIC_HTTP;
    assert!(text.contains(&format!("URI:{public}/crl")), "{text}");
    assert!(
        text.contains(&format!("OCSP - URI:{public}/ocsp")),
        "{text}"
    );
    let base = format!("http://{}", s.http_addr());
    assert!(
        text.contains(&format!("CA Issuers - URI:{public}/ca.cer")),
        "{text}"
    );

    // caIssuers is the issuing CA, DER.
    let (status, ctype, body) = curl(&[&format!("{base}/ca.cer")]);
    assert_eq!((status, ctype.as_str()), (200, "application/pkix-cert"));
    assert_eq!(body, s.running.as_ref().unwrap().ra.ca_chain()[0]);

    // Before: good, and the CRL verifies and lets the certificate pass.
    let before = ocsp(&s, &leaf_pem, &[]);
    assert!(before.contains("Response verify OK"), "{before}");
    assert!(before.contains("leaf.pem: good"), "{before}");
    assert!(
        !before.contains("WARNING: no nonce"),
        "nonce not echoed: {before}"
    );
    let crl = crl_pem(&s, dir.path());
    let issuing = s.issuing_ca_pem();
    let verified = Command::new("openssl")
        .args(["crl", "-noout", "-verify", "-in"])
        .arg(&crl)
        .arg("-CAfile")
        .arg(&issuing)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&verified.stderr).contains("verify OK"),
        "{verified:?}"
    );
    let check = |crl: &std::path::Path| {
        Command::new("openssl")
            .args(["verify", "-crl_check", "-CRLfile"])
            .arg(crl)
            .arg("-CAfile")
            .arg(&s.config.trust_anchor)
            .arg("-untrusted")
            .arg(&issuing)
            .arg(&leaf_pem)
            .output()
            .unwrap()
    };
    assert!(check(&crl).status.success());

    // Revoke through the RA, as the form and the CLI do.
    let ra = &s.running.as_ref().unwrap().ra;
    let revoked = ra
        .revoke_serial(
            &serial.to_lowercase(),
            RevocationReason::KeyCompromise,
            Actor {
                name: "test-admin".into(),
                source: "local".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(revoked.serial, serial);

    // After: revoked with the reason, at once, with and without a nonce.
    for extra in [&[][..], &["-no_nonce"][..]] {
        let after = ocsp(&s, &leaf_pem, extra);
        assert!(after.contains("Response verify OK"), "{after}");
        assert!(after.contains("leaf.pem: revoked"), "{after}");
        assert!(after.contains("keyCompromise"), "{after}");
    }
    let crl = crl_pem(&s, dir.path());
    let text = openssl(&["crl", "-in", "ca.crl.pem", "-noout", "-text"], dir.path());
    assert!(text.contains(&serial), "{text}");
    assert!(text.contains("Key Compromise"), "{text}");
    let failed = check(&crl);
    assert!(!failed.status.success());
    assert!(
        String::from_utf8_lossy(&failed.stdout).contains("certificate revoked")
            || String::from_utf8_lossy(&failed.stderr).contains("certificate revoked")
    );

    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ocsp_answers_unknown_serials_and_refuses_bad_requests() {
    let s = start().await;
    let leaf = enroll_device(&s, "ocsp-2.example.org").await;
    let dir = tempfile::tempdir().unwrap();
    let leaf_pem = dir.path().join("leaf.pem");
    std::fs::write(&leaf_pem, pem(&leaf)).unwrap();
    let base = format!("http://{}", s.http_addr());

    // A serial this CA never issued.
    let url = format!("{base}/ocsp");
    let o = Command::new("openssl")
        .arg("ocsp")
        .arg("-issuer")
        .arg(s.issuing_ca_pem())
        .args(["-serial", "0x0123456789ABCDEF", "-url", &url, "-CAfile"])
        .arg(&s.config.trust_anchor)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains(": unknown"), "{text}");

    // GET with the base64 request in the path gives the same answer as POST.
    openssl(
        &[
            "ocsp",
            "-issuer",
            s.issuing_ca_pem().to_str().unwrap(),
            "-cert",
            "leaf.pem",
            "-no_nonce",
            "-reqout",
            "req.der",
        ],
        dir.path(),
    );
    let req = std::fs::read(dir.path().join("req.der")).unwrap();
    let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &req);
    let encoded = b64
        .replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D");
    let (status, ctype, body) = curl(&[&format!("{base}/ocsp/{encoded}")]);
    assert_eq!((status, ctype.as_str()), (200, "application/ocsp-response"));
    std::fs::write(dir.path().join("resp.der"), &body).unwrap();
    let text = Command::new("openssl")
        .args(["ocsp", "-respin", "resp.der", "-resp_text", "-CAfile"])
        .arg(&s.config.trust_anchor)
        .arg("-issuer")
        .arg(s.issuing_ca_pem())
        .current_dir(dir.path())
        .output()
        .unwrap();
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&text.stdout),
        String::from_utf8_lossy(&text.stderr)
    );
    assert!(out.contains("Cert Status: good"), "{out}");
    assert!(out.contains("Response verify OK"), "{out}");

    // Not an OCSP request: an OCSP answer that says so. Wrong media type: 415.
    let (status, _, body) = curl(&[
        "-H",
        "Content-Type: application/ocsp-request",
        "--data-binary",
        "not DER",
        &url,
    ]);
    assert_eq!(status, 200);
    std::fs::write(dir.path().join("bad.der"), &body).unwrap();
    let text = Command::new("openssl")
        .args(["ocsp", "-respin", "bad.der", "-resp_text", "-noverify"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&text.stdout),
        String::from_utf8_lossy(&text.stderr)
    );
    assert!(out.contains("malformedrequest"), "{out}");
    let (status, _, _) = curl(&["-H", "Content-Type: text/plain", "--data-binary", "x", &url]);
    assert_eq!(status, 415);
    s.stop().await;
}
