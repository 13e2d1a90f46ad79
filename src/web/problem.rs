//! The one place that knows HTTP statuses: `ErrorKind` → status, headers and body.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::error::{Error, ErrorKind};

pub const REALM: &str = "Basic realm=\"estgate\"";

pub fn status(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::Malformed | ErrorKind::BadCsr => StatusCode::BAD_REQUEST,
        ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorKind::Forbidden => StatusCode::FORBIDDEN,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::AlreadyUsed => StatusCode::CONFLICT,
        ErrorKind::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
        ErrorKind::Expired => StatusCode::GONE,
        ErrorKind::Pending { .. } => StatusCode::ACCEPTED,
        ErrorKind::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ErrorKind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::NotImplemented => StatusCode::NOT_IMPLEMENTED,
        ErrorKind::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// `Retry-After` (seconds) for the kinds that have one.
pub fn retry_after(resp: &mut Response, kind: ErrorKind) {
    if let ErrorKind::Pending { retry_after }
    | ErrorKind::RateLimited { retry_after }
    | ErrorKind::Unavailable { retry_after } = kind
    {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
    }
}

/// The reference an error body names: the request's id, which its access line carries
/// (none outside a request). An internal error's sentence already names it.
pub fn reference(err: &Error) -> Option<std::sync::Arc<str>> {
    crate::error::request_id().filter(|id| !err.message.contains(&**id))
}

/// EST answers errors in `text/plain` (RFC 7030 §4.2.3 leaves the body to the server; a
/// human-readable line is what curl users and client logs show), on one line with the
/// reference an operator greps the log for.
pub fn est(err: &Error) -> Response {
    let body = match reference(err) {
        Some(id) => format!("{} (reference {id})\n", err.message),
        None => format!("{}\n", err.message),
    };
    let mut resp = (
        status(err.kind),
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response();
    resp.extensions_mut()
        .insert(super::observe::Reason(err.message.clone()));
    if err.kind == ErrorKind::Unauthorized {
        resp.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(REALM));
    }
    retry_after(&mut resp, err.kind);
    resp
}

/// Why an admin API request was refused (403/404), for the audit of the refusal.
#[derive(Clone, Debug)]
pub struct Refused(pub String);

/// The admin API answers errors as RFC 9457 problem documents, naming the field at fault.
pub fn admin(err: &Error) -> Response {
    let status = status(err.kind);
    let mut body = serde_json::json!({
        "type": "about:blank",
        "title": status.canonical_reason().unwrap_or("Error"),
        "status": status.as_u16(),
        "detail": err.message,
    });
    if let Some(f) = &err.field {
        body["field"] = serde_json::Value::String(f.clone());
    }
    if let Some(id) = crate::error::request_id() {
        body["reference"] = serde_json::Value::String(id.to_string());
    }
    let mut resp = (
        status,
        [(header::CONTENT_TYPE, "application/problem+json")],
        body.to_string(),
    )
        .into_response();
    if err.kind == ErrorKind::Unauthorized {
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"estgate-admin\""),
        );
    }
    if matches!(err.kind, ErrorKind::Forbidden | ErrorKind::NotFound) {
        resp.extensions_mut().insert(Refused(err.message.clone()));
    }
    resp.extensions_mut()
        .insert(super::observe::Reason(err.message.clone()));
    retry_after(&mut resp, err.kind);
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unauthorized_carries_the_basic_challenge() {
        let r = est(&Error::unauthorized("no"));
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(r.headers()[header::WWW_AUTHENTICATE], REALM);
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "text/plain; charset=utf-8"
        );
    }

    async fn body(r: Response) -> String {
        let bytes = http_body_util::BodyExt::collect(r.into_body())
            .await
            .unwrap()
            .to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn error_bodies_name_the_request_id_once() {
        let id: std::sync::Arc<str> = "req-7.a_b".into();
        let (plain, internal, api) = crate::error::with_request_id(id, async {
            (
                est(&Error::not_found("no such thing")),
                est(&Error::internal("disk on fire")),
                admin(&Error::forbidden("not yours")),
            )
        })
        .await;
        assert_eq!(body(plain).await, "no such thing (reference req-7.a_b)\n");
        assert_eq!(
            body(internal).await,
            "internal error (reference req-7.a_b)\n"
        );
        let json: serde_json::Value = serde_json::from_str(&body(api).await).unwrap();
        assert_eq!(json["reference"], "req-7.a_b");
        // Outside a request there is no id to name.
        assert_eq!(body(est(&Error::not_found("x"))).await, "x\n");
    }

    #[test]
    fn rate_limited_carries_retry_after_in_seconds() {
        let r = est(&Error::new(
            ErrorKind::RateLimited { retry_after: 42 },
            "slow down",
        ));
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers()[header::RETRY_AFTER], "42");
    }
}
