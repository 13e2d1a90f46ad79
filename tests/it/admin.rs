//! The administration API over real HTTPS: the OpenAPI document against the routes,
//! password + TOTP sign-in, API keys, administrators' roles, bad input, Idempotency-Key.

use estgate::domain::{Clock, Role, Secret, SystemClock};
use estgate::ra::admin::{totp_code, AdminRequest, Caller};
use serde_json::{json, Value};

use crate::support::{start, Server};

/// An administrator made in-process and an API key (`Server::admin_key`).
pub async fn admin_with_key(
    s: &Server,
    email: &str,
    role: Role,
    orgs: Vec<i64>,
    depts: Vec<i64>,
) -> (i64, String) {
    s.admin_key(email, role, orgs, depts).await
}

pub struct Answer {
    pub status: u16,
    pub json: Value,
    pub headers: Vec<(String, String)>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One API request with a bearer token (or none) and extra headers.
pub async fn call(
    s: &Server,
    method: &str,
    path: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Answer {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut h: Vec<(&str, &str)> = headers.to_vec();
    if let Some(a) = &auth {
        h.push(("Authorization", a.as_str()));
    }
    if body.is_some()
        && !h
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("content-type"))
    {
        h.push(("Content-Type", "application/json"));
    }
    let mut c = s.connect().await;
    let r = c
        .request(method, path, &h, body.unwrap_or_default())
        .await
        .unwrap();
    Answer {
        status: r.status,
        json: serde_json::from_slice(&r.body).unwrap_or(Value::Null),
        headers: r.headers.clone(),
    }
}

pub async fn get(s: &Server, path: &str, token: &str) -> Answer {
    call(s, "GET", path, Some(token), &[], None).await
}

pub async fn send(s: &Server, method: &str, path: &str, token: &str, body: Value) -> Answer {
    let body = body.to_string();
    call(s, method, path, Some(token), &[], Some(body.as_bytes())).await
}

fn base32_decode(s: &str) -> Vec<u8> {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let (mut buf, mut bits, mut out) = (0u32, 0u32, Vec::new());
    for c in s.bytes() {
        let v = ALPHABET.iter().position(|a| *a == c).unwrap() as u32;
        buf = (buf << 5) | v;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_is_documented_and_every_documented_route_answers() {
    let s = start().await;
    let (_, key) = admin_with_key(&s, "mrao@example.org", Role::Mrao, vec![], vec![]).await;
    let doc = call(&s, "GET", "/api/v1/openapi.json", None, &[], None).await;
    assert_eq!(doc.status, 200);
    assert!(doc.json["openapi"].as_str().unwrap().starts_with("3.1"));
    let paths = doc.json["paths"].as_object().unwrap();
    // The router is built from the same list as the document (utoipa-axum), so these are
    // in it by construction; the check is that the list holds what the issue asks for.
    for p in [
        "/api/v1/sessions",
        "/api/v1/me",
        "/api/v1/admins",
        "/api/v1/admins/{id}",
        "/api/v1/api-keys",
        "/api/v1/api-keys/{id}",
    ] {
        assert!(paths.contains_key(p), "{p} is not documented");
    }
    for (path, ops) in paths {
        for method in ops.as_object().unwrap().keys() {
            let concrete = path
                .replace("{id}", "999999")
                .replace("{domain}", "nowhere.example");
            let method = method.to_ascii_uppercase();
            let body = (method != "GET" && method != "DELETE").then_some(&b"{}"[..]);
            let a = call(&s, &method, &concrete, Some(&key), &[], body).await;
            assert_ne!(a.status, 405, "{method} {path}: method not routed");
            assert!(
                !a.json["detail"]
                    .as_str()
                    .unwrap_or("")
                    .starts_with("no such API route"),
                "{method} {path}: documented but not routed"
            );
            assert!(a.status < 500, "{method} {path}: {}", a.status);
        }
    }
    // And an undocumented path under /api answers a problem document, not the form.
    let a = call(&s, "GET", "/api/v1/nothing-here", Some(&key), &[], None).await;
    assert_eq!(a.status, 404);
    assert!(a.json["detail"]
        .as_str()
        .unwrap()
        .starts_with("no such API route"));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_and_totp_sign_in_gives_a_session_and_each_code_works_once() {
    let s = start().await;
    let ra = &s.running.as_ref().unwrap().ra;
    let (admin, totp) = ra
        .add_admin(
            &Caller::operator("it"),
            AdminRequest {
                name: "Rita".into(),
                email: "rita@example.org".into(),
                role: Role::Mrao,
                organisation_ids: vec![],
                department_ids: vec![],
                password: Some(Secret::new("correct horse battery")),
            },
        )
        .await
        .unwrap();
    let secret = base32_decode(totp.unwrap().secret.expose());
    let code = format!("{:06}", totp_code(&secret, SystemClock.now() / 30));
    let sign_in = |password: &str, code: &str| {
        json!({"email": "rita@example.org", "password": password, "code": code}).to_string()
    };

    let wrong = sign_in("wrong password!!", &code);
    let a = call(
        &s,
        "POST",
        "/api/v1/sessions",
        None,
        &[],
        Some(wrong.as_bytes()),
    )
    .await;
    assert_eq!(a.status, 401);
    assert_eq!(a.header("content-type"), Some("application/problem+json"));
    let wrong_code = sign_in("correct horse battery", "000000");
    let a = call(
        &s,
        "POST",
        "/api/v1/sessions",
        None,
        &[],
        Some(wrong_code.as_bytes()),
    )
    .await;
    assert_eq!(a.status, 401);

    let good = sign_in("correct horse battery", &code);
    let a = call(
        &s,
        "POST",
        "/api/v1/sessions",
        None,
        &[],
        Some(good.as_bytes()),
    )
    .await;
    assert_eq!(a.status, 201, "{}", a.json);
    let token = a.json["token"].as_str().unwrap().to_string();
    let me = get(&s, "/api/v1/me", &token).await;
    assert_eq!(me.status, 200);
    assert_eq!(me.json["role"], "mrao");
    assert_eq!(me.json["admin"]["id"], admin.id);

    // The same code again: refused (RFC 6238 §5.2), though the password is right.
    let a = call(
        &s,
        "POST",
        "/api/v1/sessions",
        None,
        &[],
        Some(good.as_bytes()),
    )
    .await;
    assert_eq!(a.status, 401);

    // Failed sign-ins are on the audit trail, with who tried and from where.
    let events = get(&s, "/api/v1/audit-events?limit=500", &token).await;
    if events.status == 200 {
        let failed = events.json["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["action"] == "admin.sign-in-failed")
            .count();
        assert_eq!(failed, 3);
    }

    // Signing out ends the session.
    let a = call(
        &s,
        "DELETE",
        "/api/v1/sessions/current",
        Some(&token),
        &[],
        None,
    )
    .await;
    assert_eq!(a.status, 204);
    assert_eq!(get(&s, "/api/v1/me", &token).await.status, 401);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_are_shown_once_work_until_revoked_and_retries_are_idempotent() {
    let s = start().await;
    let (mrao, key) = admin_with_key(&s, "mrao@example.org", Role::Mrao, vec![], vec![]).await;
    assert_eq!(
        call(&s, "GET", "/api/v1/me", None, &[], None).await.status,
        401
    );
    assert_eq!(get(&s, "/api/v1/me", "eg_nope_nope").await.status, 401);

    let body = json!({"name": "deploy", "expires_in_days": 7}).to_string();
    let headers = [("Idempotency-Key", "key-1")];
    let first = call(
        &s,
        "POST",
        "/api/v1/api-keys",
        Some(&key),
        &headers,
        Some(body.as_bytes()),
    )
    .await;
    assert_eq!(first.status, 201, "{}", first.json);
    let token = first.json["token"].as_str().unwrap().to_string();
    assert!(token.starts_with("eg_"));
    assert_eq!(first.json["key"]["admin"], mrao);

    // The retry replays the answer without making a second key or showing it again.
    let again = call(
        &s,
        "POST",
        "/api/v1/api-keys",
        Some(&key),
        &headers,
        Some(body.as_bytes()),
    )
    .await;
    assert_eq!(again.status, 201);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.json["key"]["id"], first.json["key"]["id"]);
    assert_ne!(again.json["token"].as_str().unwrap(), token);
    let other = json!({"name": "other"}).to_string();
    let clash = call(
        &s,
        "POST",
        "/api/v1/api-keys",
        Some(&key),
        &headers,
        Some(other.as_bytes()),
    )
    .await;
    assert_eq!(clash.status, 400);
    assert_eq!(clash.json["field"], "Idempotency-Key");
    let keys = get(&s, "/api/v1/api-keys", &key).await;
    assert_eq!(keys.json["items"].as_array().unwrap().len(), 2);

    assert_eq!(get(&s, "/api/v1/me", &token).await.status, 200);
    let id = first.json["key"]["id"].as_i64().unwrap();
    let a = call(
        &s,
        "DELETE",
        &format!("/api/v1/api-keys/{id}"),
        Some(&key),
        &[],
        None,
    )
    .await;
    assert_eq!(a.status, 204);
    assert_eq!(get(&s, "/api/v1/me", &token).await.status, 401);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn administrators_reach_only_what_their_role_allows() {
    let s = start().await;
    let ra = &s.running.as_ref().unwrap().ra;
    let op = Caller::operator("it");
    let org = ra
        .organisation_named(&op, estgate::demo::ORG)
        .await
        .unwrap();
    let (mrao, mrao_key) = admin_with_key(&s, "mrao@example.org", Role::Mrao, vec![], vec![]).await;
    let (rao, rao_key) =
        admin_with_key(&s, "rao@example.org", Role::Rao, vec![org.id], vec![]).await;

    // An RAO does not see the MRAO (404), sees itself, may not appoint an MRAO (403).
    assert_eq!(
        get(&s, &format!("/api/v1/admins/{mrao}"), &rao_key)
            .await
            .status,
        404
    );
    assert_eq!(
        get(&s, &format!("/api/v1/admins/{rao}"), &rao_key)
            .await
            .status,
        200
    );
    let a = send(
        &s,
        "POST",
        "/api/v1/admins",
        &rao_key,
        json!({"name": "X", "email": "x@example.org", "role": "mrao"}),
    )
    .await;
    assert_eq!(a.status, 403, "{}", a.json);
    // It may not change itself either: the MRAO decides its scope.
    let a = send(
        &s,
        "PATCH",
        &format!("/api/v1/admins/{rao}"),
        &rao_key,
        json!({"name": "Y"}),
    )
    .await;
    assert_eq!(a.status, 403);

    // The MRAO sees both; the last MRAO cannot be disabled.
    let list = get(&s, "/api/v1/admins", &mrao_key).await;
    assert_eq!(list.json["items"].as_array().unwrap().len(), 2);
    let a = send(
        &s,
        "PATCH",
        &format!("/api/v1/admins/{mrao}"),
        &mrao_key,
        json!({"disabled": true}),
    )
    .await;
    assert_eq!(a.status, 409, "{}", a.json);

    // ETag / If-Match: a stale version is a lost update.
    let shown = get(&s, &format!("/api/v1/admins/{rao}"), &mrao_key).await;
    let etag = shown.header("etag").unwrap().to_string();
    let body = json!({"name": "Renamed"}).to_string();
    let ok = call(
        &s,
        "PATCH",
        &format!("/api/v1/admins/{rao}"),
        Some(&mrao_key),
        &[("If-Match", &etag)],
        Some(body.as_bytes()),
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.json);
    let stale = call(
        &s,
        "PATCH",
        &format!("/api/v1/admins/{rao}"),
        Some(&mrao_key),
        &[("If-Match", &etag)],
        Some(body.as_bytes()),
    )
    .await;
    assert_eq!(stale.status, 412);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_naming_the_field_and_changes_nothing() {
    let s = start().await;
    let (_, key) = admin_with_key(&s, "mrao@example.org", Role::Mrao, vec![], vec![]).await;
    let before = get(&s, "/api/v1/admins", &key).await.json["items"]
        .as_array()
        .unwrap()
        .len();
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"name": "A", "email": "a@example.org", "role": "mrao", "colour": "red"}),
            "colour",
        ),
        (
            json!({"name": 5, "email": "a@example.org", "role": "mrao"}),
            "name",
        ),
        (
            json!({"name": "A", "email": "not-an-email", "role": "mrao"}),
            "email",
        ),
        (
            json!({"name": "A", "email": "a@example.org", "role": "king"}),
            "role",
        ),
        (
            json!({"name": "A", "email": "a@example.org", "role": "rao"}),
            "organisations",
        ),
        (
            json!({"name": "A", "email": "a@example.org", "role": "mrao", "password": "short"}),
            "password",
        ),
    ];
    for (body, field) in cases {
        let a = send(&s, "POST", "/api/v1/admins", &key, body.clone()).await;
        assert_eq!(a.status, 400, "{body}: {}", a.json);
        assert_eq!(a.json["field"], field, "{body}: {}", a.json);
        assert_eq!(a.header("content-type"), Some("application/problem+json"));
    }
    let a = send(
        &s,
        "POST",
        "/api/v1/admins",
        &key,
        json!({"name": "A", "email": "a@example.org", "role": "king"}),
    )
    .await;
    assert!(
        a.json["detail"].as_str().unwrap().contains("mrao"),
        "allowed values listed: {}",
        a.json
    );
    // Query strings are refused as bodies are: a problem document naming the parameter.
    for (path, field) in [
        ("/api/v1/organisations?limit=x", "limit"),
        ("/api/v1/admins?colour=1", "colour"),
        ("/api/v1/profiles?limit=0", "limit"),
    ] {
        let a = get(&s, path, &key).await;
        assert_eq!(a.status, 400, "{path}: {}", a.json);
        assert_eq!(a.json["field"], field, "{path}: {}", a.json);
        assert_eq!(a.header("content-type"), Some("application/problem+json"));
    }
    let xml = call(
        &s,
        "POST",
        "/api/v1/admins",
        Some(&key),
        &[("Content-Type", "application/xml")],
        Some(b"<a/>"),
    )
    .await;
    assert_eq!(xml.status, 415);
    let huge = vec![b' '; 300 * 1024];
    let big = call(&s, "POST", "/api/v1/admins", Some(&key), &[], Some(&huge)).await;
    assert_eq!(big.status, 413);
    let after = get(&s, "/api/v1/admins", &key).await.json["items"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(before, after);
    s.stop().await;
}
