//! The plain-HTTP listener for relying parties: the CRL, the issuing CA certificate
//! (caIssuers) and OCSP (RFC 6960 appendix A: POST, and GET with the base64 request in the
//! path). No TLS: these objects are signed, and TLS to fetch them would need them first.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use base64::Engine;

use crate::ra::publication::{OcspAnswer, Publisher};

/// An OCSP request is a few hundred bytes; anything far larger is not one.
const MAX_OCSP_REQUEST: usize = 16 * 1024;

pub fn router(publisher: Arc<Publisher>) -> Router {
    Router::new()
        .route("/crl", get(crl))
        .route("/ca.cer", get(ca_certificate))
        .route("/ocsp", axum::routing::post(ocsp_post))
        .route("/ocsp/{*request}", get(ocsp_get))
        .with_state(publisher)
}

fn der(content_type: &'static str, body: Vec<u8>, max_age: i64) -> Response {
    let mut r = (StatusCode::OK, body).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(&if max_age > 0 {
        format!("max-age={max_age}, public, no-transform, must-revalidate")
    } else {
        "no-cache".to_string()
    }) {
        h.insert(header::CACHE_CONTROL, v);
    }
    r
}

fn unavailable(what: &str) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, "5")],
        format!("{what} is not available right now; try again shortly\n"),
    )
        .into_response()
}

async fn crl(State(p): State<Arc<Publisher>>) -> Response {
    match p.crl().await {
        // Caches may keep it briefly: a revocation must show within seconds.
        Ok(body) => der("application/pkix-crl", body, 60),
        Err(e) => {
            tracing::warn!("serving the CRL: {e}");
            unavailable("the CRL")
        }
    }
}

async fn ca_certificate(State(p): State<Arc<Publisher>>) -> Response {
    der("application/pkix-cert", p.issuing_ca().to_vec(), 3600)
}

fn ocsp_response(a: OcspAnswer) -> Response {
    der(
        "application/ocsp-response",
        a.der.as_ref().clone(),
        a.max_age,
    )
}

async fn ocsp_post(State(p): State<Arc<Publisher>>, headers: HeaderMap, body: Bytes) -> Response {
    let ok_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("application/ocsp-request")
        })
        .unwrap_or(false);
    if !ok_type {
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "an OCSP request is sent as application/ocsp-request\n",
        )
            .into_response();
    }
    if body.len() > MAX_OCSP_REQUEST {
        return (StatusCode::PAYLOAD_TOO_LARGE, "OCSP request too large\n").into_response();
    }
    ocsp_response(p.answer(&body).await)
}

async fn ocsp_get(State(p): State<Arc<Publisher>>, Path(request): Path<String>) -> Response {
    // The path is the URL-encoded base64 of the DER request (RFC 6960 A.1); axum has
    // already decoded the percent-escapes. Some clients send it unpadded or URL-safe.
    let text: String = request.chars().filter(|c| !c.is_whitespace()).collect();
    if text.len() > MAX_OCSP_REQUEST * 2 {
        return (StatusCode::URI_TOO_LONG, "OCSP request too large\n").into_response();
    }
    let standard = text.replace('-', "+").replace('_', "/");
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(&standard)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(&standard));
    match decoded {
        Ok(der) => ocsp_response(p.answer(&der).await),
        // A malformed request still gets an OCSP answer saying so (RFC 6960 §2.3).
        Err(_) => ocsp_response(p.answer(&[]).await),
    }
}
