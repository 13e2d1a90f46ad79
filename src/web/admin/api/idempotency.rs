//! `Idempotency-Key` on POSTs that create, issue or revoke: the first request with a key
//! runs and its answer is kept (24 hours); a retry with the same key and the same request
//! gets that answer again without running twice. The same key with a different request is
//! refused, and so is a retry while the first is still running.
//!
//! Secrets shown once (a secret ID, an access code, an API key, a TOTP secret) are not
//! kept: a replayed answer says they were shown, instead of showing them again.

use axum::body::Body;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;

use super::ApiError;
use crate::error::{Error, ErrorKind};
use crate::ra::admin::{Caller, IdempotentStart};
use crate::web::{problem, AppState};

/// Fields of an answer that hold a secret shown once.
const SHOWN_ONCE: &[&str] = &[
    "secret_id",
    "access_code",
    "token",
    "totp_secret",
    "totp_uri",
];

/// The request's `Idempotency-Key`, when it sent one.
pub struct IdempotencyKey(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let Some(v) = parts.headers.get("idempotency-key") else {
            return Ok(IdempotencyKey(None));
        };
        match v.to_str() {
            Ok(k) if !k.trim().is_empty() && k.len() <= 255 => {
                Ok(IdempotencyKey(Some(k.trim().to_string())))
            }
            _ => Err(ApiError(Error::invalid(
                "Idempotency-Key",
                "Idempotency-Key must be 1 to 255 visible ASCII characters",
            ))),
        }
    }
}

fn redact(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, val) in map.iter_mut() {
                if SHOWN_ONCE.contains(&k.as_str()) && !val.is_null() {
                    *val = serde_json::Value::String(
                        "(shown once in the first answer; not repeated)".into(),
                    );
                } else {
                    redact(val);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

/// Runs `run` at most once per (caller, key); `what` names the request (method and path)
/// and `digest` its body.
pub async fn once(
    state: &AppState,
    caller: &Caller,
    key: IdempotencyKey,
    what: &str,
    digest: &str,
    run: impl std::future::Future<Output = Response>,
) -> Response {
    let Some(key) = key.0 else {
        return run.await;
    };
    let request = crate::ra::sha256_hex(format!("{what}\n{digest}").as_bytes());
    match state.ra.begin_idempotent(caller, &key, &request).await {
        Err(e) => problem::admin(&e),
        Ok(IdempotentStart::Mismatch) => problem::admin(&Error::invalid(
            "Idempotency-Key",
            "this Idempotency-Key was used for a different request",
        )),
        Ok(IdempotentStart::InFlight) => problem::admin(&Error::new(
            ErrorKind::AlreadyUsed,
            "a request with this Idempotency-Key is still running; retry shortly",
        )),
        Ok(IdempotentStart::Replay { status, body }) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            let media = if status.is_success() {
                "application/json"
            } else {
                "application/problem+json"
            };
            let mut resp = (status, [(header::CONTENT_TYPE, media)], body).into_response();
            resp.headers_mut()
                .insert("idempotent-replayed", HeaderValue::from_static("true"));
            resp
        }
        Ok(IdempotentStart::New) => {
            let resp = run.await;
            let (parts, body) = resp.into_parts();
            let bytes = match body.collect().await {
                Ok(b) => b.to_bytes(),
                Err(_) => {
                    let _ = state.ra.finish_idempotent(caller, &key, None).await;
                    return problem::admin(&Error::internal("answer body unreadable"));
                }
            };
            // A server error may go away: let a retry run again.
            let kept = if parts.status.is_server_error() {
                None
            } else {
                let mut v: serde_json::Value =
                    serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
                redact(&mut v);
                Some((parts.status.as_u16(), v.to_string()))
            };
            if let Err(e) = state
                .ra
                .finish_idempotent(caller, &key, kept.as_ref().map(|(s, b)| (*s, b.as_str())))
                .await
            {
                tracing::warn!("idempotency record not kept: {}", e.message);
            }
            Response::from_parts(parts, Body::from(bytes))
        }
    }
}
