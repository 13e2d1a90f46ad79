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
    let base = base(server);
    let (user, secret) = server.password("staff");
    let mut b = Browser::new(server).await;
    assert_eq!(b.get(&base).await.status, 200);
    let csrf = b.csrf();
    let r = b
        .post(
            &format!("{base}/secret-id"),
            &[("csrf", &csrf), ("email", &user), ("secret_id", &secret)],
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
    assert!(text.contains("value=\"Alice\""), "first name prefilled");
    assert!(text.contains("alice@example.org"));
    assert!(text.contains("Legacy compatibility"));
    assert!(
        text.contains("<option value=\"rsa-2048\" selected>"),
        "RSA-2048 by default"
    );
    let csrf = b.csrf();
    let password = "correct horse battery";
    let r = b
        .post(
            &format!("{base}/form"),
            &[
                ("csrf", &csrf),
                ("profile", "1"),
                ("term", "3"),
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
    assert!(cert.subject().to_string().contains("CN=Alice Q Example"));
    let years =
        (cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp()) / 86_400;
    assert!(
        (1095..=1097).contains(&years),
        "three-year term: {years} days"
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
    assert!(mine.contains("person") && mine.contains("valid"), "{mine}");
    assert_eq!(
        server
            .running
            .as_ref()
            .unwrap()
            .ra
            .store()
            .count_orders()
            .await
            .unwrap(),
        1
    );
    server.stop().await;
}

#[tokio::test]
async fn field_errors_keep_what_was_typed_but_never_passwords() {
    let server = support::start().await;
    let base = base(&server);
    let mut b = signed_in_at_form(&server).await;
    let csrf = b.csrf();
    let r = b
        .post(
            &format!("{base}/form"),
            &[
                ("csrf", &csrf),
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
    assert!(html.contains("value=\"Alicia\""), "typed name kept");
    assert!(html.contains("enter your last name"));
    assert!(html.contains("the two passwords differ"));
    assert!(html.contains("you must accept the agreement"));
    assert!(!html.contains("first-password-typed") && !html.contains("second-password-typed"));
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
    }
    // A CSR that is not one.
    let r = b
        .post(
            &format!("{base}/form"),
            &[
                ("csrf", &csrf),
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
    let ra = &server.running.as_ref().unwrap().ra;
    assert_eq!(
        ra.store().count_orders().await.unwrap(),
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
    let r = b
        .post(
            &format!("{base}/form"),
            &[
                ("csrf", &csrf),
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
    let ra = &server.running.as_ref().unwrap().ra;
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
    assert_eq!(ra.store().count_orders().await.unwrap(), 0);
    server.stop().await;
}

#[tokio::test]
async fn sign_in_refusals_are_shown_on_the_page() {
    let server = support::start().await;
    let base = base(&server);
    let ra = &server.running.as_ref().unwrap().ra;
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
        ra.store().outbox_pending().await.unwrap(),
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
    let ra = &server.running.as_ref().unwrap().ra;
    let routes = [
        "/email",
        "/secret-id",
        "/confirm",
        "/account/code",
        "/account/select",
        "/form",
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
    assert_eq!(ra.store().outbox_pending().await.unwrap(), 0);
    assert_eq!(ra.store().count_orders().await.unwrap(), 0);
    server.stop().await;
}
