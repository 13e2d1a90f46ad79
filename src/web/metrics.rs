//! `GET /metrics`: the Prometheus text exposition, behind a bearer token (config
//! `metrics_token`). Without a token configured the path is not served at all (404, as any
//! unknown path); a missing or wrong token gets 401 and nothing else. The figures come from
//! one RA verb, so this front end reaches no store.

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use subtle::ConstantTimeEq;

use super::{problem, AppState};
use crate::error::Error;

/// The media type Prometheus scrapes (text exposition format 0.0.4).
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

pub fn routes() -> Router<AppState> {
    Router::new().route("/metrics", get(metrics))
}

async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Some(token) = &state.metrics_token else {
        return super::not_found(axum::http::Uri::from_static("/metrics")).await;
    };
    if !bearer_matches(&headers, token.expose()) {
        let e = Error::unauthorized("/metrics needs the bearer token configured as metrics_token");
        let mut resp = problem::est(&e);
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"estgate metrics\""),
        );
        return resp;
    }
    match state.ra.metrics_text().await {
        Ok(text) => (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE)),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            ],
            text,
        )
            .into_response(),
        Err(e) => problem::est(&e),
    }
}

/// Whether `Authorization: Bearer <token>` names `expected`. Both sides are hashed first and
/// compared in constant time, so neither the token's content nor its length leaks through
/// timing.
fn bearer_matches(headers: &HeaderMap, expected: &str) -> bool {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return false;
    };
    let Some((scheme, given)) = value.as_bytes().split_first_chunk::<7>() else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return false;
    }
    let digest = |b: &[u8]| aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b);
    digest(given.trim_ascii())
        .as_ref()
        .ct_eq(digest(expected.as_bytes()).as_ref())
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_auth(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn only_the_configured_bearer_token_is_accepted() {
        let t = "0123456789abcdef-token";
        assert!(bearer_matches(&with_auth(&format!("Bearer {t}")), t));
        assert!(bearer_matches(&with_auth(&format!("bearer {t}")), t));
        assert!(!bearer_matches(&with_auth(&format!("Bearer {t}x")), t));
        assert!(!bearer_matches(&with_auth(&format!("Basic {t}")), t));
        assert!(!bearer_matches(&with_auth("Bearer"), t));
        assert!(!bearer_matches(&HeaderMap::new(), t));
    }
}
