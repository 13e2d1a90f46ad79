//! Entry points for the fuzz targets in `fuzz/` (cargo-afl) and for the seed-replay test in
//! `tests/it/fuzz_seeds.rs`. Each function feeds one untrusted input to the same decoders a
//! network request reaches, in the order the server calls them, and checks properties that
//! must hold for every input (a round trip, a rule a decoded value must obey). A broken
//! property is an assertion failure, which the fuzzer records as a crash: these functions are
//! test harness, not server code, and are hidden from the documentation for that reason.
//!
//! One function per target; the fuzz targets and the replay test call nothing else, so a
//! crash found by the fuzzer replays in the normal test suite with the same code.

use axum::body::Body;
use axum::extract::FromRequest;
use axum::http::{header, HeaderMap, HeaderValue, Request};
use base64::Engine;
use estgate_protocol::path::{is_valid_label, Operation, RESERVED_LABELS};
use estgate_protocol::transfer::{decode_base64, encode_base64, Wrap};
use estgate_protocol::{media, pkcs10};

use crate::domain::{EmailAddress, KeyType};
use crate::web::enroll::form::{csr_der, EnrollFields};
use crate::web::est::{accepts, credentials, pkcs10_body, pkcs12_password};

/// One fuzz target: takes any bytes, returns normally unless a property broke.
pub type Target = fn(&[u8]);

/// The targets by name, for the replay test and the fuzz crate's documentation.
pub const TARGETS: &[(&str, Target)] = &[
    ("transfer", transfer),
    ("pkcs10", pkcs10),
    ("path", path),
    ("headers", headers),
    ("form", form),
    ("ocsp", ocsp),
];

/// An EST request body (RFC 8951 base64 of a PKCS#10 CSR) as `simpleenroll` reads it:
/// Content-Type check, tolerant base64 decoding, then the CSR parser. Whatever decodes must
/// come back unchanged through the server's own encoder, wrapped or not.
pub fn transfer(data: &[u8]) {
    if let Ok(der) = decode_base64(data) {
        for wrap in [Wrap::Columns64, Wrap::Unwrapped] {
            let again = decode_base64(encode_base64(&der, wrap).as_bytes());
            assert_eq!(again.as_deref(), Ok(der.as_slice()), "{wrap:?} round trip");
        }
    }
    let mut h = HeaderMap::new();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(media::PKCS10),
    );
    if let Ok(der) = pkcs10_body(&h, data) {
        let _ = pkcs10::parse(&der);
    }
}

/// A DER PKCS#10 CSR (after transfer decoding). A CSR that parses carries exactly the bytes
/// it was parsed from, and its names are what a policy check may compare as text.
pub fn pkcs10(data: &[u8]) {
    if let Ok(csr) = pkcs10::parse(data) {
        assert!(data.starts_with(&csr.der), "the CSR's DER is not its input");
        assert!(!csr.spki_der.is_empty(), "a parsed CSR without a key");
        for name in csr.dns_names.iter().chain(&csr.emails) {
            assert!(!name.contains('\0'), "a NUL in a name: {name:?}");
        }
    }
}

/// An EST request path, as the three EST routes split it (`/.well-known/est/<op>`,
/// `/.well-known/est/<label>/<op>`, `/<label>/.well-known/est/<op>`). Every segment goes
/// through the operation and label parsers; a label that passes obeys the documented rule.
pub fn path(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let segments: Vec<&str> = text.split('/').collect();
    for s in &segments {
        if let Some(op) = Operation::parse(s) {
            assert_eq!(op.as_str(), *s, "operation round trip");
            assert!(!is_valid_label(s), "{s:?} is both an operation and a label");
        }
        if is_valid_label(s) {
            assert!((1..=64).contains(&s.len()), "label length {}", s.len());
            assert!(
                s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
                "label {s:?} has a character outside [a-z0-9-]"
            );
            assert!(!RESERVED_LABELS.contains(s), "reserved label {s:?} passed");
        }
    }
    // The same text as one request target, as hyper would hand it to the router.
    if let Ok(uri) = text.parse::<axum::http::Uri>() {
        for s in uri.path().split('/') {
            let _ = Operation::parse(s);
            let _ = is_valid_label(s);
        }
    }
}

/// One header value given to each header decoder of the EST handler: `Authorization`
/// (Basic), `Accept`, and `PKCS12-Password`. Lines of the input are separate header
/// fields, as a client may repeat a header. What decodes re-encodes to the same value.
pub fn headers(data: &[u8]) {
    let mut h = HeaderMap::new();
    for line in data.split(|b| *b == b'\n') {
        let Ok(value) = HeaderValue::from_bytes(line) else {
            continue;
        };
        h.append(header::AUTHORIZATION, value.clone());
        h.append(header::ACCEPT, value.clone());
        h.append("pkcs12-password", value);
    }
    if let Some(c) = credentials(&h) {
        assert!(!c.username.contains(':'), "a colon in the username");
        let encoded = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            c.username,
            c.password.expose()
        ));
        let mut again = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(&format!("Basic {encoded}")) {
            again.insert(header::AUTHORIZATION, v);
            let back = credentials(&again);
            assert_eq!(
                back.as_ref().map(|b| b.username.as_str()),
                Some(c.username.as_str())
            );
            assert_eq!(
                back.as_ref().map(|b| b.password.expose()),
                Some(c.password.expose())
            );
        }
    }
    for m in [media::PKCS12, media::PKCS7, media::PKCS8, media::CSRATTRS] {
        let _ = accepts(&h, m);
    }
    if let Ok(password) = pkcs12_password(&h) {
        let encoded = base64::engine::general_purpose::STANDARD.encode(password.expose());
        let mut again = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(&encoded) {
            again.insert("pkcs12-password", v);
            let back = pkcs12_password(&again).ok();
            assert_eq!(
                back.as_ref().map(|b| b.expose()),
                Some(password.expose()),
                "PKCS12-Password round trip"
            );
        }
    }
}

/// A form body (`application/x-www-form-urlencoded`) decoded by the same extractor as the
/// request form, then the fields the handlers interpret themselves: the pasted CSR (PEM or
/// base64, then the CSR parser), the key type, the numbers, and the sign-in email address.
pub fn form(data: &[u8]) {
    let request = || {
        Request::post("/form")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(data.to_vec()))
    };
    let Ok(req) = request() else {
        return;
    };
    let _ = ready(axum::Form::<EnrollFields>::from_request(req, &()));
    let Ok(req) = request() else {
        return;
    };
    let Some(Ok(axum::Form(pairs))) =
        ready(axum::Form::<Vec<(String, String)>>::from_request(req, &()))
    else {
        return;
    };
    for (name, value) in &pairs {
        match name.as_str() {
            "csr" => {
                if let Ok(der) = csr_der(value) {
                    let _ = pkcs10::parse(&der);
                }
            }
            "key_type" => {
                if let Some(k) = KeyType::parse(value) {
                    assert_eq!(k.as_str(), value, "key type round trip");
                }
            }
            "profile" | "certificate" => {
                let _ = value.trim().parse::<crate::domain::Id>();
            }
            "term" => {
                let _ = value.parse::<u32>();
            }
            "email" => {
                if let Some(e) = EmailAddress::parse(value) {
                    assert_eq!(EmailAddress::parse(e.as_str()).as_ref(), Some(&e));
                    assert!(e.domain().contains('.'), "email domain {:?}", e.domain());
                }
            }
            _ => {}
        }
    }
}

/// An OCSP request body (the POST body, or the decoded GET path) as the plain-HTTP
/// listener hands it to the responder.
pub fn ocsp(data: &[u8]) {
    let _ = crate::ca::ocsp::parse_request(data);
}

/// Runs a future that needs no I/O to completion on this thread: the extractors above only
/// read a body that is already in memory, so they are ready at the first or a later poll
/// without ever waiting on a wake-up. Gives up (None) rather than spin if one ever did.
fn ready<F: std::future::Future>(f: F) -> Option<F::Output> {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    for _ in 0..64 {
        if let std::task::Poll::Ready(out) = f.as_mut().poll(&mut cx) {
            return Some(out);
        }
    }
    None
}
