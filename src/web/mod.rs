//! All HTTP and TLS: the TLS accept loop (which records the peer's certificate), routing,
//! the EST front end and the browser self-enrollment form.

pub mod admin;
pub mod enroll;
pub mod est;
pub mod forwarded;
pub mod http;
pub mod limits;
pub mod metrics;
pub mod observe;
pub mod problem;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::server::WebPkiClientVerifier;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tower::ServiceExt;

use crate::ra::Ra;
use forwarded::TrustedProxies;
use limits::{Activity, Admission, Backoff, Bounded, Limits, MinRateBody, RateLimitedLog};

#[derive(Clone)]
pub struct AppState {
    pub ra: Ra,
    /// What `/readyz` checks beyond the process answering (the composition root's
    /// database probe); none answers ready.
    pub readiness: Option<Arc<dyn observe::Readiness>>,
    /// The bearer token `/metrics` asks for (config `metrics_token`); none: no `/metrics`.
    pub metrics_token: Option<Arc<crate::domain::Secret>>,
}

/// What the connection tells about the client: its address and, when it presented one
/// that chains to our root, its TLS client certificate.
#[derive(Clone, Debug)]
pub struct ConnInfo {
    /// The client's address, as audit `source` and the throttles key on it: the TCP peer,
    /// or behind a trusted proxy the address it forwarded (port 0 when it gave none).
    pub peer: SocketAddr,
    /// The TCP peer itself (the proxy, behind one), for connection logs.
    pub tcp_peer: SocketAddr,
    pub client_cert: Option<Vec<u8>>,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WebError {
    #[error("TLS certificate {path}: {message}")]
    Certificate { path: String, message: String },
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Every route, behind one step that drops empty path segments: strongSwan's `pki --est
/// --url https://host/.well-known/est/devices/` asks for `…/devices//simpleenroll`, and a
/// doubled slash names nothing else here. Unknown paths and methods get a sentence, never an
/// empty body. Every request gets an id and an access line (`observe`).
pub fn router(state: AppState) -> Router {
    let metrics = state.ra.metrics().clone();
    let routes = Router::new()
        .merge(admin::routes())
        .merge(est::routes())
        .merge(enroll::routes())
        .merge(observe::routes())
        .merge(metrics::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn(observe::keep_matched_path))
        .with_state(state);
    Router::new().fallback_service(tower::service_fn(move |req: Request| {
        let routes = routes.clone();
        let metrics = metrics.clone();
        observe::around(req, metrics, move |req| {
            routes.oneshot(without_empty_segments(req))
        })
    }))
}

/// The request with each run of `/` in its path made one (the query is kept).
fn without_empty_segments(mut req: Request) -> Request {
    let uri = req.uri();
    if !uri.path().contains("//") {
        return req;
    }
    let mut path = String::with_capacity(uri.path().len());
    for c in uri.path().chars() {
        if !(c == '/' && path.ends_with('/')) {
            path.push(c);
        }
    }
    let path_and_query = match uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path,
    };
    let mut parts = uri.clone().into_parts();
    match path_and_query.parse() {
        Ok(pq) => parts.path_and_query = Some(pq),
        // Cannot happen (only slashes were removed); route the request as it came.
        Err(_) => return req,
    }
    if let Ok(uri) = axum::http::Uri::from_parts(parts) {
        *req.uri_mut() = uri;
    }
    req
}

/// 404 for what no route serves: problem+json under the admin API, a plain sentence
/// elsewhere (EST clients log the body; RFC 7030 §4.2.3 leaves it to the server).
async fn not_found(uri: axum::http::Uri) -> axum::response::Response {
    let e = crate::error::Error::not_found(
        "nothing is served at this path (EST is at /.well-known/est/[<label>/]<operation>)",
    );
    if uri.path().starts_with("/api/") {
        problem::admin(&e)
    } else {
        problem::est(&e)
    }
}

/// 405 for a path served with other methods, as a plain sentence; axum adds the `Allow`
/// header.
async fn method_not_allowed(method: axum::http::Method) -> axum::response::Response {
    let e = crate::error::Error::malformed(format!("{method} is not allowed at this path"));
    let mut r = problem::est(&e);
    *r.status_mut() = axum::http::StatusCode::METHOD_NOT_ALLOWED;
    r
}

/// TLS 1.2 and 1.3 (libest's client speaks only 1.2), ALPN h2 and http/1.1, and an optional
/// client certificate that must chain to `client_roots` when presented.
pub fn tls_config(
    cert_path: &Path,
    key_path: &Path,
    client_roots: &[Vec<u8>],
) -> Result<Arc<ServerConfig>, WebError> {
    let bad = |message: String| WebError::Certificate {
        path: cert_path.display().to_string(),
        message,
    };
    let certs = CertificateDer::pem_file_iter(cert_path)
        .map_err(|e| bad(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(e.to_string()))?;
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| WebError::Certificate {
        path: key_path.display().to_string(),
        message: e.to_string(),
    })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    // The issuing CA is a trust anchor too: clients present only their leaf, and every
    // certificate we issue comes from it.
    let mut roots = rustls::RootCertStore::empty();
    for r in client_roots {
        roots.add(CertificateDer::from(r.clone()))?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| bad(e.to_string()))?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Accepts TLS connections until `shutdown` resolves, then stops accepting, lets the
/// requests in progress finish (at most [`limits::DRAIN`]) and returns. HTTP/1.1 responses
/// get Title-Case header names because libest's client compares them case-sensitively.
/// Every connection is held to `limits` (see that module), and one beyond a cap is closed
/// before its TLS handshake costs anything.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    app: Router,
    limits: Limits,
    proxies: TrustedProxies,
    metrics: Arc<crate::metrics::Metrics>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let admission = Admission::new(limits.clone(), metrics);
    let limits = Arc::new(limits);
    let proxies = Arc::new(proxies);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    let mut backoff = Backoff::new();
    let accept_errors = RateLimitedLog::new(Duration::from_secs(1));
    tokio::pin!(shutdown);
    loop {
        while connections.try_join_next().is_some() {}
        let (tcp, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => {
                    backoff.succeeded();
                    a
                }
                Err(e) => {
                    let wait = backoff.failed();
                    if let Some(suppressed) = accept_errors.ready() {
                        tracing::warn!(also_failed = suppressed, "accept failed: {e}; retrying in {wait:?}");
                    }
                    tokio::select! {
                        _ = &mut shutdown => break,
                        _ = tokio::time::sleep(wait) => continue,
                    }
                }
            },
        };
        let permit = match admission.admit(peer.ip(), proxies.trusts(peer.ip())) {
            Ok(p) => p,
            Err(why) => {
                admission.log_refusal(peer.ip(), why);
                drop(tcp);
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        connections.spawn(connection(
            tcp,
            peer,
            permit,
            acceptor.clone(),
            app.clone(),
            limits.clone(),
            proxies.clone(),
            stop_rx.clone(),
        ));
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let in_progress = connections.len();
    if in_progress > 0 {
        tracing::info!(
            connections = in_progress,
            "waiting for requests in progress"
        );
    }
    let drained = tokio::time::timeout(limits::DRAIN, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            connections = connections.len(),
            "requests still in progress after {:?} dropped",
            limits::DRAIN
        );
    }
}

/// One admitted connection: TLS handshake, then HTTP/1.1 or HTTP/2 under `limits`, until the
/// client leaves, a bound is missed, or the server stops (then gracefully: requests in
/// progress finish, no new ones are read).
#[allow(clippy::too_many_arguments)]
async fn connection(
    tcp: tokio::net::TcpStream,
    tcp_peer: SocketAddr,
    permit: limits::Permit,
    acceptor: tokio_rustls::TlsAcceptor,
    app: Router,
    limits: Arc<Limits>,
    proxies: Arc<TrustedProxies>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let _permit = permit;
    let peer = tcp_peer;
    let handshake = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp));
    let stream = tokio::select! {
        _ = stopped(&mut stop) => return,
        hs = handshake => match hs {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::debug!(%peer, "TLS handshake failed: {e}");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "TLS handshake timed out");
                return;
            }
        },
    };
    let client_cert = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.to_vec());
    let activity = Activity::new();
    let io = Bounded::new(ExactHeaderCase(stream), limits.clone(), activity.clone());
    let service = {
        let limits = limits.clone();
        hyper::service::service_fn(move |mut req: Request<hyper::body::Incoming>| {
            let in_flight = activity.begin();
            let info = ConnInfo {
                peer: proxies.client(tcp_peer, req.headers()),
                tcp_peer,
                client_cert: client_cert.clone(),
            };
            req.extensions_mut().insert(info);
            let too_slow = Arc::new(AtomicBool::new(false));
            let req =
                req.map(|b| axum::body::Body::new(MinRateBody::new(b, &limits, too_slow.clone())));
            let app = app.clone();
            async move {
                let resp = app.oneshot(req).await;
                drop(in_flight);
                if too_slow.load(Ordering::Relaxed) {
                    tracing::debug!(%tcp_peer, "request body too slow");
                    let mut slow = too_slow_response();
                    if let Some(id) = resp
                        .as_ref()
                        .ok()
                        .and_then(|r| r.headers().get(&observe::REQUEST_ID))
                    {
                        slow.headers_mut()
                            .insert(observe::REQUEST_ID.clone(), id.clone());
                    }
                    return Ok(slow);
                }
                resp
            }
        })
    };
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .title_case_headers(true)
        .timer(hyper_util::rt::TokioTimer::new())
        // `Bounded` enforces the head bound; hyper's own timer, which starts at the end of
        // the previous response, backs it up without cutting the idle bound short.
        .header_read_timeout(limits.idle + limits.headers);
    builder
        .http2()
        .timer(hyper_util::rt::TokioTimer::new())
        .max_concurrent_streams(limits::H2_MAX_CONCURRENT_STREAMS)
        .max_header_list_size(limits::H2_MAX_HEADER_LIST_SIZE)
        .max_pending_accept_reset_streams(limits::H2_MAX_PENDING_ACCEPT_RESET_STREAMS)
        .max_local_error_reset_streams(limits::H2_MAX_LOCAL_ERROR_RESET_STREAMS);
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let ended = tokio::select! {
        r = conn.as_mut() => r,
        _ = stopped(&mut stop) => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = ended {
        tracing::debug!(%peer, "connection ended: {e}");
    }
}

/// Resolves once the server stops (or its sender is gone).
async fn stopped(stop: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// `408` for a body slower than `body_min_rate`; the connection closes after it, since the
/// rest of that body may still be on its way.
fn too_slow_response() -> axum::response::Response {
    let mut resp = axum::response::Response::new(axum::body::Body::from(
        "the request body arrived too slowly\n",
    ));
    *resp.status_mut() = axum::http::StatusCode::REQUEST_TIMEOUT;
    let h = resp.headers_mut();
    h.insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(
        axum::http::header::CONNECTION,
        axum::http::HeaderValue::from_static("close"),
    );
    resp
}

/// hyper's title-casing writes `Www-Authenticate`, but libest's client looks for the exact
/// `WWW-Authenticate` (DESIGN.md wire rules). Rewrites that one header name in the bytes
/// written to the connection; the replacement has the same length, so the count written maps
/// one to one. A header block split across two partial writes is not rewritten (rustls
/// buffers whole writes, so this does not happen in practice).
struct ExactHeaderCase<S>(S);

const TITLE_CASED: &[u8] = b"\r\nWww-Authenticate:";
const EXACT: &[u8] = b"\r\nWWW-Authenticate:";

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for ExactHeaderCase<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for ExactHeaderCase<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match buf
            .windows(TITLE_CASED.len())
            .position(|w| w == TITLE_CASED)
        {
            Some(at) => {
                let mut fixed = buf.to_vec();
                fixed[at..at + EXACT.len()].copy_from_slice(EXACT);
                std::pin::Pin::new(&mut self.0).poll_write(cx, &fixed)
            }
            None => std::pin::Pin::new(&mut self.0).poll_write(cx, buf),
        }
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
