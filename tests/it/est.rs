//! EST over real TLS against the real server.

use estgate_bench::{basic_auth, make_csrs, Response, TlsVersion};
use estgate_protocol::{pkcs7, transfer};
use x509_parser::prelude::*;

use crate::support::{openssl, openssl_verify, single_cert, start, Server};

const STAFF: &str = "/.well-known/est/staff/simpleenroll";

fn b64(der: &[u8]) -> String {
    transfer::encode_base64(der, transfer::Wrap::Columns64)
}

async fn post(server: &Server, path: &str, user: &str, pass: &str, body: &[u8]) -> Response {
    let auth = basic_auth(user, pass);
    let mut c = server.connect().await;
    c.request(
        "POST",
        path,
        &[
            ("Content-Type", "application/pkcs10"),
            ("Authorization", &auth),
            ("User-Agent", "estgate-tests"),
        ],
        body,
    )
    .await
    .unwrap()
}

/// The exact header name as the server wrote it (libest compares case-sensitively).
fn has_exact_header(r: &Response, name: &str) -> bool {
    r.headers.iter().any(|(n, _)| n == name)
}

#[tokio::test]
async fn cacerts_over_tls12_and_tls13_with_title_case_headers() {
    let s = start().await;
    for v in [TlsVersion::Tls12, TlsVersion::Tls13] {
        let mut c = s.connect_with(Some(v), None, false).await;
        let want = match v {
            TlsVersion::Tls12 => rustls::ProtocolVersion::TLSv1_2,
            TlsVersion::Tls13 => rustls::ProtocolVersion::TLSv1_3,
        };
        assert_eq!(c.negotiated_version(), Some(want));
        let r = c
            .request(
                "GET",
                "/.well-known/est/cacerts",
                &[("User-Agent", "t")],
                b"",
            )
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.body_text());
        assert!(r.status_line.starts_with("HTTP/1.1 200"));
        for h in [
            "Content-Type",
            "Content-Length",
            "Content-Transfer-Encoding",
        ] {
            assert!(
                has_exact_header(&r, h),
                "missing exact header {h}: {:?}",
                r.headers
            );
        }
        assert_eq!(r.header("content-type"), Some("application/pkcs7-mime"));
        assert_eq!(r.header("content-transfer-encoding"), Some("base64"));
        assert!(r.header("transfer-encoding").is_none());
        let text = r.body_text();
        assert!(text.lines().all(|l| l.trim_end().len() <= 64) && text.contains("\r\n"));
        let certs = pkcs7::parse_certs_only(&transfer::decode_base64(&r.body).unwrap()).unwrap();
        assert_eq!(certs.len(), 2);
        assert_eq!(&certs, s.running.as_ref().unwrap().ra.ca_chain());
        let root_pem = std::fs::read_to_string(&s.config.trust_anchor).unwrap();
        assert_eq!(crate::support::pem(&certs[1]).trim(), root_pem.trim());
    }
    s.stop().await;
}

#[tokio::test]
async fn http2_is_offered_by_alpn() {
    let s = start().await;
    let c = s.connect_with(None, None, true).await;
    assert_eq!(c.alpn_protocol().as_deref(), Some(&b"h2"[..]));
    s.stop().await;
}

#[tokio::test]
async fn person_enrollment_is_verified_by_openssl_and_x509_parser() {
    let s = start().await;
    let (user, pass) = s.password("staff");
    for (key_type, version) in [
        ("ec-p256", TlsVersion::Tls13),
        ("rsa-2048", TlsVersion::Tls12),
    ] {
        let csr = make_csrs(key_type, "ignored.example.com", 1)
            .unwrap()
            .remove(0)
            .0;
        let auth = basic_auth(&user, &pass);
        let mut c = s.connect_with(Some(version), None, false).await;
        let r = c
            .request(
                "POST",
                STAFF,
                &[
                    ("Content-Type", "application/pkcs10"),
                    ("Authorization", &auth),
                    ("User-Agent", "t"),
                ],
                b64(&csr).as_bytes(),
            )
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.body_text());
        assert_eq!(
            r.header("content-type"),
            Some("application/pkcs7-mime; smime-type=certs-only")
        );
        let der = single_cert(&r);
        openssl_verify(&s, &der, Some("sslclient"));
        openssl_verify(&s, &der, Some("smimesign"));
        let (_, cert) = parse_x509_certificate(&der).unwrap();
        // The demo's person profile is sponsor-validated S/MIME: the subject names the
        // organisation's registration (2.5.4.97) and the policy is 2.23.140.1.5.3.2.
        assert_eq!(
            cert.subject().to_string(),
            format!(
                "CN=Alice Example, givenName=Alice, surname=Example, O=Example Organisation, \
                 OID(2.5.4.97)={}",
                estgate::demo::DEMO_ORGANIZATION_IDENTIFIER
            )
        );
        let policy = cert
            .extensions()
            .iter()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::CertificatePolicies(p) => Some(p.clone()),
                _ => None,
            });
        assert!(policy
            .expect("a certificatePolicies extension")
            .iter()
            .any(|p| p.policy_id.to_id_string() == "2.23.140.1.5.3.2"));
        let san = cert.subject_alternative_name().unwrap().unwrap().value;
        assert_eq!(
            san.general_names,
            vec![GeneralName::RFC822Name("alice@example.org")]
        );
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.client_auth && eku.email_protection && !eku.server_auth);
        let ku = cert.key_usage().unwrap().unwrap();
        assert!(ku.critical && ku.value.digital_signature());
        if key_type == "ec-p256" {
            assert!(ku.value.key_agreement() && !ku.value.key_encipherment());
        } else {
            assert!(ku.value.key_encipherment() && !ku.value.key_agreement());
        }
        assert!(
            cert.tbs_certificate.raw_serial().len() >= 9,
            "serial carries at least 64 bits"
        );
        assert!(
            cert.tbs_certificate.raw_serial()[0] & 0x80 == 0,
            "serial is positive"
        );
        let exts = cert.extensions_map().unwrap();
        assert!(exts.contains_key(&oid_registry::OID_X509_EXT_SUBJECT_KEY_IDENTIFIER));
        assert!(exts.contains_key(&oid_registry::OID_X509_EXT_AUTHORITY_KEY_IDENTIFIER));
        let bc = cert.basic_constraints().unwrap();
        assert!(bc.is_none_or(|b| !b.value.ca));
        let days = (cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp())
            / 86_400;
        assert!(
            (365..=366).contains(&days),
            "one-year default term, got {days} days"
        );
    }
    s.stop().await;
}

#[tokio::test]
async fn device_enrollment_and_reenrollment_with_the_client_certificate() {
    let s = start().await;
    let (user, code) = s.password("devices");
    let (csr, key_pem) = make_csrs("ec-p256", "sensor-7.example.org", 1)
        .unwrap()
        .remove(0);
    let r = post(
        &s,
        "/.well-known/est/devices/simpleenroll",
        &user,
        &code,
        b64(&csr).as_bytes(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body_text());
    let first = single_cert(&r);
    openssl_verify(&s, &first, Some("sslclient"));
    let (_, old) = parse_x509_certificate(&first).unwrap();
    assert_eq!(
        old.subject().to_string(),
        "CN=sensor-7.example.org, O=Example Organisation"
    );

    // A new CSR with the same subject and SAN, from `openssl x509 -x509toreq`.
    let dir = s.dir.path();
    std::fs::write(dir.join("old.pem"), crate::support::pem(&first)).unwrap();
    std::fs::write(dir.join("old.key"), &key_pem).unwrap();
    openssl(
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            "new.key",
        ],
        dir,
    );
    openssl(
        &[
            "x509",
            "-x509toreq",
            "-in",
            "old.pem",
            "-signkey",
            "new.key",
            "-copy_extensions",
            "copyall",
            "-out",
            "renew.pem",
        ],
        dir,
    );
    openssl(
        &[
            "req",
            "-in",
            "renew.pem",
            "-outform",
            "DER",
            "-out",
            "renew.csr",
        ],
        dir,
    );
    let renew_csr = std::fs::read(dir.join("renew.csr")).unwrap();
    let client = Some((
        crate::support::pem(&first).into_bytes(),
        key_pem.into_bytes(),
    ));
    let mut c = s.connect_with(Some(TlsVersion::Tls12), client, false).await;
    let r = c
        .request(
            "POST",
            "/.well-known/est/devices/simplereenroll",
            &[("Content-Type", "application/pkcs10"), ("User-Agent", "t")],
            b64(&renew_csr).as_bytes(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body_text());
    let renewed = single_cert(&r);
    openssl_verify(&s, &renewed, Some("sslclient"));
    let (_, new) = parse_x509_certificate(&renewed).unwrap();
    assert_eq!(new.subject().as_raw(), old.subject().as_raw());
    assert_ne!(new.raw_serial(), old.raw_serial());
    assert_eq!(
        new.subject_alternative_name().unwrap().unwrap().value,
        old.subject_alternative_name().unwrap().unwrap().value
    );

    // Without a client certificate: 401 with the Basic challenge.
    let r = post(
        &s,
        "/.well-known/est/devices/simplereenroll",
        "x",
        "y",
        b64(&renew_csr).as_bytes(),
    )
    .await;
    assert_eq!(r.status, 401);
    s.stop().await;
}

#[tokio::test]
async fn wire_tolerance_base64_variants_chunked_bodies_and_no_user_agent() {
    let s = start().await;
    let (user, pass) = s.password("staff");
    let csr = make_csrs("ec-p256", "x", 1).unwrap().remove(0).0;
    let unwrapped = transfer::encode_base64(&csr, transfer::Wrap::Unwrapped);
    let lf76: String = unwrapped
        .as_bytes()
        .chunks(76)
        .map(|c| format!("{}\n", String::from_utf8_lossy(c)))
        .collect();
    let crlf_trailing = format!("{}\r\n\r\n", b64(&csr));
    for body in [unwrapped.clone(), lf76, crlf_trailing] {
        let r = post(&s, STAFF, &user, &pass, body.as_bytes()).await;
        assert_eq!(r.status, 200, "{}", r.body_text());
    }
    // Content-Type parameters are accepted; the request's transfer-encoding header ignored.
    let auth = basic_auth(&user, &pass);
    let mut c = s.connect().await;
    let r = c
        .request(
            "POST",
            STAFF,
            &[
                ("Content-Type", "application/pkcs10; charset=binary"),
                ("Content-Transfer-Encoding", "binary"),
                ("Authorization", &auth),
                ("User-Agent", "t"),
            ],
            unwrapped.as_bytes(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body_text());

    // Chunked body (globalsign's client) on a raw request, no User-Agent (strongSwan-like),
    // on the strongSwan path form with the default account's label.
    let half = unwrapped.len() / 2;
    let (a, b) = unwrapped.split_at(half);
    let raw = format!(
        "POST /staff/.well-known/est/simpleenroll HTTP/1.1\r\nHost: localhost\r\nAuthorization: {auth}\r\nContent-Type: application/pkcs10\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n",
        a.len(),
        b.len()
    );
    let r = c.send_raw(raw.as_bytes()).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.body_text());
    assert!(
        !r.body.contains(&b'\n'),
        "no User-Agent: unwrapped base64 for strongSwan"
    );
    assert!(r.header("content-length").is_some());
    single_cert(&r);

    // No label: the default account (staff in the demo).
    let r = post(
        &s,
        "/.well-known/est/simpleenroll",
        &user,
        &pass,
        unwrapped.as_bytes(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body_text());
    s.stop().await;
}

#[tokio::test]
async fn bad_requests_get_clear_errors_and_change_nothing() {
    let s = start().await;
    let (user, pass) = s.password("staff");
    let store = s.store().await;
    let csr = make_csrs("ec-p256", "x", 1).unwrap().remove(0).0;
    let good = b64(&csr);
    let mut bad_sig = csr.clone();
    let n = bad_sig.len();
    bad_sig[n - 2] ^= 0x01;
    // The demo device profile allows EC P-256/P-384 and RSA-2048/3072, not RSA-4096.
    let devices_rsa4096 = make_csrs("rsa-4096", "d.example.org", 1)
        .unwrap()
        .remove(0)
        .0;

    let mut c = s.connect().await;
    // No credentials.
    let r = c
        .request(
            "POST",
            STAFF,
            &[("Content-Type", "application/pkcs10"), ("User-Agent", "t")],
            good.as_bytes(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 401);
    assert!(
        r.headers
            .iter()
            .any(|(n, v)| n == "WWW-Authenticate" && v == "Basic realm=\"estgate\""),
        "{:?}",
        r.headers
    );
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    // Wrong credentials.
    assert_eq!(
        post(&s, STAFF, &user, "wrong", good.as_bytes())
            .await
            .status,
        401
    );
    // Unknown label, unknown operation, invalid label.
    assert_eq!(
        post(
            &s,
            "/.well-known/est/nosuch/simpleenroll",
            &user,
            &pass,
            good.as_bytes()
        )
        .await
        .status,
        404
    );
    assert_eq!(
        post(
            &s,
            "/.well-known/est/staff/bogus",
            &user,
            &pass,
            good.as_bytes()
        )
        .await
        .status,
        404
    );
    assert_eq!(
        post(
            &s,
            "/.well-known/est/Bad_Label/simpleenroll",
            &user,
            &pass,
            good.as_bytes()
        )
        .await
        .status,
        404
    );
    // Wrong method.
    let r = c
        .request("GET", STAFF, &[("User-Agent", "t")], b"")
        .await
        .unwrap();
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("POST"));
    // Wrong content type.
    let auth = basic_auth(&user, &pass);
    let r = c
        .request(
            "POST",
            STAFF,
            &[
                ("Content-Type", "text/plain"),
                ("Authorization", &auth),
                ("User-Agent", "t"),
            ],
            good.as_bytes(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 415, "{}", r.body_text());
    // Malformed base64, garbage DER, bad signature, disallowed key.
    let r = post(&s, STAFF, &user, &pass, b"!!!not base64!!!").await;
    assert_eq!(r.status, 400);
    assert!(r.body_text().contains("base64"), "{}", r.body_text());
    assert_eq!(
        post(&s, STAFF, &user, &pass, b64(b"\x30\x03abc").as_bytes())
            .await
            .status,
        400
    );
    let r = post(&s, STAFF, &user, &pass, b64(&bad_sig).as_bytes()).await;
    assert_eq!(r.status, 400);
    assert!(r.body_text().contains("signature"), "{}", r.body_text());
    let (duser, dcode) = s.password("devices");
    let r = post(
        &s,
        "/.well-known/est/devices/simpleenroll",
        &duser,
        &dcode,
        b64(&devices_rsa4096).as_bytes(),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body_text());
    assert!(r.body_text().contains("rsa-4096"), "{}", r.body_text());
    // Device name outside the organisation's domains.
    let evil = make_csrs("ec-p256", "evil.example.com", 1)
        .unwrap()
        .remove(0)
        .0;
    assert_eq!(
        post(
            &s,
            "/.well-known/est/devices/simpleenroll",
            &duser,
            &dcode,
            b64(&evil).as_bytes()
        )
        .await
        .status,
        403
    );
    // Oversized body, by Content-Length and by chunks.
    let big = vec![b'A'; 70_000];
    assert_eq!(post(&s, STAFF, &user, &pass, &big).await.status, 413);
    let mut raw = format!("POST {STAFF} HTTP/1.1\r\nHost: localhost\r\nAuthorization: {auth}\r\nContent-Type: application/pkcs10\r\nTransfer-Encoding: chunked\r\nUser-Agent: t\r\n\r\n").into_bytes();
    for _ in 0..5 {
        raw.extend_from_slice(format!("{:x}\r\n", 20_000).as_bytes());
        raw.extend_from_slice(&[b'A'; 20_000]);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"0\r\n\r\n");
    let mut c2 = s.connect().await;
    assert_eq!(c2.send_raw(&raw).await.unwrap().status, 413);
    assert!(store.certificates().await.unwrap().is_empty());
    assert_eq!(store.count_orders().await.unwrap(), 0);
    s.stop().await;
}

#[tokio::test]
async fn repeated_failures_answer_429_with_retry_after() {
    let s = start().await;
    let (user, pass) = s.password("staff");
    let good = b64(&make_csrs("ec-p256", "x", 1).unwrap().remove(0).0);
    for _ in 0..estgate::ra::MAX_FAILURES {
        assert_eq!(
            post(&s, STAFF, &user, "wrong", good.as_bytes())
                .await
                .status,
            401
        );
    }
    let r = post(&s, STAFF, &user, &pass, good.as_bytes()).await;
    assert_eq!(r.status, 429, "{}", r.body_text());
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!(retry > 0 && retry <= estgate::ra::WINDOW_SECS as u64);
    assert!(has_exact_header(&r, "Retry-After"));
    s.stop().await;
}

#[tokio::test]
async fn csrattrs_lists_the_profile_key_types() {
    let s = start().await;
    let mut c = s.connect().await;
    let r = c
        .request(
            "GET",
            "/.well-known/est/devices/csrattrs",
            &[("User-Agent", "t")],
            b"",
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body_text());
    assert_eq!(r.header("content-type"), Some("application/csrattrs"));
    let der = transfer::decode_base64(&r.body).unwrap();
    let expected = estgate_protocol::csrattrs::encode(&[
        estgate_protocol::KeyAlgorithm::EcP256,
        estgate_protocol::KeyAlgorithm::EcP384,
        estgate_protocol::KeyAlgorithm::Rsa { bits: 2048 },
        estgate_protocol::KeyAlgorithm::Rsa { bits: 3072 },
    ])
    .unwrap();
    assert_eq!(der, expected);
    std::fs::write(s.dir.path().join("attrs.der"), &der).unwrap();
    let parsed = openssl(
        &["asn1parse", "-inform", "DER", "-in", "attrs.der"],
        s.dir.path(),
    );
    assert!(
        parsed.contains("prime256v1") && parsed.contains("rsaEncryption"),
        "{parsed}"
    );
    s.stop().await;
}

fn vector(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/protocol/testdata/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// CSRs made by openssl: RSA-PSS is issued, a small RSA key and SHA-1 are refused with
/// their own sentence, and a name outside the organisation is refused by name instead of
/// being dropped from the certificate.
#[tokio::test]
async fn csr_algorithms_and_names_are_refused_by_what_is_wrong() {
    let s = start().await;
    let path = "/.well-known/est/devices/simpleenroll";
    let (user, code) = s.password("devices");
    let r = post(
        &s,
        path,
        &user,
        &code,
        b64(&vector("csr-rsa-pss-sha256.der")).as_bytes(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body_text());
    let der = single_cert(&r);
    openssl_verify(&s, &der, None);
    for (file, status, sentence) in [
        ("csr-rsa-1024.der", 400, "RSA keys need at least 2048 bits"),
        ("csr-rsa-sha1.der", 400, "signed with SHA-1"),
        ("csr-rsa-pss-sha256-salt20.der", 400, "a salt of 20 bytes"),
        (
            "csr-two-cns.der",
            403,
            "printer.evil.test (not within a verified domain",
        ),
    ] {
        let r = post(&s, path, &user, &code, b64(&vector(file)).as_bytes()).await;
        assert_eq!(r.status, status, "{file}: {}", r.body_text());
        assert!(
            r.body_text().contains(sentence),
            "{file}: {}",
            r.body_text()
        );
    }
    s.stop().await;
}

#[tokio::test]
async fn every_404_and_405_says_why_in_plain_text() {
    let s = start().await;
    let ext = s.demo.enroll_url.rsplit('/').next().unwrap().to_string();
    let mut c = s.connect().await;
    for (method, path, status) in [
        ("GET", "/nosuch", 404),
        ("GET", "/.well-known/est", 404),
        ("GET", "/.well-known/./est/cacerts", 404),
        ("GET", "/.well-known/est/../cacerts", 404),
        ("GET", "/.well-known/est/devices/cacerts/extra", 404),
        ("POST", "/.well-known/est/devices/simpleenroll/extra", 404),
        ("GET", "/.well-known/est/fullcmc", 405),
        ("GET", "/.well-known/est/devices/fullcmc", 405),
        ("POST", "/.well-known/est/cacerts", 405),
        ("PUT", &format!("/enroll/{ext}/form"), 405),
        ("DELETE", "/.well-known/est/simpleenroll", 405),
    ] {
        let r = c
            .request(method, path, &[("User-Agent", "t")], b"")
            .await
            .unwrap();
        assert_eq!(r.status, status, "{method} {path}: {}", r.body_text());
        assert_eq!(
            r.header("content-type"),
            Some("text/plain; charset=utf-8"),
            "{method} {path}"
        );
        let text = r.body_text();
        assert!(
            text.trim().len() > 10 && text.ends_with('\n'),
            "{method} {path}: {text:?}"
        );
        if status == 405 {
            assert!(r.header("allow").is_some(), "{method} {path}");
        }
    }
    // fullcmc is a POST operation (RFC 7030 §4.3), not offered: GET is refused as a method.
    let r = c
        .request(
            "GET",
            "/.well-known/est/fullcmc",
            &[("User-Agent", "t")],
            b"",
        )
        .await
        .unwrap();
    assert_eq!(r.header("allow"), Some("POST"));
    // A proxy's CONNECT: no tunnel, a sentence.
    let mut c2 = s.connect().await;
    let r = c2
        .send_raw(b"CONNECT 127.0.0.1:443 HTTP/1.1\r\nHost: 127.0.0.1:443\r\n\r\n")
        .await
        .unwrap();
    assert!(matches!(r.status, 404 | 405), "{}", r.status);
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    assert!(!r.body_text().trim().is_empty());
    s.stop().await;
}

#[tokio::test]
async fn a_doubled_slash_as_strongswan_sends_it_reaches_the_account() {
    let s = start().await;
    let (user, code) = s.password("devices");
    let csr = make_csrs("ec-p256", "pki-1.example.org", 1)
        .unwrap()
        .remove(0)
        .0;
    // `pki --est --url https://host/.well-known/est/devices/` asks for this path.
    let r = post(
        &s,
        "/.well-known/est/devices//simpleenroll",
        &user,
        &code,
        b64(&csr).as_bytes(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body_text());
    let cert = single_cert(&r);
    openssl_verify(&s, &cert, Some("sslclient"));
    let (_, parsed) = parse_x509_certificate(&cert).unwrap();
    assert!(parsed
        .subject()
        .to_string()
        .contains("CN=pki-1.example.org"));
    let mut c = s.connect().await;
    for path in [
        "/.well-known/est//cacerts",
        "//.well-known/est/devices//cacerts",
    ] {
        let r = c
            .request("GET", path, &[("User-Agent", "t")], b"")
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{path}: {}", r.body_text());
        assert_eq!(r.header("content-type"), Some("application/pkcs7-mime"));
    }
    s.stop().await;
}

#[tokio::test]
async fn answers_that_carry_a_private_key_are_never_stored_by_caches() {
    let s = start().await;
    let csr = make_csrs("ec-p256", "keygen-1.example.org", 1)
        .unwrap()
        .remove(0)
        .0;
    let (user, code) = s.password("devices");
    let r = post(
        &s,
        "/.well-known/est/devices/serverkeygen",
        &user,
        &code,
        b64(&csr).as_bytes(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body_text());
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("multipart/mixed"));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert!(has_exact_header(&r, "Cache-Control"));
    // The PKCS#12 variant.
    let (user, pass) = s.password("staff");
    let auth = basic_auth(&user, &pass);
    let password = transfer::encode_base64(b"a pkcs12 passphrase", transfer::Wrap::Unwrapped);
    let mut c = s.connect().await;
    let r = c
        .request(
            "POST",
            "/.well-known/est/staff/serverkeygen",
            &[
                ("Content-Type", "application/pkcs10"),
                ("Authorization", &auth),
                ("User-Agent", "t"),
                ("Accept", "application/pkcs12"),
                ("PKCS12-Password", &password),
            ],
            b64(&csr).as_bytes(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body_text());
    assert_eq!(r.header("content-type"), Some("application/pkcs12"));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    // Answers without a key may be cached as before (nothing is said).
    let r = c
        .request(
            "GET",
            "/.well-known/est/cacerts",
            &[("User-Agent", "t")],
            b"",
        )
        .await
        .unwrap();
    assert_eq!(r.header("cache-control"), None);
    s.stop().await;
}
