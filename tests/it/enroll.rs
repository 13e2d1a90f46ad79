//! The browser form over real TLS: pages, headers, CSRF, sessions, field errors, and the
//! `.p12` a person downloads, opened by OpenSSL with the password typed in the form.

use std::collections::BTreeMap;

use base64::Engine;
use estgate_bench::{Connection, Response};
use x509_parser::prelude::*;

use crate::support::{self, openssl, openssl_verify, Server};

/// A cookie-keeping HTTP/1.1 client, enough of a browser for the form.
struct Browser {
    conn: Connection,
    cookies: BTreeMap<String, String>,
}

fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

impl Browser {
    async fn new(server: &Server) -> Browser {
        Browser {
            conn: server.connect().await,
            cookies: BTreeMap::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn remember(&mut self, resp: &Response) {
        for (name, value) in &resp.headers {
            if !name.eq_ignore_ascii_case("set-cookie") {
                continue;
            }
            let pair = value.split(';').next().unwrap_or("");
            if let Some((k, v)) = pair.split_once('=') {
                if v.is_empty() || value.contains("Max-Age=0") {
                    self.cookies.remove(k);
                } else {
                    self.cookies.insert(k.to_string(), v.to_string());
                }
            }
        }
    }

    async fn get(&mut self, path: &str) -> Response {
        let cookie = self.cookie_header();
        let mut headers = vec![("User-Agent", "estgate-test")];
        if !cookie.is_empty() {
            headers.push(("Cookie", cookie.as_str()));
        }
        let r = self.conn.request("GET", path, &headers, b"").await.unwrap();
        self.remember(&r);
        r
    }

    async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Response {
        let body = fields
            .iter()
            .map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v)))
            .collect::<Vec<_>>()
            .join("&");
        self.post_raw(path, body.as_bytes(), &[]).await
    }

    async fn post_raw(&mut self, path: &str, body: &[u8], extra: &[(&str, &str)]) -> Response {
        let cookie = self.cookie_header();
        let mut headers = vec![
            ("User-Agent", "estgate-test"),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ];
        if !cookie.is_empty() {
            headers.push(("Cookie", cookie.as_str()));
        }
        headers.extend_from_slice(extra);
        let r = self
            .conn
            .request("POST", path, &headers, body)
            .await
            .unwrap();
        self.remember(&r);
        r
    }

    fn csrf(&self) -> String {
        self.cookies
            .get("__Host-estgate-csrf")
            .cloned()
            .unwrap_or_default()
    }
}

fn base(server: &Server) -> String {
    let url = &server.demo.enroll_url;
    url[url.find("/enroll/").unwrap()..].to_string()
}

fn location(r: &Response) -> String {
    r.header("location").unwrap_or("").to_string()
}

/// Signs alice in with her secret ID and picks the listed Staff account.
async fn signed_in_at_form(server: &Server) -> Browser {
    let (user, secret) = server.password("staff");
    signed_in_as(server, &user, &secret).await
}

/// Signs a person in with their secret ID and picks the listed Staff account.
async fn signed_in_as(server: &Server, user: &str, secret: &str) -> Browser {
    let base = base(server);
    let mut b = Browser::new(server).await;
    assert_eq!(b.get(&base).await.status, 200);
    let csrf = b.csrf();
    let r = b
        .post(
            &format!("{base}/secret-id"),
            &[("csrf", &csrf), ("email", user), ("secret_id", secret)],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body_text());
    assert_eq!(location(&r), format!("{base}/account"));
    let page = b.get(&format!("{base}/account")).await;
    assert_eq!(page.status, 200);
    let text = page.body_text();
    assert!(text.contains("Select Enrollment Account"), "{text}");
    assert!(text.contains("Enroll with Access Code"));
    let id = text
        .split("name=\"account\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .to_string();
    let r = b
        .post(
            &format!("{base}/account/select"),
            &[("csrf", &csrf), ("account", &id)],
        )
        .await;
    assert_eq!(r.status, 303);
    assert_eq!(location(&r), format!("{base}/form"));
    b
}

/// The one-time token of the form page `html`.
fn form_token(html: &str) -> String {
    html.split("name=\"form_token\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap_or_else(|| panic!("no form token in {html}"))
        .to_string()
}

/// Opens the form page and returns its one-time token.
async fn open_form(b: &mut Browser, base: &str) -> String {
    let r = b.get(&format!("{base}/form")).await;
    assert_eq!(r.status, 200, "{}", r.body_text());
    form_token(&r.body_text())
}

fn data_url_payload(html: &str, media: &str) -> Vec<u8> {
    let marker = format!("data:{media};base64,");
    let start = html.find(&marker).unwrap() + marker.len();
    let b64: String = html[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '+' || *c == '/' || *c == '=')
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap()
}

#[tokio::test]
async fn pages_carry_security_headers_and_help() {
    let server = support::start().await;
    let base = base(&server);
    let mut b = Browser::new(&server).await;
    let r = b.get(&base).await;
    assert_eq!(r.status, 200);
    let csp = r.header("content-security-policy").unwrap();
    assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'self'"));
    assert!(!csp.contains("unsafe-inline"));
    assert_eq!(r.header("x-frame-options"), Some("DENY"));
    assert_eq!(r.header("referrer-policy"), Some("no-referrer"));
    assert!(r
        .header("strict-transport-security")
        .unwrap()
        .contains("max-age="));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let set = r
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("set-cookie"))
        .unwrap();
    assert!(set.1.starts_with("__Host-estgate-csrf="));
    for attr in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set.1.contains(attr), "{attr} in {}", set.1);
    }
    let text = r.body_text();
    assert!(text.contains(
        "Please provide your email address and we will send you a one-time link to authenticate."
    ));
    assert!(text.contains("Secret ID"));
    assert!(text.contains("Example self-enrollment"));
    assert!(text.contains("IT service desk"), "the endpoint's help link");
    // Scripts only from the server's own file (the CSP would block any other).
    for (i, _) in text.match_indices("<script") {
        assert!(
            text[i..].starts_with("<script src=\"/static/estgate.js\""),
            "inline script at {i}"
        );
    }
    for (topic, heading) in [
        ("why-authenticate", "Why do I need to authenticate?"),
        ("passphrase", "How do I use my passphrase?"),
        ("revoke", "How do I revoke my certificate?"),
    ] {
        let r = b.get(&format!("{base}/help/{topic}")).await;
        assert_eq!(r.status, 200, "{topic}");
        assert!(r.body_text().contains(heading), "{topic}");
    }
    assert!(b
        .get(&format!("{base}/help/passphrase"))
        .await
        .body_text()
        .contains("Thunderbird"));
    assert_eq!(b.get(&format!("{base}/help/nonsense")).await.status, 404);
    assert_eq!(b.get("/enroll/NoSuchEndpoint12345678").await.status, 404);
    let css = b.get("/static/estgate.css").await;
    assert_eq!(css.status, 200);
    assert!(css.header("content-type").unwrap().starts_with("text/css"));
    server.stop().await;
}

#[tokio::test]
async fn secret_id_flow_delivers_a_pkcs12_that_openssl_opens() {
    let server = support::start().await;
    let base = base(&server);
    let mut b = signed_in_at_form(&server).await;
    let form = b.get(&format!("{base}/form")).await;
    assert_eq!(form.status, 200);
    let text = form.body_text();
    // A person on record sees the recorded names, and cannot type others.
    assert!(
        text.contains("<dt>First name</dt><dd>Alice</dd>"),
        "first name shown from the record"
    );
    assert!(
        !text.contains("name=\"first_name\""),
        "no name field to edit"
    );
    assert!(text.contains("alice@example.org"));
    assert!(text.contains("Legacy compatibility"));
    assert!(
        text.contains("<option value=\"rsa-2048\" selected>"),
        "RSA-2048 by default"
    );
    let csrf = b.csrf();
    let token = form_token(&text);
    let password = "correct horse battery";
    let r = b
        .post(
            &format!("{base}/form"),
            &[
                ("csrf", &csrf),
                ("form_token", &token),
                ("profile", "1"),
                ("term", "2"),
                ("key_type", "ec-p256"),
                ("first_name", "Alice"),
                ("middle_name", "Q"),
                ("last_name", "Example"),
                ("password", password),
                ("password_confirmation", password),
                ("encryption", "modern"),
                ("eula", "accepted"),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body_text());
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let html = r.body_text();
    assert!(html.contains("download=\"alice@example.org.p12\""));
    assert!(html.contains("Import it"));
    let p12 = data_url_payload(&html, "application/x-pkcs12");
    let dir = server.dir.path();
    std::fs::write(dir.join("alice.p12"), &p12).unwrap();
    let pass = format!("pass:{password}");
    let certs = openssl(
        &[
            "pkcs12",
            "-in",
            "alice.p12",
            "-passin",
            &pass,
            "-nokeys",
            "-clcerts",
        ],
        dir,
    );
    let leaf_pem = certs
        .find("-----BEGIN CERTIFICATE-----")
        .map(|i| &certs[i..])
        .unwrap();
    let (_, pem) = x509_parser::pem::parse_x509_pem(leaf_pem.as_bytes()).unwrap();
    let (_, cert) = parse_x509_certificate(&pem.contents).unwrap();
    // The names sent with the form (a middle name "Q") are not the record's: ignored.
    assert!(
        cert.subject().to_string().contains("CN=Alice Example"),
        "{}",
        cert.subject()
    );
    let years =
        (cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp()) / 86_400;
    assert!(
        (730..=732).contains(&years),
        "two-year term (the demo profile is S/MIME: at most 825 days): {years} days"
    );
    let san = cert.subject_alternative_name().unwrap().unwrap();
    assert!(san
        .value
        .general_names
        .iter()
        .any(|n| matches!(n, GeneralName::RFC822Name("alice@example.org"))));
    openssl_verify(&server, &pem.contents, Some("smimesign"));
    // The key in the file is the certificate's.
    let key = openssl(
        &[
            "pkcs12",
            "-in",
            "alice.p12",
            "-passin",
            &pass,
            "-nocerts",
            "-nodes",
        ],
        dir,
    );
    std::fs::write(dir.join("alice.key"), key).unwrap();
    std::fs::write(dir.join("alice.crt"), leaf_pem).unwrap();
    let a = openssl(&["pkey", "-in", "alice.key", "-pubout"], dir);
    let c = openssl(&["x509", "-in", "alice.crt", "-pubkey", "-noout"], dir);
    assert_eq!(a, c);
    // A wrong password does not open it.
    let wrong = std::process::Command::new("openssl")
        .args([
            "pkcs12",
            "-in",
            "alice.p12",
            "-passin",
            "pass:wrong-password",
            "-nokeys",
        ])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(!wrong.status.success());
    // My certificates lists it.
    let serial = html
        .split("serial <code>")
        .nth(1)
        .and_then(|s| s.split('<').next())
        .unwrap();
    assert_eq!(serial, hex::encode_upper(cert.raw_serial()));
    let mine = b.get(&format!("{base}/certificates")).await.body_text();
    assert!(mine.contains(serial), "{mine}");
    assert!(
        mine.contains("person") && mine.contains(">Valid<"),
        "{mine}"
    );
    assert!(mine.contains("Revoke…"), "{mine}");
    assert_eq!(server.store().await.count_orders().await.unwrap(), 1);
    server.stop().await;
}

#[tokio::test]
async fn field_errors_keep_what_was_typed_but_never_passwords() {
    let server = support::start().await;
    let base = base(&server);
    let mut b = signed_in_at_form(&server).await;
    let csrf = b.csrf();
    let token = open_form(&mut b, &base).await;
    let r = b
        .post(
            &format!("{base}/form"),
            &[
                ("csrf", &csrf),
                ("form_token", &token),
                ("term", "1"),
                ("key_type", "rsa-2048"),
                ("first_name", "Alicia"),
                ("last_name", ""),
                ("password", "first-password-typed"),
                ("password_confirmation", "second-password-typed"),
            ],
        )
        .await;
    assert_eq!(r.status, 400);
    let html = r.body_text();
    // Alice is on record: her names are shown, not editable, and what was sent for them
    // (a new first name, no last name) is no field error and changes nothing.
    assert!(!html.contains("name=\"first_name\"") && !html.contains("name=\"last_name\""));
    assert!(!html.contains("Alicia") && !html.contains("enter your last name"));
    assert!(
        html.contains("<dd>Alice</dd>") && html.contains("<dd>Example</dd>"),
        "{html}"
    );
    assert!(html.contains("the two passwords differ"));
    assert!(html.contains("you must accept the agreement"));
    assert!(!html.contains("first-password-typed") && !html.contains("second-password-typed"));
    // Each page shown again carries a new token.
    let mut token = form_token(&html);
    // A short password, an empty one.
    for (pw, msg) in [
        ("short", "at least 8 characters"),
        ("", "at least 8 characters"),
    ] {
        let r = b
            .post(
                &format!("{base}/form"),
                &[
                    ("csrf", &csrf),
                    ("form_token", &token),
                    ("first_name", "Alice"),
                    ("last_name", "Example"),
                    ("password", pw),
                    ("password_confirmation", pw),
                    ("eula", "accepted"),
                ],
            )
            .await;
        assert_eq!(r.status, 400);
        assert!(r.body_text().contains(msg), "{pw:?}");
        token = form_token(&r.body_text());
    }
    // A CSR that is not one.
    let r = b
        .post(
            &format!("{base}/form"),
            &[
                ("csrf", &csrf),
                ("form_token", &token),
                ("first_name", "Alice"),
                ("last_name", "Example"),
                (
                    "csr",
                    "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----",
                ),
                ("eula", "accepted"),
            ],
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        server.store().await.count_orders().await.unwrap(),
        0,
        "nothing stored"
    );
    server.stop().await;
}

#[tokio::test]
async fn client_csr_gets_a_pem_chain() {
    let server = support::start().await;
    let base = base(&server);
    let mut b = signed_in_at_form(&server).await;
    let dir = server.dir.path();
    openssl(
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "own.key",
            "-subj",
            "/CN=whatever",
            "-out",
            "own.csr",
        ],
        dir,
    );
    let csr = std::fs::read_to_string(dir.join("own.csr")).unwrap();
    let csrf = b.csrf();
    let token = open_form(&mut b, &base).await;
    let r = b
        .post(
            &format!("{base}/form"),
            &[
                ("csrf", &csrf),
                ("form_token", &token),
                ("term", "1"),
                ("first_name", "Alice"),
                ("last_name", "Example"),
                ("csr", &csr),
                ("eula", "accepted"),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body_text());
    let pem =
        String::from_utf8(data_url_payload(&r.body_text(), "application/x-pem-file")).unwrap();
    assert_eq!(
        pem.matches("BEGIN CERTIFICATE").count(),
        3,
        "leaf + issuing + root"
    );
    let (_, leaf) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
    openssl_verify(&server, &leaf.contents, Some("sslclient"));
    std::fs::write(dir.join("own.crt"), &pem).unwrap();
    let a = openssl(&["pkey", "-in", "own.key", "-pubout"], dir);
    let c = openssl(&["x509", "-in", "own.crt", "-pubkey", "-noout"], dir);
    assert_eq!(a, c, "issued for the CSR's key");
    server.stop().await;
}

#[tokio::test]
async fn posts_need_csrf_and_pages_need_a_session() {
    let server = support::start().await;
    let base = base(&server);
    let (user, secret) = server.password("staff");
    // No CSRF cookie at all.
    let mut b = Browser::new(&server).await;
    let r = b
        .post(
            &format!("{base}/secret-id"),
            &[("csrf", "x"), ("email", &user), ("secret_id", &secret)],
        )
        .await;
    assert_eq!(r.status, 403);
    assert!(!b.cookies.contains_key("__Host-estgate-session"));
    // The cookie, but another value in the form.
    b.get(&base).await;
    let r = b
        .post(
            &format!("{base}/secret-id"),
            &[
                ("csrf", &"Z".repeat(32)),
                ("email", &user),
                ("secret_id", &secret),
            ],
        )
        .await;
    assert_eq!(r.status, 403);
    // Cross-site, even with the right value.
    let csrf = b.csrf();
    let body = format!("csrf={csrf}&email={}&secret_id={secret}", urlencode(&user));
    let r = b
        .post_raw(
            &format!("{base}/secret-id"),
            body.as_bytes(),
            &[("Sec-Fetch-Site", "cross-site")],
        )
        .await;
    assert_eq!(r.status, 403);
    assert!(!b.cookies.contains_key("__Host-estgate-session"));
    // Without a session the inner pages send you to sign in.
    for path in ["/account", "/form", "/certificates"] {
        let r = b.get(&format!("{base}{path}")).await;
        assert_eq!(r.status, 303, "{path}");
        assert_eq!(location(&r), base);
    }
    let r = b.post(&format!("{base}/form"), &[("csrf", &csrf)]).await;
    assert_eq!(r.status, 303);
    // A made-up session cookie is no session.
    b.cookies
        .insert("__Host-estgate-session".into(), "A".repeat(32));
    assert_eq!(b.get(&format!("{base}/account")).await.status, 303);
    assert_eq!(server.store().await.count_orders().await.unwrap(), 0);
    server.stop().await;
}

#[tokio::test]
async fn sign_in_refusals_are_shown_on_the_page() {
    let server = support::start().await;
    let base = base(&server);
    let mut b = Browser::new(&server).await;
    b.get(&base).await;
    let csrf = b.csrf();
    let r = b
        .post(
            &format!("{base}/secret-id"),
            &[
                ("csrf", &csrf),
                ("email", "alice@example.org"),
                ("secret_id", "wrong"),
            ],
        )
        .await;
    assert_eq!(r.status, 401);
    let html = r.body_text();
    assert!(html.contains("wrong email address or secret ID"));
    assert!(html.contains("value=\"alice@example.org\""), "email kept");
    let r = b
        .post(
            &format!("{base}/email"),
            &[("csrf", &csrf), ("email", "mallory@evil.example.com")],
        )
        .await;
    assert_eq!(r.status, 403);
    assert!(r.body_text().contains("use an address at example.org"));
    let r = b
        .post(
            &format!("{base}/email"),
            &[("csrf", &csrf), ("email", "not an address")],
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        server.store().await.outbox_pending().await.unwrap(),
        0,
        "nothing queued"
    );
    // In the domain: the same page whether or not the person exists.
    let known = b
        .post(
            &format!("{base}/email"),
            &[("csrf", &csrf), ("email", "alice@example.org")],
        )
        .await;
    let unknown = b
        .post(
            &format!("{base}/email"),
            &[("csrf", &csrf), ("email", "nobody@example.org")],
        )
        .await;
    assert_eq!(known.status, 200);
    assert_eq!(unknown.status, 200);
    assert_eq!(
        known.body_text().replace("alice@example.org", "X"),
        unknown.body_text().replace("nobody@example.org", "X")
    );
    assert!(known.body_text().contains("Check your email"));
    // An invented link.
    let r = b.get(&format!("{base}/confirm?token=abcdef")).await;
    assert_eq!(
        r.status, 401,
        "an unknown link is refused before any button"
    );
    assert!(r.body_text().contains("this link is not valid"));
    let r = b
        .post(
            &format!("{base}/confirm"),
            &[("csrf", &csrf), ("token", "abcdef")],
        )
        .await;
    assert_eq!(r.status, 401);
    assert!(r.body_text().contains("this link is not valid"));
    let r = b.get(&format!("{base}/confirm?token=%3Cscript%3E")).await;
    assert_eq!(r.status, 401);
    server.stop().await;
}

#[tokio::test]
async fn sign_out_ends_the_session_and_oversized_forms_are_refused() {
    let server = support::start().await;
    let base = base(&server);
    let mut b = signed_in_at_form(&server).await;
    let session = b.cookies.get("__Host-estgate-session").cloned().unwrap();
    let csrf = b.csrf();
    let big = format!("csrf={csrf}&csr={}", "A".repeat(70 * 1024));
    let r = b
        .post_raw(&format!("{base}/form"), big.as_bytes(), &[])
        .await;
    assert_eq!(r.status, 413);
    let r = b
        .post(&format!("{base}/sign-out"), &[("csrf", &csrf)])
        .await;
    assert_eq!(r.status, 303);
    assert!(!b.cookies.contains_key("__Host-estgate-session"));
    // The old cookie no longer works, even if replayed.
    b.cookies.insert("__Host-estgate-session".into(), session);
    assert_eq!(b.get(&format!("{base}/form")).await.status, 303);
    server.stop().await;
}

#[tokio::test]
async fn every_post_route_refuses_a_missing_or_wrong_csrf_value() {
    let server = support::start().await;
    let base = base(&server);
    let mut b = signed_in_at_form(&server).await;
    let routes = [
        "/email",
        "/secret-id",
        "/confirm",
        "/account/code",
        "/account/select",
        "/form",
        "/certificates/revoke",
        "/certificates/revoke/confirm",
        "/sign-out",
    ];
    for route in routes {
        for csrf in ["", "wrong-but-32-characters-long-xyz"] {
            let r = b
                .post(
                    &format!("{base}{route}"),
                    &[
                        ("csrf", csrf),
                        ("email", "alice@example.org"),
                        ("account", "1"),
                    ],
                )
                .await;
            assert_eq!(r.status, 403, "{route} with csrf {csrf:?}");
            assert!(r.body_text().contains("reload the page"), "{route}");
        }
    }
    // Still signed in (sign-out was refused too), nothing queued, nothing issued.
    assert_eq!(b.get(&format!("{base}/form")).await.status, 200);
    assert_eq!(server.store().await.outbox_pending().await.unwrap(), 0);
    assert_eq!(server.store().await.count_orders().await.unwrap(), 0);
    server.stop().await;
}

// ---- one form, one certificate ----------------------------------------------------------

/// The fields of a complete server-key request (EC P-256: quick to generate).
fn request_fields<'a>(csrf: &'a str, token: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("csrf", csrf),
        ("form_token", token),
        ("profile", "1"),
        ("term", "1"),
        ("key_type", "ec-p256"),
        ("first_name", "Alice"),
        ("last_name", "Example"),
        ("password", "correct horse battery"),
        ("password_confirmation", "correct horse battery"),
        ("encryption", "modern"),
        ("eula", "accepted"),
    ]
}

/// Requests one certificate through the form; returns its serial.
async fn issue_through_form(b: &mut Browser, base: &str) -> String {
    let token = open_form(b, base).await;
    let csrf = b.csrf();
    let r = b
        .post(&format!("{base}/form"), &request_fields(&csrf, &token))
        .await;
    assert_eq!(r.status, 200, "{}", r.body_text());
    r.body_text()
        .split("serial <code>")
        .nth(1)
        .and_then(|s| s.split('<').next())
        .unwrap()
        .to_string()
}

async fn certificate_count(server: &Server) -> usize {
    server.store().await.certificates().await.unwrap().len()
}

#[tokio::test]
async fn a_form_submitted_twice_issues_one_certificate() {
    let server = support::start().await;
    let base = base(&server);
    let mut b = signed_in_at_form(&server).await;
    let token = open_form(&mut b, &base).await;
    let csrf = b.csrf();
    let fields = request_fields(&csrf, &token);
    let first = b.post(&format!("{base}/form"), &fields).await;
    assert_eq!(first.status, 200, "{}", first.body_text());
    // A reload of the result page sends the same form again.
    let again = b.post(&format!("{base}/form"), &fields).await;
    assert_eq!(again.status, 409, "{}", again.body_text());
    let html = again.body_text();
    assert!(html.contains("This form was already submitted"), "{html}");
    assert!(html.contains("nothing more was issued"), "{html}");
    assert!(
        html.contains(&format!("href=\"{base}/certificates\"")),
        "{html}"
    );
    assert!(
        !html.contains("application/x-pkcs12"),
        "no file the second time"
    );
    assert_eq!(certificate_count(&server).await, 1);
    assert_eq!(server.store().await.count_orders().await.unwrap(), 1);

    // Two submits of one form at the same moment (a double click): one certificate.
    let token = open_form(&mut b, &base).await;
    let mut twin = Browser::new(&server).await;
    twin.cookies = b.cookies.clone();
    let fields = request_fields(&csrf, &token);
    let path = format!("{base}/form");
    let (x, y) = tokio::join!(b.post(&path, &fields), twin.post(&path, &fields));
    let mut statuses = [x.status, y.status];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 409]);
    assert_eq!(certificate_count(&server).await, 2);

    // Without any token: refused, nothing issued.
    let mut no_token = request_fields(&csrf, "");
    no_token.remove(1);
    let r = b.post(&path, &no_token).await;
    assert_eq!(r.status, 400, "{}", r.body_text());
    assert!(r
        .body_text()
        .contains("open the certificate request form again"));
    assert_eq!(certificate_count(&server).await, 2);
    server.stop().await;
}

#[tokio::test]
async fn after_a_field_error_the_form_is_sent_again_with_its_new_token() {
    let server = support::start().await;
    let base = base(&server);
    let mut b = signed_in_at_form(&server).await;
    let csrf = b.csrf();
    let old = open_form(&mut b, &base).await;
    let mut wrong = request_fields(&csrf, &old);
    wrong.retain(|(k, _)| *k != "eula");
    let r = b.post(&format!("{base}/form"), &wrong).await;
    assert_eq!(r.status, 400);
    let new = form_token(&r.body_text());
    assert_ne!(new, old);
    // The copy before the error is used up; the copy shown with the error works.
    let r = b
        .post(&format!("{base}/form"), &request_fields(&csrf, &old))
        .await;
    assert_eq!(r.status, 409, "{}", r.body_text());
    assert_eq!(certificate_count(&server).await, 0);
    let r = b
        .post(&format!("{base}/form"), &request_fields(&csrf, &new))
        .await;
    assert_eq!(r.status, 200, "{}", r.body_text());
    assert_eq!(certificate_count(&server).await, 1);
    // Opening the form again replaces the token of an earlier, unsent copy.
    let stale = open_form(&mut b, &base).await;
    let fresh = open_form(&mut b, &base).await;
    let r = b
        .post(&format!("{base}/form"), &request_fields(&csrf, &stale))
        .await;
    assert_eq!(r.status, 409);
    assert_eq!(certificate_count(&server).await, 1);
    let r = b
        .post(&format!("{base}/form"), &request_fields(&csrf, &fresh))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(certificate_count(&server).await, 2);
    server.stop().await;
}

// ---- self-service revocation ----------------------------------------------------------

/// The certificate id behind the "Revoke…" button of the row with this serial.
fn revoke_button_id(list: &str, serial: &str) -> Option<String> {
    let row = list.split("<tr>").find(|row| row.contains(serial))?;
    let row = &row[..row.find("</tr>")?];
    row.split("name=\"certificate\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .map(str::to_string)
}

async fn certificate_by_serial(
    server: &Server,
    serial: &str,
) -> estgate::domain::CertificateRecord {
    server
        .store()
        .await
        .certificate_by_serial(serial)
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn a_person_revokes_their_own_certificate() {
    use estgate::domain::{CertStatus, RevocationReason};
    let server = support::start().await;
    let base = base(&server);
    let mut b = signed_in_at_form(&server).await;
    let serial = issue_through_form(&mut b, &base).await;
    let list = b.get(&format!("{base}/certificates")).await.body_text();
    let id = revoke_button_id(&list, &serial).unwrap_or_else(|| panic!("{list}"));
    let csrf = b.csrf();
    // Step one shows the certificate, the reasons and the warning; nothing changes yet.
    let r = b
        .post(
            &format!("{base}/certificates/revoke"),
            &[("csrf", &csrf), ("certificate", &id)],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body_text());
    let page = r.body_text();
    assert!(page.contains(&serial), "{page}");
    assert!(page.contains("CN=Alice Example"), "the subject: {page}");
    assert!(page.contains("This cannot be undone"), "{page}");
    for (value, label) in [
        (
            "keyCompromise",
            "My private key was lost or may be known to someone else",
        ),
        (
            "superseded",
            "I have a new certificate that replaces this one",
        ),
        ("affiliationChanged", "place in the organization changed"),
        ("cessationOfOperation", "I no longer need this certificate"),
        ("unspecified", "None of these"),
    ] {
        assert!(page.contains(&format!("value=\"{value}\"")), "{value}");
        assert!(page.contains(label), "{label}");
    }
    assert!(!page.contains("certificateHold"));
    assert_eq!(
        certificate_by_serial(&server, &serial).await.status,
        CertStatus::Valid
    );
    // Step two revokes.
    let r = b
        .post(
            &format!("{base}/certificates/revoke/confirm"),
            &[
                ("csrf", &csrf),
                ("certificate", &id),
                ("reason", "keyCompromise"),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body_text());
    let done = r.body_text();
    assert!(done.contains("Certificate revoked"), "{done}");
    assert!(done.contains(&serial));
    assert!(done.contains("CRL") && done.contains("OCSP") && done.contains("within seconds"));
    let cert = certificate_by_serial(&server, &serial).await;
    assert_eq!(cert.status, CertStatus::Revoked);
    let revocation = cert.revocation.unwrap();
    assert_eq!(revocation.reason, RevocationReason::KeyCompromise);
    assert_eq!(revocation.by, "alice@example.org");
    // The list says so, and offers no second revocation.
    let list = b.get(&format!("{base}/certificates")).await.body_text();
    assert!(list.contains(">Revoked<"), "{list}");
    assert!(
        list.contains("My private key was lost or may be known to someone else (by you,"),
        "{list}"
    );
    assert_eq!(revoke_button_id(&list, &serial), None, "{list}");
    // The help page describes what now happens.
    let help = b.get(&format!("{base}/help/revoke")).await.body_text();
    assert!(help.contains("My certificates") && help.contains("Revoke…"));
    assert!(help.contains("administrators") && help.contains("OCSP"));
    server.stop().await;
}

#[tokio::test]
async fn revocation_refusals_change_nothing() {
    use estgate::domain::{CertStatus, EmailAddress, RevocationReason, Secret};
    let server = support::start().await;
    let base = base(&server);
    let org = server
        .store()
        .await
        .organisation_by_name(estgate::demo::ORG)
        .await
        .unwrap();
    server
        .store()
        .await
        .create_person(
            estgate::store::NewPerson {
                organisation_id: org.id,
                department_id: None,
                email: EmailAddress::parse("bob@example.org").unwrap(),
                first_name: "Bob".into(),
                middle_name: String::new(),
                last_name: "Example".into(),
                secret_id_hash: Some(estgate::domain::hash_secret(&Secret::new(
                    "bob-secret-id-0123456789",
                ))),
            },
            0,
        )
        .await
        .unwrap();
    let mut bob = signed_in_as(&server, "bob@example.org", "bob-secret-id-0123456789").await;
    let bobs = issue_through_form(&mut bob, &base).await;
    let bobs_id = certificate_by_serial(&server, &bobs).await.id.to_string();
    let mut b = signed_in_at_form(&server).await;
    let alices = issue_through_form(&mut b, &base).await;
    let alices_id = certificate_by_serial(&server, &alices).await.id.to_string();
    let csrf = b.csrf();
    let start = format!("{base}/certificates/revoke");
    let confirm = format!("{base}/certificates/revoke/confirm");

    // Another person's certificate, one that does not exist, and no number: not found.
    for id in [bobs_id.as_str(), "999999", "x"] {
        let r = b
            .post(&start, &[("csrf", &csrf), ("certificate", id)])
            .await;
        assert_eq!(r.status, 404, "{id}: {}", r.body_text());
        assert!(r.body_text().contains("no such certificate of yours"));
        let r = b
            .post(
                &confirm,
                &[
                    ("csrf", &csrf),
                    ("certificate", id),
                    ("reason", "keyCompromise"),
                ],
            )
            .await;
        assert_eq!(r.status, 404, "{id}: {}", r.body_text());
        assert!(r.body_text().contains("Not revoked"));
    }
    // Alice does not see Bob's certificate at all.
    let list = b.get(&format!("{base}/certificates")).await.body_text();
    assert!(!list.contains(&bobs), "{list}");
    // A reason outside the offered five, or none: the page again, with the error.
    for reason in ["certificateHold", "privilegeWithdrawn", "nonsense", ""] {
        let r = b
            .post(
                &confirm,
                &[
                    ("csrf", &csrf),
                    ("certificate", &alices_id),
                    ("reason", reason),
                ],
            )
            .await;
        assert_eq!(r.status, 400, "{reason}: {}", r.body_text());
        assert!(r.body_text().contains("choose one of the reasons"));
    }
    // Without the CSRF value, or with another one.
    for csrf in ["", "wrong-but-32-characters-long-xyz"] {
        let r = b
            .post(
                &confirm,
                &[
                    ("csrf", csrf),
                    ("certificate", &alices_id),
                    ("reason", "superseded"),
                ],
            )
            .await;
        assert_eq!(r.status, 403, "{}", r.body_text());
    }
    for serial in [&alices, &bobs] {
        let c = certificate_by_serial(&server, serial).await;
        assert_eq!(c.status, CertStatus::Valid, "{serial}");
        assert!(c.revocation.is_none());
    }
    // Revoked once; the second time is refused and the first revocation stays as it was.
    let r = b
        .post(
            &confirm,
            &[
                ("csrf", &csrf),
                ("certificate", &alices_id),
                ("reason", "superseded"),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body_text());
    let first = certificate_by_serial(&server, &alices).await.revocation;
    let r = b
        .post(
            &confirm,
            &[
                ("csrf", &csrf),
                ("certificate", &alices_id),
                ("reason", "keyCompromise"),
            ],
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.body_text());
    assert!(r.body_text().contains("already revoked"));
    let r = b
        .post(&start, &[("csrf", &csrf), ("certificate", &alices_id)])
        .await;
    assert_eq!(r.status, 409);
    let after = certificate_by_serial(&server, &alices).await.revocation;
    assert_eq!(after, first);
    assert_eq!(after.map(|r| r.reason), Some(RevocationReason::Superseded));
    assert_eq!(
        certificate_by_serial(&server, &bobs).await.status,
        CertStatus::Valid,
        "Bob's certificate untouched"
    );
    server.stop().await;
}
