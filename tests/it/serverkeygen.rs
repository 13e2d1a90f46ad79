//! EST /serverkeygen (RFC 7030 §4.4): multipart key + certificate, and the PKCS#12
//! extension, against the real server.

use estgate_bench::{basic_auth, make_csrs, Response};
use estgate_protocol::{pkcs7, transfer};
use rcgen::PublicKeyData;
use x509_parser::prelude::*;

use crate::support::{openssl, openssl_verify, start, Server};

async fn keygen(s: &Server, label: &str, csr: &[u8], extra: &[(&str, &str)]) -> Response {
    let account = s.demo.accounts.iter().find(|a| a.label == label).unwrap();
    let auth = basic_auth(&account.username, &account.password);
    let mut headers = vec![
        ("Content-Type", "application/pkcs10"),
        ("Authorization", auth.as_str()),
        ("User-Agent", "t"),
    ];
    headers.extend_from_slice(extra);
    let body = transfer::encode_base64(csr, transfer::Wrap::Columns64);
    let mut c = s.connect().await;
    c.request(
        "POST",
        &format!("/.well-known/est/{label}/serverkeygen"),
        &headers,
        body.as_bytes(),
    )
    .await
    .unwrap()
}

/// (content type, decoded body) of each part.
fn parts(r: &Response) -> Vec<(String, Vec<u8>)> {
    let ct = r.header("content-type").unwrap();
    let boundary = ct.split("boundary=").nth(1).unwrap().trim_matches('"');
    let text = r.body_text();
    text.split(&format!("--{boundary}"))
        .filter(|p| !p.trim().is_empty() && !p.starts_with("--"))
        .map(|p| {
            let (head, body) = p.split_once("\r\n\r\n").unwrap();
            assert!(head.contains("Content-Transfer-Encoding: base64"), "{head}");
            let ct = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Type: "))
                .unwrap()
                .to_string();
            (ct, transfer::decode_base64(body.as_bytes()).unwrap())
        })
        .collect()
}

fn key_type_of(cert: &[u8]) -> (String, usize) {
    let (_, c) = parse_x509_certificate(cert).unwrap();
    let pk = c.public_key();
    (
        pk.algorithm.algorithm.to_id_string(),
        pk.parsed().unwrap().key_size(),
    )
}

#[tokio::test]
async fn multipart_key_and_certificate() {
    let s = start().await;
    let store = s.store().await;
    // EC P-384 asked for and allowed by the device profile.
    let csr = make_csrs("ec-p384", "gen-1.example.org", 1)
        .unwrap()
        .remove(0)
        .0;
    let r = keygen(&s, "devices", &csr, &[]).await;
    assert_eq!(r.status, 200, "{}", r.body_text());
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("multipart/mixed; boundary="));
    let p = parts(&r);
    assert_eq!(p.len(), 2);
    assert_eq!(p[0].0, "application/pkcs8");
    assert_eq!(p[1].0, "application/pkcs7-mime; smime-type=certs-only");
    let cert = pkcs7::parse_certs_only(&p[1].1).unwrap().remove(0);
    openssl_verify(&s, &cert, Some("sslclient"));
    let key = rcgen::KeyPair::try_from(p[0].1.as_slice()).unwrap();
    let (_, parsed) = parse_x509_certificate(&cert).unwrap();
    assert_eq!(
        parsed.public_key().raw,
        key.subject_public_key_info().as_slice(),
        "the key belongs to the certificate"
    );
    assert_ne!(
        parsed.public_key().raw,
        estgate_protocol::pkcs10::parse(&csr).unwrap().spki_der,
        "the CSR's key is not used"
    );
    assert_eq!(key_type_of(&cert), ("1.2.840.10045.2.1".to_string(), 384));
    assert!(parsed
        .subject()
        .to_string()
        .contains("CN=gen-1.example.org"));

    // RSA-4096 is not in the device profile: the profile default (EC P-256) is generated.
    let csr = make_csrs("rsa-4096", "gen-2.example.org", 1)
        .unwrap()
        .remove(0)
        .0;
    let r = keygen(&s, "devices", &csr, &[]).await;
    assert_eq!(r.status, 200, "{}", r.body_text());
    let cert = pkcs7::parse_certs_only(&parts(&r)[1].1).unwrap().remove(0);
    assert_eq!(key_type_of(&cert), ("1.2.840.10045.2.1".to_string(), 256));
    // Private keys are never stored: no row anywhere holds the PKCS#8.
    assert_eq!(store.certificates().await.unwrap().len(), 2);
    s.stop().await;
}

#[tokio::test]
async fn pkcs12_extension_with_both_encryptions() {
    let s = start().await;
    let csr = make_csrs("rsa-2048", "ignored", 1).unwrap().remove(0).0;
    let password = "my pkcs12 passphrase";
    let encoded = transfer::encode_base64(password.as_bytes(), transfer::Wrap::Unwrapped);
    for (enc, mac) in [
        ("", "MAC: sha256"),
        ("legacy", "MAC: sha1"),
        ("modern", "MAC: sha256"),
    ] {
        let mut extra = vec![
            ("Accept", "application/pkcs12"),
            ("PKCS12-Password", encoded.as_str()),
        ];
        if !enc.is_empty() {
            extra.push(("PKCS12-Encryption", enc));
        }
        let r = keygen(&s, "staff", &csr, &extra).await;
        assert_eq!(r.status, 200, "{enc}: {}", r.body_text());
        assert_eq!(r.header("content-type"), Some("application/pkcs12"));
        let file = s.dir.path().join(format!("alice-{enc}.p12"));
        std::fs::write(&file, transfer::decode_base64(&r.body).unwrap()).unwrap();
        let out = openssl(
            &[
                "pkcs12",
                "-in",
                file.to_str().unwrap(),
                "-passin",
                &format!("pass:{password}"),
                "-nodes",
                "-info",
            ],
            s.dir.path(),
        );
        assert!(
            out.contains("friendlyName: Alice Example <alice@example.org>"),
            "{out}"
        );
        assert_eq!(out.matches("BEGIN CERTIFICATE").count(), 3, "{out}");
        let info = std::process::Command::new("openssl")
            .args([
                "pkcs12",
                "-in",
                file.to_str().unwrap(),
                "-passin",
                &format!("pass:{password}"),
                "-noout",
                "-info",
            ])
            .output()
            .unwrap();
        let info = format!(
            "{}{}",
            String::from_utf8_lossy(&info.stdout),
            String::from_utf8_lossy(&info.stderr)
        );
        assert!(info.contains(mac), "{enc}: {info}");
    }
    s.stop().await;
}

#[tokio::test]
async fn serverkeygen_refusals_issue_nothing() {
    let s = start().await;
    let store = s.store().await;
    let csr = make_csrs("ec-p256", "x", 1).unwrap().remove(0).0;
    let short = transfer::encode_base64(b"short", transfer::Wrap::Unwrapped);
    let p12 = ("Accept", "application/pkcs12");
    for (extra, status, text) in [
        (
            vec![p12, ("PKCS12-Password", short.as_str())],
            400,
            "at least 8",
        ),
        (vec![p12], 400, "at least 8"),
        (vec![p12, ("PKCS12-Password", "!!notbase64")], 400, "base64"),
        (
            vec![
                p12,
                ("PKCS12-Password", "bG9uZyBlbm91Z2ggcGFzc3dvcmQ="),
                ("PKCS12-Encryption", "rc2"),
            ],
            400,
            "modern or legacy",
        ),
    ] {
        let r = keygen(&s, "staff", &csr, &extra).await;
        assert_eq!(r.status, status, "{extra:?}: {}", r.body_text());
        assert!(r.body_text().contains(text), "{extra:?}: {}", r.body_text());
    }
    // No credentials.
    let mut c = s.connect().await;
    let body = transfer::encode_base64(&csr, transfer::Wrap::Columns64);
    let r = c
        .request(
            "POST",
            "/.well-known/est/staff/serverkeygen",
            &[("Content-Type", "application/pkcs10"), ("User-Agent", "t")],
            body.as_bytes(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 401);
    // A CSR asking for the key to be encrypted to it (DecryptKeyIdentifier): 501, no key in clear.
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let attr = rcgen::Attribute {
        oid: &[1, 2, 840, 113549, 1, 9, 16, 2, 37],
        values: vec![0x31, 0x04, 0x04, 0x02, 0xab, 0xcd],
    };
    let with_kid = rcgen::CertificateParams::new(vec!["kid.example.org".to_string()])
        .unwrap()
        .serialize_request_with_attributes(&key, vec![attr])
        .unwrap();
    let r = keygen(&s, "devices", with_kid.der(), &[]).await;
    assert_eq!(r.status, 501, "{}", r.body_text());
    assert!(!r.body_text().contains("PRIVATE"));
    assert!(store.certificates().await.unwrap().is_empty());
    assert_eq!(store.count_orders().await.unwrap(), 0);
    s.stop().await;
}
