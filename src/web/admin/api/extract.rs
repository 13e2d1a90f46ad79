//! Extractors: the authenticated administrator (`AdminCaller`), a JSON body that names the
//! field at fault (`ApiJson`), and `If-Match` (`IfMatch`).

use std::sync::{Arc, OnceLock};

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use http_body_util::BodyExt;
use serde::de::DeserializeOwned;

use super::{ApiError, MAX_JSON};
use crate::domain::{generate_secret, Secret};
use crate::error::{Error, ErrorKind};
use crate::ra::admin::Caller;
use crate::web::{AppState, ConnInfo};

/// The request id: the client's `X-Request-Id` when it is a sane token, else a new one.
pub fn request_id(headers: &HeaderMap) -> String {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        })
        .map(str::to_string)
        .unwrap_or_else(|| generate_secret(16).expose().to_string())
}

/// The client's address as the audit trail records it.
pub fn source(parts: &Parts) -> String {
    parts
        .extensions
        .get::<ConnInfo>()
        .map(|c| c.peer.to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// The bearer token of `Authorization`, if any.
pub fn bearer(headers: &HeaderMap) -> Option<Secret> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| Secret::new(token.trim()))
}

/// The administrator making this request.
pub struct AdminCaller(pub Caller);

/// Where `AdminCaller` leaves the authenticated caller (and the RA it used) for the layer
/// that audits refused requests (`mod.rs`: `audit_refusals`).
#[derive(Clone, Default)]
pub struct CallerSlot(pub Arc<OnceLock<(Caller, crate::ra::Ra)>>);

impl FromRequestParts<AppState> for AdminCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(&parts.headers).ok_or_else(|| {
            Error::unauthorized(
                "authenticate with Authorization: Bearer <API key or session token>",
            )
        })?;
        let caller = state
            .ra
            .authenticate_admin(&token, &source(parts), Some(request_id(&parts.headers)))
            .await?;
        if let Some(slot) = parts.extensions.get::<CallerSlot>() {
            let _ = slot.0.set((caller.clone(), state.ra.clone()));
        }
        Ok(AdminCaller(caller))
    }
}

/// Query-string filters, refused as JSON bodies are: the parameter at fault named, an
/// unknown value answered with the allowed ones.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::try_from_uri(&parts.uri) {
            Ok(q) => Ok(ApiQuery(q.0)),
            Err(rejection) => {
                let text = rejection.body_text();
                let detail = text
                    .strip_prefix("Failed to deserialize query string: ")
                    .unwrap_or(&text)
                    .to_string();
                let err = Error::malformed(format!("invalid query: {detail}"));
                // axum says "<parameter>: <reason>", or names an unknown one in its reason.
                let field = match detail.split_once(": ") {
                    Some((f, _)) if !f.contains(' ') => Some(f.to_string()),
                    _ => detail
                        .strip_prefix("unknown field `")
                        .and_then(|r| r.split('`').next())
                        .map(str::to_string),
                };
                Err(ApiError(match field {
                    Some(f) => err.at(f),
                    None => err,
                }))
            }
        }
    }
}

/// `If-Match: "v<version>"`, when sent.
pub struct IfMatch(pub Option<i64>);

impl<S: Send + Sync> FromRequestParts<S> for IfMatch {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let Some(v) = parts.headers.get(header::IF_MATCH) else {
            return Ok(IfMatch(None));
        };
        let bad = || {
            ApiError(Error::invalid(
                "If-Match",
                "If-Match must be an ETag this API gave, such as \"v3\"",
            ))
        };
        let text = v.to_str().map_err(|_| bad())?.trim();
        let text = text.strip_prefix("W/").unwrap_or(text);
        let version = text
            .strip_prefix("\"v")
            .and_then(|t| t.strip_suffix('"'))
            .and_then(|t| t.parse().ok())
            .ok_or_else(bad)?;
        Ok(IfMatch(Some(version)))
    }
}

/// A JSON body: `application/json` only, at most `MAX_JSON` bytes, unknown fields and wrong
/// types refused with the path of the field at fault. The second field is the body's
/// SHA-256, for `Idempotency-Key`.
pub struct ApiJson<T>(pub T, pub String);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _: &S) -> Result<Self, ApiError> {
        let bytes = body_bytes(req, "application/json", MAX_JSON).await?;
        Ok(ApiJson(parse_json(&bytes)?, crate::ra::sha256_hex(&bytes)))
    }
}

/// Reads a body of media type `media` up to `limit` bytes.
pub async fn body_bytes(req: Request, media: &str, limit: usize) -> Result<Vec<u8>, Error> {
    let ct = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = ct.split(';').next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case(media) {
        return Err(Error::new(
            ErrorKind::UnsupportedMediaType,
            format!("send the body as {media}"),
        ));
    }
    let limited = http_body_util::Limited::new(req.into_body(), limit);
    match limited.collect().await {
        Ok(c) => Ok(c.to_bytes().to_vec()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(Error::new(
            ErrorKind::PayloadTooLarge,
            format!("the body is larger than {limit} bytes"),
        )),
        Err(_) => Err(Error::malformed("the body could not be read")),
    }
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let err = Error::malformed(format!("invalid JSON body: {inner}"));
        if path == "." || path.is_empty() {
            // serde names an unknown or missing field in its message, not in the path.
            match field_in_message(&inner.to_string()) {
                Some(f) => err.at(f),
                None => err,
            }
        } else {
            err.at(path)
        }
    })
}

/// "unknown field `x`" / "missing field `x`" → `x`.
fn field_in_message(m: &str) -> Option<String> {
    let rest = m
        .strip_prefix("unknown field `")
        .or_else(|| m.strip_prefix("missing field `"))?;
    rest.split('`').next().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        inner: Option<Inner>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        count: u32,
    }

    #[test]
    fn json_errors_name_the_field() {
        let e = parse_json::<Body>(br#"{"name": 5}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("name"));
        let e = parse_json::<Body>(br#"{"name": "a", "inner": {"count": "x"}}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("inner.count"));
        let e = parse_json::<Body>(br#"{"name": "a", "colour": 1}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("colour"));
        assert!(e.message.contains("unknown field"), "{}", e.message);
        let e = parse_json::<Body>(br#"{}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("name"));
        assert!(parse_json::<Body>(b"{").is_err());
    }
}
