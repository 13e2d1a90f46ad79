//! Bounds on what one TCP connection may cost the server before it has said anything useful:
//! how many connections are admitted (in all and per client address), how long a connection
//! may stay silent or idle, how long a request head may take, how slowly a body may arrive,
//! and how the accept loop waits when the process runs out of file descriptors.
//!
//! The threats are the slow-client family (a handshake followed by silence, a body trickled a
//! byte at a time) and descriptor exhaustion: without these bounds a few hundred silent
//! connections made `cacerts` time out for everyone.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::metrics::Metrics;

/// The configured bounds (config keys in README's configuration section).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Connections held at once, all clients together.
    pub max_connections: usize,
    /// Connections held at once from one TCP peer address (trusted proxies are exempt).
    pub max_connections_per_address: usize,
    /// From the end of the TLS handshake to the first byte of the first request.
    pub first_byte: Duration,
    /// A kept-alive connection with no request in progress.
    pub idle: Duration,
    /// From the first byte of a request to the end of its head.
    pub headers: Duration,
    /// A body may take `body_grace` plus one second per `body_min_rate` bytes received.
    pub body_grace: Duration,
    /// Bytes per second a body must average after `body_grace`.
    pub body_min_rate: u64,
}

impl Default for Limits {
    /// 1024 connections fit the common file limit of 1024 only with the database and log
    /// descriptors counted, so a server meant for many clients raises both together; 64 per
    /// address leaves room for a NAT of devices while one host cannot take the whole server.
    fn default() -> Self {
        Limits {
            max_connections: 1024,
            max_connections_per_address: 64,
            first_byte: Duration::from_secs(10),
            idle: Duration::from_secs(60),
            headers: Duration::from_secs(10),
            body_grace: Duration::from_secs(10),
            body_min_rate: 256,
        }
    }
}

/// HTTP/2 bounds, fixed: streams per connection, the decoded header list (which also caps
/// what a CONTINUATION flood can make the decoder hold), and reset-flood counters (the
/// "rapid reset" and "made you reset" attacks).
pub const H2_MAX_CONCURRENT_STREAMS: u32 = 100;
/// hyper's server default as well (h2's own is 16 MiB); set here so that ours does not
/// depend on hyper's choice.
pub const H2_MAX_HEADER_LIST_SIZE: u32 = 16 * 1024;
/// Streams reset by the client before the server has taken them up, at once: in practice
/// HEADERS and RST_STREAM that arrive in one batch, which an honest client seldom sends even
/// once. Half of h2's default of 20, so that this line, not the library's default, is what
/// the rapid-reset test in tests/it/http2.rs proves.
pub const H2_MAX_PENDING_ACCEPT_RESET_STREAMS: usize = 10;
pub const H2_MAX_LOCAL_ERROR_RESET_STREAMS: usize = 256;

/// How long a stopping server waits for requests in progress before it drops them.
pub const DRAIN: Duration = Duration::from_secs(10);

/// Counts the connections held, in all and per TCP peer address.
#[derive(Debug)]
pub struct Admission {
    limits: Limits,
    metrics: Arc<Metrics>,
    held: Mutex<Held>,
    refused: RateLimitedLog,
}

#[derive(Debug, Default)]
struct Held {
    total: usize,
    per_address: HashMap<IpAddr, usize>,
}

/// Why a new connection was closed at once (counted in `/metrics` too).
pub use crate::metrics::ConnectionRefusal as Refusal;

impl Admission {
    pub fn new(limits: Limits, metrics: Arc<Metrics>) -> Arc<Admission> {
        Arc::new(Admission {
            limits,
            metrics,
            held: Mutex::new(Held::default()),
            refused: RateLimitedLog::new(Duration::from_secs(1)),
        })
    }

    /// Admits a connection from `peer`, or refuses it when a cap is reached. `exempt` skips
    /// the per-address cap: a trusted proxy carries many clients on its connections.
    pub fn admit(self: &Arc<Self>, peer: IpAddr, exempt: bool) -> Result<Permit, Refusal> {
        let peer = peer.to_canonical();
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        if held.total >= self.limits.max_connections {
            self.metrics.connection_refused(Refusal::Global);
            return Err(Refusal::Global);
        }
        if !exempt {
            let n = held.per_address.get(&peer).copied().unwrap_or(0);
            if n >= self.limits.max_connections_per_address {
                self.metrics.connection_refused(Refusal::PerAddress);
                return Err(Refusal::PerAddress);
            }
            *held.per_address.entry(peer).or_insert(0) += 1;
        }
        held.total += 1;
        self.metrics.connections_open(held.total);
        Ok(Permit {
            admission: self.clone(),
            peer: (!exempt).then_some(peer),
        })
    }

    /// Logs a refusal, at most once a second with the count since the last line: a flood
    /// of refused connections must not become a flood of log lines.
    pub fn log_refusal(&self, peer: IpAddr, why: Refusal) {
        if let Some(suppressed) = self.refused.ready() {
            let cap = why.cap();
            tracing::warn!(%peer, cap, also_refused = suppressed, "connection refused: {cap} reached");
        }
    }

    /// Connections held now.
    pub fn held(&self) -> usize {
        self.held.lock().unwrap_or_else(|p| p.into_inner()).total
    }
}

/// One admitted connection; dropping it gives the place back.
#[derive(Debug)]
pub struct Permit {
    admission: Arc<Admission>,
    peer: Option<IpAddr>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut held = self
            .admission
            .held
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        held.total = held.total.saturating_sub(1);
        self.admission.metrics.connections_open(held.total);
        if let Some(peer) = self.peer {
            if let Some(n) = held.per_address.get_mut(&peer) {
                *n -= 1;
                if *n == 0 {
                    held.per_address.remove(&peer);
                }
            }
        }
    }
}

/// Lets one line through per `every`, and counts the ones held back.
#[derive(Debug)]
pub struct RateLimitedLog {
    every: Duration,
    last: Mutex<Option<Instant>>,
    suppressed: AtomicU64,
}

impl RateLimitedLog {
    pub fn new(every: Duration) -> RateLimitedLog {
        RateLimitedLog {
            every,
            last: Mutex::new(None),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(lines held back since the last one)` when a line may be written now.
    pub fn ready(&self) -> Option<u64> {
        let now = Instant::now();
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        match *last {
            Some(t) if now.duration_since(t) < self.every => {
                self.suppressed.fetch_add(1, Ordering::Relaxed);
                None
            }
            _ => {
                *last = Some(now);
                Some(self.suppressed.swap(0, Ordering::Relaxed))
            }
        }
    }
}

/// The accept loop's wait after a failed `accept` (EMFILE, ENFILE, ENOBUFS): the error
/// persists until connections close, so retrying at once only spins and floods the log.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
}

impl Backoff {
    pub const FIRST: Duration = Duration::from_millis(10);
    pub const MAX: Duration = Duration::from_secs(1);

    pub fn new() -> Backoff {
        Backoff { next: Self::FIRST }
    }

    /// The wait after one more failure in a row: 10 ms, doubling, at most 1 s.
    pub fn failed(&mut self) -> Duration {
        let wait = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        wait
    }

    pub fn succeeded(&mut self) {
        self.next = Self::FIRST;
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new()
    }
}

/// What one connection's requests tell its I/O bounds: whether a request is in progress, and
/// since when it has had none.
#[derive(Debug)]
pub struct Activity {
    state: Mutex<ActivityState>,
}

#[derive(Debug)]
struct ActivityState {
    in_flight: usize,
    idle_since: Instant,
    served: u64,
}

impl Activity {
    pub fn new() -> Arc<Activity> {
        Arc::new(Activity {
            state: Mutex::new(ActivityState {
                in_flight: 0,
                idle_since: Instant::now(),
                served: 0,
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ActivityState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A request's head has been read; the returned guard ends it when dropped (response
    /// produced, or the stream reset).
    pub fn begin(self: &Arc<Self>) -> InFlight {
        let mut s = self.lock();
        s.in_flight += 1;
        s.served += 1;
        InFlight(self.clone())
    }
}

pub struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut s = self.0.lock();
        s.in_flight = s.in_flight.saturating_sub(1);
        if s.in_flight == 0 {
            s.idle_since = Instant::now();
        }
    }
}

/// The connection's I/O with the time bounds of [`Limits`] that hyper does not give on its
/// own (the auto builder's protocol sniffing reads the first bytes with no timeout, and
/// HTTP/2 has no idle bound). While no request is in progress a read must come by:
/// `first_byte` after the handshake, `idle` after the last response; once bytes of a new
/// request (or any HTTP/2 frame) have come, its head must be complete within `headers`.
/// A write that makes no progress for `idle` ends the connection too (a client that never
/// reads its responses). A missed bound is an I/O error, which ends the connection.
pub struct Bounded<S> {
    inner: S,
    limits: Arc<Limits>,
    activity: Arc<Activity>,
    /// When bytes first came while no request was in progress, and the idle period they
    /// ended (a later idle period starts afresh).
    head_started: Option<(Instant, Instant)>,
    read_timer: Pin<Box<Sleep>>,
    write_stalled: Option<Instant>,
    write_timer: Pin<Box<Sleep>>,
}

impl<S> Bounded<S> {
    pub fn new(inner: S, limits: Arc<Limits>, activity: Arc<Activity>) -> Bounded<S> {
        let now = Instant::now();
        Bounded {
            inner,
            limits,
            activity,
            head_started: None,
            read_timer: Box::pin(tokio::time::sleep_until(now)),
            write_stalled: None,
            write_timer: Box::pin(tokio::time::sleep_until(now)),
        }
    }

    /// The read deadline now, or none while a request is in progress (its body has its own
    /// bound, [`MinRateBody`], and handlers their own).
    fn read_deadline(&self) -> Option<Instant> {
        let s = self.activity.lock();
        if s.in_flight > 0 {
            return None;
        }
        match self.head_started {
            Some((at, idle_since)) if idle_since == s.idle_since => Some(at + self.limits.headers),
            _ if s.served == 0 => Some(s.idle_since + self.limits.first_byte),
            _ => Some(s.idle_since + self.limits.idle),
        }
    }

    fn note_read(&mut self) {
        let s = self.activity.lock();
        if s.in_flight == 0 && self.head_started.map(|(_, i)| i) != Some(s.idle_since) {
            self.head_started = Some((Instant::now(), s.idle_since));
        }
    }
}

fn timed_out(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::TimedOut, format!("{what} timed out"))
}

impl<S: AsyncRead + Unpin> AsyncRead for Bounded<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    self.note_read();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                let Some(deadline) = self.read_deadline() else {
                    return Poll::Pending;
                };
                if self.read_timer.deadline() != deadline {
                    self.read_timer.as_mut().reset(deadline);
                }
                match self.read_timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(timed_out("waiting for the client"))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> Bounded<S> {
    fn write_progress<T>(
        &mut self,
        cx: &mut Context<'_>,
        r: Poll<std::io::Result<T>>,
    ) -> Poll<std::io::Result<T>> {
        match r {
            Poll::Pending => {
                let since = *self.write_stalled.get_or_insert_with(Instant::now);
                let deadline = since + self.limits.idle;
                if self.write_timer.deadline() != deadline {
                    self.write_timer.as_mut().reset(deadline);
                }
                match self.write_timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(timed_out("writing to the client"))),
                    Poll::Pending => Poll::Pending,
                }
            }
            ready => {
                self.write_stalled = None;
                ready
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Bounded<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.write_progress(cx, r)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        self.write_progress(cx, r)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.write_progress(cx, r)
    }
}

/// A request body that must arrive at an average of `body_min_rate` bytes a second after
/// `body_grace`; slower, it ends in an error and sets `too_slow`, which the connection's
/// service turns into `408`.
pub struct MinRateBody<B> {
    inner: B,
    started: Instant,
    received: u64,
    grace: Duration,
    rate: u64,
    timer: Pin<Box<Sleep>>,
    too_slow: Arc<AtomicBool>,
}

impl<B> MinRateBody<B> {
    pub fn new(inner: B, limits: &Limits, too_slow: Arc<AtomicBool>) -> MinRateBody<B> {
        let started = Instant::now();
        MinRateBody {
            inner,
            started,
            received: 0,
            grace: limits.body_grace,
            rate: limits.body_min_rate.max(1),
            timer: Box::pin(tokio::time::sleep_until(started + limits.body_grace)),
            too_slow,
        }
    }

    fn deadline(&self) -> Instant {
        let earned = Duration::from_secs_f64(self.received as f64 / self.rate as f64);
        self.started + self.grace + earned
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the request body arrived too slowly")]
pub struct TooSlow;

impl<B> Body for MinRateBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.received += data.len() as u64;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let deadline = self.deadline();
                if self.timer.deadline() != deadline {
                    self.timer.as_mut().reset(deadline);
                }
                match self.timer.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        self.too_slow.store(true, Ordering::Relaxed);
                        Poll::Ready(Some(Err(Box::new(TooSlow))))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_backoff_doubles_from_10ms_to_1s_and_resets() {
        let mut b = Backoff::new();
        let waits: Vec<u128> = (0..10).map(|_| b.failed().as_millis()).collect();
        assert_eq!(waits, [10, 20, 40, 80, 160, 320, 640, 1000, 1000, 1000]);
        b.succeeded();
        assert_eq!(b.failed(), Duration::from_millis(10));
    }

    #[test]
    fn refusal_log_lets_one_line_a_period_through_and_counts_the_rest() {
        let log = RateLimitedLog::new(Duration::from_secs(3600));
        assert_eq!(log.ready(), Some(0));
        for _ in 0..5 {
            assert_eq!(log.ready(), None);
        }
        let log = RateLimitedLog::new(Duration::from_millis(20));
        assert_eq!(log.ready(), Some(0));
        assert_eq!(log.ready(), None);
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(log.ready(), Some(1));
    }

    #[test]
    fn caps_hold_globally_and_per_address_and_free_on_drop() {
        let a = Admission::new(
            Limits {
                max_connections: 3,
                max_connections_per_address: 2,
                ..Limits::default()
            },
            Metrics::new(),
        );
        let one: IpAddr = "192.0.2.1".parse().unwrap();
        let two: IpAddr = "192.0.2.2".parse().unwrap();
        let p1 = a.admit(one, false).unwrap();
        let _p2 = a.admit(one, false).unwrap();
        assert_eq!(a.admit(one, false).unwrap_err(), Refusal::PerAddress);
        // The same address written as IPv4-mapped IPv6 is the same client.
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(a.admit(mapped, false).unwrap_err(), Refusal::PerAddress);
        let _p3 = a.admit(two, false).unwrap();
        assert_eq!(a.admit(two, false).unwrap_err(), Refusal::Global);
        drop(p1);
        assert_eq!(a.held(), 2);
        let _p4 = a.admit(one, false).unwrap();
        // A trusted proxy skips the per-address cap but not the global one.
        assert_eq!(a.admit(one, true).unwrap_err(), Refusal::Global);
    }
}
