//! The administration API's certificates, orders and audit trail over real HTTPS: a
//! certificate enrolled over EST is found, downloaded (PEM and DER, checked with OpenSSL),
//! revoked once under an Idempotency-Key, and the audit trail shows it — within scope.

use estgate::domain::{Id, Role};
use estgate_bench::{basic_auth, make_csrs, Response};
use estgate_protocol::transfer;
use serde_json::Value;

use crate::support::{openssl, single_cert, start, Server};

/// An administrator made in-process and an API key of it (`Server::admin_key`).
async fn admin_key(s: &Server, email: &str, role: Role, organisations: Vec<Id>) -> String {
    s.admin_key(email, role, organisations, vec![]).await.1
}

async fn call(
    s: &Server,
    method: &str,
    path: &str,
    token: &str,
    extra: &[(&str, &str)],
    body: Option<&Value>,
) -> Response {
    let auth = format!("Bearer {token}");
    let mut headers = vec![("Authorization", auth.as_str()), ("User-Agent", "it")];
    headers.extend_from_slice(extra);
    let bytes = body.map(|b| b.to_string()).unwrap_or_default();
    if body.is_some() {
        headers.push(("Content-Type", "application/json"));
    }
    let mut c = s.connect().await;
    c.request(method, path, &headers, bytes.as_bytes())
        .await
        .unwrap()
}

fn body(r: &Response) -> Value {
    serde_json::from_slice(&r.body).unwrap_or_else(|_| panic!("not JSON: {}", r.body_text()))
}

/// A person certificate over EST on the demo's `staff` account: its DER.
async fn enroll(s: &Server) -> Vec<u8> {
    let (user, pass) = s.password("staff");
    let (csr, _key) = make_csrs("ec-p256", "ignored", 1).unwrap().remove(0);
    let mut c = s.connect().await;
    let r = c
        .request(
            "POST",
            "/.well-known/est/staff/simpleenroll",
            &[
                ("Content-Type", "application/pkcs10"),
                ("Authorization", &basic_auth(&user, &pass)),
                ("User-Agent", "estgate-tests"),
            ],
            transfer::encode_base64(&csr, transfer::Wrap::Columns64).as_bytes(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body_text());
    single_cert(&r)
}

fn serial_of(der: &[u8]) -> String {
    let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
    cert.tbs_certificate
        .raw_serial_as_string()
        .replace(':', "")
        .to_uppercase()
}

#[tokio::test]
async fn a_certificate_is_found_downloaded_and_revoked_once() {
    let s = start().await;
    let token = admin_key(&s, "mrao@it.example", Role::Mrao, vec![]).await;
    let der = enroll(&s).await;
    let serial = serial_of(&der);

    let r = call(
        &s,
        "GET",
        &format!(
            "/api/v1/certificates?serial={}&status=valid",
            serial.to_lowercase()
        ),
        &token,
        &[],
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body_text());
    let page = body(&r);
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{page}");
    let cert = &items[0];
    assert_eq!(cert["serial"], serial.as_str());
    assert_eq!(cert["status"], "valid");
    assert_eq!(cert["account"], "Staff");
    let id = cert["id"].as_i64().unwrap();
    let org = cert["organisation_id"].as_i64().unwrap();

    // Unknown filter values and parameters name the parameter, and list what is allowed.
    let r = call(
        &s,
        "GET",
        "/api/v1/certificates?status=lost",
        &token,
        &[],
        None,
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body_text());
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    let p = body(&r);
    assert_eq!(p["field"], "status", "{p}");
    assert!(p["detail"].as_str().unwrap().contains("revoked"), "{p}");
    let r = call(
        &s,
        "GET",
        "/api/v1/certificates?colour=red",
        &token,
        &[],
        None,
    )
    .await;
    assert_eq!(
        (r.status, body(&r)["field"].clone()),
        (400, "colour".into())
    );
    let r = call(
        &s,
        "GET",
        "/api/v1/certificates?email=nope",
        &token,
        &[],
        None,
    )
    .await;
    assert_eq!((r.status, body(&r)["field"].clone()), (400, "email".into()));

    // PEM and DER are the same certificate, as OpenSSL reads them, and the one EST sent.
    let pem = call(
        &s,
        "GET",
        &format!("/api/v1/certificates/{id}/pem"),
        &token,
        &[],
        None,
    )
    .await;
    assert_eq!(pem.status, 200, "{}", pem.body_text());
    assert_eq!(
        pem.header("content-type"),
        Some("application/pem-certificate-chain")
    );
    let der_resp = call(
        &s,
        "GET",
        &format!("/api/v1/certificates/{id}/der"),
        &token,
        &[],
        None,
    )
    .await;
    assert_eq!(der_resp.status, 200);
    assert_eq!(
        der_resp.header("content-type"),
        Some("application/pkix-cert")
    );
    assert_eq!(der_resp.body, der);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("c.pem"), &pem.body).unwrap();
    std::fs::write(dir.path().join("c.der"), &der_resp.body).unwrap();
    openssl(
        &[
            "x509",
            "-in",
            "c.pem",
            "-outform",
            "DER",
            "-out",
            "from-pem.der",
        ],
        dir.path(),
    );
    assert_eq!(std::fs::read(dir.path().join("from-pem.der")).unwrap(), der);
    let fingerprint = |args: &[&str]| openssl(args, dir.path());
    assert_eq!(
        fingerprint(&[
            "x509",
            "-in",
            "c.pem",
            "-noout",
            "-fingerprint",
            "-sha256",
            "-serial"
        ]),
        fingerprint(&[
            "x509",
            "-inform",
            "DER",
            "-in",
            "c.der",
            "-noout",
            "-fingerprint",
            "-sha256",
            "-serial"
        ])
    );

    // Revoked once: the retry with the same key gets the first answer back, replayed.
    let path = format!("/api/v1/certificates/{id}/revoke");
    let reason = serde_json::json!({"reason": "keyCompromise"});
    let bad = call(
        &s,
        "POST",
        &path,
        &token,
        &[],
        Some(&serde_json::json!({"reason": "lost"})),
    )
    .await;
    assert_eq!(
        (bad.status, body(&bad)["field"].clone()),
        (400, "reason".into())
    );
    let hold = serde_json::json!({"reason": "certificateHold"});
    let r = call(&s, "POST", &path, &token, &[], Some(&hold)).await;
    assert_eq!(
        (r.status, body(&r)["field"].clone()),
        (400, "reason".into())
    );
    let key = [("Idempotency-Key", "revoke-1")];
    let first = call(&s, "POST", &path, &token, &key, Some(&reason)).await;
    assert_eq!(first.status, 200, "{}", first.body_text());
    let revoked = body(&first);
    assert_eq!(revoked["status"], "revoked");
    assert_eq!(revoked["revocation"]["reason"], "keyCompromise");
    assert!(revoked["revocation"]["by"]
        .as_str()
        .unwrap()
        .contains("mrao@it.example"));
    let second = call(&s, "POST", &path, &token, &key, Some(&reason)).await;
    assert_eq!(second.status, 200, "{}", second.body_text());
    assert_eq!(second.header("idempotent-replayed"), Some("true"));
    assert_eq!(body(&second), revoked);
    let other = call(
        &s,
        "POST",
        &path,
        &token,
        &[("Idempotency-Key", "revoke-2")],
        Some(&reason),
    )
    .await;
    assert_eq!(other.status, 409, "{}", other.body_text());
    let r = call(
        &s,
        "GET",
        "/api/v1/certificates?status=revoked",
        &token,
        &[],
        None,
    )
    .await;
    assert_eq!(body(&r)["items"][0]["id"], id);

    // One revocation event, by the API key's administrator, in the certificate's
    // organisation; the chain is intact.
    let r = call(
        &s,
        "GET",
        "/api/v1/audit-events?action=certificate.revoked",
        &token,
        &[],
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body_text());
    let events = body(&r)["items"].as_array().unwrap().clone();
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(events[0]["actor"]
        .as_str()
        .unwrap()
        .contains("mrao@it.example"));
    assert_eq!(events[0]["role"], "mrao");
    assert_eq!(events[0]["organisation_id"], org);
    assert!(events[0]["detail"].as_str().unwrap().contains(&serial));
    assert_eq!(events[0]["hash"].as_str().unwrap().len(), 64);
    let r = call(&s, "GET", "/api/v1/audit-events?limit=1", &token, &[], None).await;
    let first_page = body(&r);
    assert_eq!(first_page["items"].as_array().unwrap().len(), 1);
    let cursor = first_page["next_cursor"].as_str().unwrap().to_string();
    let r = call(
        &s,
        "GET",
        &format!("/api/v1/audit-events?limit=1&cursor={cursor}"),
        &token,
        &[],
        None,
    )
    .await;
    let next = body(&r);
    assert!(next["items"][0]["seq"].as_i64() > first_page["items"][0]["seq"].as_i64());
    let r = call(&s, "GET", "/api/v1/audit-events/verify", &token, &[], None).await;
    assert_eq!(r.status, 200, "{}", r.body_text());
    let report = body(&r);
    assert_eq!(
        (report["intact"].clone(), report["first_break"].clone()),
        (true.into(), Value::Null)
    );
    assert!(report["checked"].as_u64().unwrap() >= 3, "{report}");
    s.stop().await;
}

#[tokio::test]
async fn an_rao_sees_only_its_organisations_events_and_certificates() {
    let s = start().await;
    let mrao = admin_key(&s, "mrao@it.example", Role::Mrao, vec![]).await;
    let der = enroll(&s).await;
    let r = call(
        &s,
        "GET",
        &format!("/api/v1/certificates?serial={}", serial_of(&der)),
        &mrao,
        &[],
        None,
    )
    .await;
    let cert = body(&r)["items"][0].clone();
    let (id, demo_org) = (
        cert["id"].as_i64().unwrap(),
        cert["organisation_id"].as_i64().unwrap(),
    );
    let store = estgate::app::open_store(&s.config).await.unwrap();
    let elsewhere = store
        .create_organisation("Elsewhere", &["elsewhere.example".into()], 0)
        .await
        .unwrap();
    let ours = admin_key(&s, "rao@example.org", Role::Rao, vec![demo_org]).await;
    let theirs = admin_key(&s, "rao@elsewhere.example", Role::Rao, vec![elsewhere.id]).await;

    let r = call(&s, "GET", "/api/v1/audit-events", &ours, &[], None).await;
    assert_eq!(r.status, 200, "{}", r.body_text());
    let events = body(&r)["items"].as_array().unwrap().clone();
    assert!(
        events.iter().any(|e| e["action"] == "enroll.issued"),
        "{events:?}"
    );
    assert!(events.iter().all(|e| e["organisation_id"] == demo_org));
    let r = call(&s, "GET", "/api/v1/audit-events", &theirs, &[], None).await;
    assert_eq!(r.status, 200, "{}", r.body_text());
    assert_eq!(body(&r)["items"], serde_json::json!([]));

    let r = call(
        &s,
        "GET",
        &format!("/api/v1/certificates/{id}"),
        &ours,
        &[],
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body_text());
    for path in [
        format!("/api/v1/certificates/{id}"),
        format!("/api/v1/certificates/{id}/der"),
    ] {
        let r = call(&s, "GET", &path, &theirs, &[], None).await;
        assert_eq!(r.status, 404, "{path}: {}", r.body_text());
    }
    let r = call(&s, "GET", "/api/v1/certificates", &theirs, &[], None).await;
    assert_eq!(body(&r)["items"], serde_json::json!([]));
    let r = call(
        &s,
        "POST",
        &format!("/api/v1/certificates/{id}/revoke"),
        &theirs,
        &[],
        Some(&serde_json::json!({"reason": "superseded"})),
    )
    .await;
    assert_eq!(r.status, 404, "{}", r.body_text());
    let r = call(&s, "GET", "/api/v1/audit-events/verify", &ours, &[], None).await;
    assert_eq!(r.status, 403, "{}", r.body_text());

    // The certificate's order: the same reach; decided already, so approving is a conflict.
    let order = cert["order_id"].as_i64().unwrap();
    let r = call(
        &s,
        "GET",
        &format!("/api/v1/orders/{order}"),
        &ours,
        &[],
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body_text());
    let shown = body(&r);
    assert_eq!(
        (shown["status"].clone(), shown["certificate_id"].clone()),
        ("issued".into(), id.into())
    );
    let r = call(
        &s,
        "GET",
        &format!("/api/v1/orders/{order}"),
        &theirs,
        &[],
        None,
    )
    .await;
    assert_eq!(r.status, 404, "{}", r.body_text());
    let r = call(&s, "GET", "/api/v1/orders?status=issued", &ours, &[], None).await;
    assert_eq!(body(&r)["items"][0]["id"], order);
    let r = call(&s, "GET", "/api/v1/orders?pending=true", &ours, &[], None).await;
    assert_eq!(body(&r)["items"], serde_json::json!([]));
    let r = call(&s, "GET", "/api/v1/orders", &theirs, &[], None).await;
    assert_eq!(body(&r)["items"], serde_json::json!([]));
    let r = call(&s, "GET", "/api/v1/orders?status=done", &ours, &[], None).await;
    assert_eq!(
        (r.status, body(&r)["field"].clone()),
        (400, "status".into())
    );
    let approve = format!("/api/v1/orders/{order}/approve");
    let r = call(
        &s,
        "POST",
        &approve,
        &ours,
        &[],
        Some(&serde_json::json!({})),
    )
    .await;
    assert_eq!(r.status, 409, "{}", r.body_text());
    let r = call(
        &s,
        "POST",
        &approve,
        &theirs,
        &[],
        Some(&serde_json::json!({})),
    )
    .await;
    assert_eq!(r.status, 404, "{}", r.body_text());
    let reject = format!("/api/v1/orders/{order}/reject");
    let r = call(
        &s,
        "POST",
        &reject,
        &ours,
        &[],
        Some(&serde_json::json!({})),
    )
    .await;
    assert_eq!(
        (r.status, body(&r)["field"].clone()),
        (400, "reason".into())
    );
    s.stop().await;
}
