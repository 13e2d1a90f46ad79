//! What an operator sees of the HTTPS listener: one access line per request (target
//! `estgate::access`), a request id on every request and response, and the liveness and
//! readiness probes.
//!
//! The access line names what was asked and how it ended, never what was sent: no header
//! value, no body, no query string. Email confirmation tokens travel in the query and
//! Basic passwords, access codes and `PKCS12-Password` in headers, so leaving those out
//! keeps every secret out of the log. The path itself is logged as its route template
//! (`/enroll/{ext}/confirm`), which also keeps the unguessable URI extensions out.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use estgate_protocol::path::{is_valid_label, Operation};

use super::{AppState, ConnInfo};

/// The tracing target of the access lines, for `ESTGATE_LOG` filters
/// (`estgate::access=warn` silences them).
pub const ACCESS: &str = "estgate::access";

pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The longest incoming `X-Request-Id` honoured; longer ones are replaced.
const MAX_INCOMING_ID: usize = 64;

/// The refusal sentence of a response (its error body's sentence), for the access line.
/// Set where error bodies are made (`problem.rs`, the form's error pages).
#[derive(Clone, Debug)]
pub struct Reason(pub String);

/// Attaches the refusal sentence `reason` to `resp` for the access line.
pub fn with_reason(mut resp: Response, reason: impl Into<String>) -> Response {
    resp.extensions_mut().insert(Reason(reason.into()));
    resp
}

/// The incoming `X-Request-Id` when it is short and made of `[A-Za-z0-9._-]` (a load
/// balancer's or a client's id, so one request can be followed through both logs), else a
/// new one. Anything else could smuggle a line break or markup into the log and pages.
fn request_id(incoming: Option<&HeaderValue>) -> (Arc<str>, HeaderValue) {
    if let Some(v) = incoming {
        let b = v.as_bytes();
        if (1..=MAX_INCOMING_ID).contains(&b.len())
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
        {
            if let Ok(s) = v.to_str() {
                return (Arc::from(s), v.clone());
            }
        }
    }
    let id = new_request_id();
    let value = HeaderValue::from_str(&id).unwrap_or_else(|_| HeaderValue::from_static("-"));
    (id, value)
}

/// A process-random prefix and a counter: unique across processes sharing one log store
/// without a random draw per request.
fn new_request_id() -> Arc<str> {
    static PREFIX: OnceLock<String> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = PREFIX.get_or_init(|| crate::domain::generate_secret(10).expose().to_string());
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    Arc::from(format!("{prefix}-{n:x}"))
}

/// Copies the matched route template onto the response, where [`around`] finds it once
/// the handler has consumed the request. A layer of the routing router, so it runs after
/// routing.
pub async fn keep_matched_path(req: Request, next: Next) -> Response {
    let matched = req.extensions().get::<MatchedPath>().cloned();
    let mut resp = next.run(req).await;
    if let Some(m) = matched {
        resp.extensions_mut().insert(m);
    }
    resp
}

/// Answers `req` with `inner` under its request id, echoes the id in `X-Request-Id` and
/// writes the access line.
pub async fn around<F, Fut, E>(
    req: Request,
    metrics: Arc<crate::metrics::Metrics>,
    inner: F,
) -> Result<Response, E>
where
    F: FnOnce(Request) -> Fut,
    Fut: Future<Output = Result<Response, E>>,
{
    let started = Instant::now();
    let (id, id_value) = request_id(req.headers().get(&REQUEST_ID));
    let method = req.method().clone();
    let uri = req.uri().clone();
    let client = req.extensions().get::<ConnInfo>().map(|c| c.peer);
    let mut resp = crate::error::with_request_id(id.clone(), inner(req)).await?;
    resp.headers_mut().insert(REQUEST_ID.clone(), id_value);
    // Whole microseconds, so the line shows `1.234`, not a binary fraction's tail.
    let ms = started.elapsed().as_micros() as f64 / 1000.0;
    let status = resp.status();
    let route = resp
        .extensions()
        .get::<MatchedPath>()
        .map(MatchedPath::as_str);
    let parts = RouteParts::of(route, uri.path());
    metrics.request(route, parts.op, status.as_u16(), ms / 1000.0);
    // Without a route there is no template: the path, with long segments (URI extensions,
    // tokens mistyped into a path) left out.
    let path = route.is_none().then(|| loggable_path(uri.path()));
    let reason = (status.is_client_error() || status.is_server_error()).then(|| {
        resp.extensions()
            .get::<Reason>()
            .map(|r| r.0.as_str())
            .or(status.canonical_reason())
            .unwrap_or("")
    });
    macro_rules! access_line {
        ($level:ident) => {
            tracing::$level!(
                target: ACCESS,
                method = %method,
                route,
                path = path.as_deref(),
                status = status.as_u16(),
                duration_ms = ms,
                label = parts.label,
                op = parts.op,
                step = parts.step,
                client = client.map(tracing::field::display),
                request_id = &*id,
                reason,
                "request"
            )
        };
    }
    // Probes come every few seconds from every balancer: below INFO, so they do not bury
    // the requests people make.
    if matches!(route, Some("/healthz" | "/readyz")) {
        access_line!(debug);
    } else {
        access_line!(info);
    }
    Ok(resp)
}

/// The EST label and operation, or the form step, a request's route names.
#[derive(Default, Debug, PartialEq, Eq)]
struct RouteParts<'a> {
    label: Option<&'a str>,
    op: Option<&'static str>,
    step: Option<&'a str>,
}

impl<'a> RouteParts<'a> {
    /// Reads them off the path where the template has `{label}` and `{op}`; only a valid
    /// label and a known operation are taken (what else a client puts there is its own).
    fn of(template: Option<&'a str>, path: &'a str) -> RouteParts<'a> {
        let Some(template) = template else {
            return RouteParts::default();
        };
        if let Some(rest) = template.strip_prefix("/enroll/{ext}") {
            let step = rest.trim_start_matches('/');
            return RouteParts {
                step: Some(if step.is_empty() { "sign-in" } else { step }),
                ..RouteParts::default()
            };
        }
        let mut parts = RouteParts::default();
        if !template.contains("{op}") {
            return parts;
        }
        for (t, p) in template.split('/').zip(path.split('/')) {
            match t {
                "{label}" if is_valid_label(p) => parts.label = Some(p),
                "{op}" => parts.op = Operation::parse(p).map(Operation::as_str),
                _ => {}
            }
        }
        parts
    }
}

/// `path` with every segment longer than 16 characters shown as `…`, at most 200 bytes.
fn loggable_path(path: &str) -> Cow<'_, str> {
    const LONG: usize = 16;
    const MAX: usize = 200;
    if path.len() <= MAX && path.split('/').all(|s| s.len() <= LONG) {
        return Cow::Borrowed(path);
    }
    let mut out = String::with_capacity(path.len().min(MAX + 4));
    for (i, s) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        out.push_str(if s.len() > LONG { "…" } else { s });
        if out.len() > MAX {
            let mut end = MAX;
            while !out.is_char_boundary(end) {
                end -= 1;
            }
            out.truncate(end);
            out.push('…');
            break;
        }
    }
    Cow::Owned(out)
}

// ---- probes ---------------------------------------------------------------------------------

/// What `/readyz` asks of the composition root: whether everything the server needs answers.
/// `Err` carries the sentence naming what is not ready (sent to the prober, so no internal
/// detail) and the detail (logged).
pub trait Readiness: Send + Sync {
    fn check(&self) -> Pin<Box<dyn Future<Output = Result<(), NotReady>> + Send + '_>>;
}

#[derive(Debug)]
pub struct NotReady {
    pub reason: String,
    pub detail: String,
}

/// How long `/readyz` waits for an answer before it says the database does not answer.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

/// Liveness: the process accepts, routes and answers.
async fn healthz() -> Response {
    probe_answer(StatusCode::OK, "ok".into())
}

/// Readiness: the checks the composition root gave (database, migrations), each bounded.
async fn readyz(State(state): State<AppState>) -> Response {
    let Some(ready) = &state.readiness else {
        return probe_answer(StatusCode::OK, "ready".into());
    };
    let outcome = match tokio::time::timeout(PROBE_TIMEOUT, ready.check()).await {
        Ok(r) => r,
        Err(_) => Err(NotReady {
            reason: format!(
                "the database did not answer within {} s",
                PROBE_TIMEOUT.as_secs()
            ),
            detail: "probe timed out".into(),
        }),
    };
    match outcome {
        Ok(()) => probe_answer(StatusCode::OK, "ready".into()),
        Err(n) => {
            tracing::warn!(
                request_id = crate::error::request_id().as_deref(),
                "not ready: {}: {}",
                n.reason,
                n.detail
            );
            let sentence = format!("not ready: {}", n.reason);
            with_reason(
                probe_answer(StatusCode::SERVICE_UNAVAILABLE, sentence.clone()),
                sentence,
            )
        }
    }
}

fn probe_answer(status: StatusCode, text: String) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        format!("{text}\n"),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_short_safe_incoming_ids_are_kept() {
        for good in ["abc", "lb-1.2_3", &"a".repeat(64)] {
            let (id, v) = request_id(Some(&HeaderValue::from_str(good).unwrap()));
            assert_eq!((&*id, v.to_str().unwrap()), (good, good));
        }
        for bad in ["", "a b", "a\tb", "<script>", &"a".repeat(65), "ä"] {
            let v = HeaderValue::from_bytes(bad.as_bytes()).unwrap();
            let (id, _) = request_id(Some(&v));
            assert_ne!(&*id, bad);
            assert!(id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
        }
        let (a, _) = request_id(None);
        let (b, _) = request_id(None);
        assert_ne!(a, b);
    }

    #[test]
    fn route_parts_take_only_valid_labels_and_known_operations() {
        let est = Some("/.well-known/est/{label}/{op}");
        assert_eq!(
            RouteParts::of(est, "/.well-known/est/staff/simpleenroll"),
            RouteParts {
                label: Some("staff"),
                op: Some("simpleenroll"),
                step: None
            }
        );
        assert_eq!(
            RouteParts::of(est, "/.well-known/est/Bad%0A/nope"),
            RouteParts::default()
        );
        assert_eq!(
            RouteParts::of(
                Some("/{label}/.well-known/est/{op}"),
                "/devices/.well-known/est/cacerts"
            ),
            RouteParts {
                label: Some("devices"),
                op: Some("cacerts"),
                step: None
            }
        );
        assert_eq!(
            RouteParts::of(Some("/enroll/{ext}"), "/enroll/x").step,
            Some("sign-in")
        );
        assert_eq!(
            RouteParts::of(Some("/enroll/{ext}/account/code"), "/enroll/x/account/code").step,
            Some("account/code")
        );
        assert_eq!(
            RouteParts::of(Some("/api/v1/persons"), "/api/v1/persons"),
            RouteParts::default()
        );
    }

    #[test]
    fn unmatched_paths_lose_long_segments() {
        assert_eq!(loggable_path("/wp-login.php"), "/wp-login.php");
        assert_eq!(
            loggable_path("/enroll/Ab3dEf6hIj9kLm2nOp5q/nothing"),
            "/enroll/…/nothing"
        );
        let long = "/a".repeat(300);
        assert!(loggable_path(&long).len() <= 204);
    }
}
