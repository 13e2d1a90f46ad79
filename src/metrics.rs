//! The figures one process keeps for the operator's Prometheus: request latency by route,
//! operation and status, certificates issued by account and profile, guesses and
//! connections refused, mail sent and failed. `web/metrics.rs` serves them with what is
//! read at scrape time (group commits, the database pool, the outbox).
//!
//! One `Metrics` per running server (the composition root makes it), so several servers in
//! one test process keep their own. Recording is a few atomic adds, and one uncontended lock
//! for the figures kept per label set.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Latency bounds in seconds: from a cached `cacerts` to a slow mail-bound form step.
pub const LATENCY_BOUNDS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Group-commit batch sizes (issuances per transaction), up to the batch cap of 256.
pub const BATCH_SIZE_BOUNDS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

/// A Prometheus histogram over fixed bounds, lock-free.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// Observations at most each bound (not cumulative; summed when rendered).
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    /// The sum in millionths, so it fits an atomic integer.
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            buckets: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, value: f64) {
        if let Some(i) = self.bounds.iter().position(|b| value <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let micros = (value.max(0.0) * 1e6).round() as u64;
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// The `_bucket`, `_sum` and `_count` lines of this histogram under `labels` (already
    /// rendered as `k="v",…`, or empty).
    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (bound, n) in self.bounds.iter().zip(self.buckets.iter()) {
            cumulative += n.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}"
            );
        }
        let count = self.count();
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let braces = |s: &str| {
            if s.is_empty() {
                String::new()
            } else {
                format!("{{{s}}}")
            }
        };
        let _ = writeln!(out, "{name}_sum{} {sum}", braces(labels));
        let _ = writeln!(out, "{name}_count{} {count}", braces(labels));
    }
}

/// Why a guess was refused before it was checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuessRefusal {
    /// 429: a throttle key (the name, the client address, the account) is at its limit.
    Locked,
    /// 503: every Argon2 slot and the queue in front of them were taken.
    Busy,
    /// 429: too many confirmation emails to one address or from one client.
    Mail,
}

impl GuessRefusal {
    const ALL: [GuessRefusal; 3] = [GuessRefusal::Locked, GuessRefusal::Busy, GuessRefusal::Mail];

    fn as_str(self) -> &'static str {
        match self {
            GuessRefusal::Locked => "locked",
            GuessRefusal::Busy => "busy",
            GuessRefusal::Mail => "mail",
        }
    }
}

/// Why a new connection was closed at once (the caps of `web/limits.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionRefusal {
    Global,
    PerAddress,
}

impl ConnectionRefusal {
    const ALL: [ConnectionRefusal; 2] = [ConnectionRefusal::Global, ConnectionRefusal::PerAddress];

    /// The configuration key of the cap that was reached.
    pub fn cap(self) -> &'static str {
        match self {
            ConnectionRefusal::Global => "max_connections",
            ConnectionRefusal::PerAddress => "max_connections_per_address",
        }
    }
}

/// What became of one outbox message this process handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailOutcome {
    Sent,
    Failed,
    Dropped,
}

impl MailOutcome {
    const ALL: [MailOutcome; 3] = [MailOutcome::Sent, MailOutcome::Failed, MailOutcome::Dropped];

    fn as_str(self) -> &'static str {
        match self {
            MailOutcome::Sent => "sent",
            MailOutcome::Failed => "failed",
            MailOutcome::Dropped => "dropped",
        }
    }
}

/// Request latency per (operation, status), kept per route template.
type ByRoute = HashMap<Box<str>, HashMap<(&'static str, u16), Arc<Histogram>>>;

/// Certificates issued per (account name, profile name).
type ByAccountProfile = HashMap<(Box<str>, Box<str>), u64>;

#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<ByRoute>,
    issued: Mutex<ByAccountProfile>,
    guesses_refused: [AtomicU64; 3],
    connections_open: AtomicU64,
    connections_refused: [AtomicU64; 2],
    mail: [AtomicU64; 3],
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        Arc::new(Metrics::default())
    }

    /// One answered request: its route template (`None`: no route matched), its EST
    /// operation when it has one, its status and how long it took.
    pub fn request(&self, route: Option<&str>, op: Option<&'static str>, status: u16, secs: f64) {
        let route = route.unwrap_or("unmatched");
        let key = (op.unwrap_or(""), status);
        let mut map = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        let by_route = match map.get_mut(route) {
            Some(m) => m,
            None => map.entry(route.into()).or_default(),
        };
        by_route
            .entry(key)
            .or_insert_with(|| Arc::new(Histogram::new(LATENCY_BOUNDS)))
            .observe(secs);
    }

    /// A certificate issued (durably stored) on `account` under `profile`.
    pub fn issued(&self, account: &str, profile: &str) {
        let mut map = self.issued.lock().unwrap_or_else(|p| p.into_inner());
        *map.entry((account.into(), profile.into())).or_insert(0) += 1;
    }

    pub fn guess_refused(&self, why: GuessRefusal) {
        self.guesses_refused[why as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// The connections held now (set by the listener's admission under its lock).
    pub fn connections_open(&self, n: usize) {
        self.connections_open.store(n as u64, Ordering::Relaxed);
    }

    pub fn connection_refused(&self, why: ConnectionRefusal) {
        self.connections_refused[why as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn mail(&self, outcome: MailOutcome) {
        self.mail[outcome as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Appends every figure this process keeps, in the Prometheus text format.
    pub fn render(&self, out: &mut String) {
        let name = "estgate_http_request_duration_seconds";
        header(out, name, "histogram", "Time from a request's arrival to its answer, by route template, EST operation and status; _count counts the requests.");
        {
            let map = self.requests.lock().unwrap_or_else(|p| p.into_inner());
            let mut routes: Vec<_> = map.iter().collect();
            routes.sort_by(|a, b| a.0.cmp(b.0));
            for (route, by) in routes {
                let mut keys: Vec<_> = by.iter().collect();
                keys.sort_by_key(|(k, _)| **k);
                for ((op, status), h) in keys {
                    let labels = format!(
                        "route=\"{}\",op=\"{}\",status=\"{status}\"",
                        escape(route),
                        op
                    );
                    h.render(out, name, &labels);
                }
            }
        }

        let name = "estgate_certificates_issued_total";
        header(
            out,
            name,
            "counter",
            "Certificates issued and durably stored by this process, by account and profile.",
        );
        {
            let map = self.issued.lock().unwrap_or_else(|p| p.into_inner());
            let mut rows: Vec<_> = map.iter().collect();
            rows.sort();
            for ((account, profile), n) in rows {
                let _ = writeln!(
                    out,
                    "{name}{{account=\"{}\",profile=\"{}\"}} {n}",
                    escape(account),
                    escape(profile)
                );
            }
        }

        let name = "estgate_guesses_refused_total";
        header(out, name, "counter", "Secrets refused before they were checked: locked (429, a throttle at its limit), busy (503, every Argon2 slot taken), mail (429, too many confirmation emails).");
        for why in GuessRefusal::ALL {
            let n = self.guesses_refused[why as usize].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}{{reason=\"{}\"}} {n}", why.as_str());
        }

        let name = "estgate_connections_open";
        header(out, name, "gauge", "TLS connections held open now.");
        let n = self.connections_open.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name} {n}");

        let name = "estgate_connections_refused_total";
        header(out, name, "counter", "Connections closed at once because a cap was reached (max_connections, max_connections_per_address).");
        for why in ConnectionRefusal::ALL {
            let n = self.connections_refused[why as usize].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}{{cap=\"{}\"}} {n}", why.cap());
        }

        let name = "estgate_mail_total";
        header(out, name, "counter", "Outbox messages this process handled: sent, failed (kept for a retry) or dropped (no longer needed).");
        for outcome in MailOutcome::ALL {
            let n = self.mail[outcome as usize].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}{{outcome=\"{}\"}} {n}", outcome.as_str());
        }
    }
}

/// The `# HELP` and `# TYPE` lines of a metric family.
pub fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Renders a histogram under `name` with no labels (for figures other modules keep).
pub fn render_histogram(out: &mut String, name: &str, help: &str, h: &Histogram) {
    header(out, name, "histogram", help);
    h.render(out, name, "");
}

/// A label value as the text format wants it: backslash, quote and line feed escaped.
pub fn escape(value: &str) -> std::borrow::Cow<'_, str> {
    if !value.contains(['\\', '"', '\n']) {
        return std::borrow::Cow::Borrowed(value);
    }
    let mut s = String::with_capacity(value.len() + 2);
    for c in value.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    std::borrow::Cow::Owned(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_counts_each_observation_in_every_bucket_at_or_above_it() {
        let h = Histogram::new(&[0.1, 1.0]);
        h.observe(0.05);
        h.observe(0.5);
        h.observe(7.0);
        let mut out = String::new();
        h.render(&mut out, "x", "a=\"b\"");
        assert_eq!(
            out,
            "x_bucket{a=\"b\",le=\"0.1\"} 1\n\
             x_bucket{a=\"b\",le=\"1\"} 2\n\
             x_bucket{a=\"b\",le=\"+Inf\"} 3\n\
             x_sum{a=\"b\"} 7.55\n\
             x_count{a=\"b\"} 3\n"
        );
    }

    #[test]
    fn requests_are_kept_apart_by_route_operation_and_status() {
        let m = Metrics::default();
        m.request(
            Some("/.well-known/est/{label}/{op}"),
            Some("simpleenroll"),
            200,
            0.002,
        );
        m.request(
            Some("/.well-known/est/{label}/{op}"),
            Some("simpleenroll"),
            200,
            0.003,
        );
        m.request(
            Some("/.well-known/est/{label}/{op}"),
            Some("simpleenroll"),
            401,
            0.002,
        );
        m.request(None, None, 404, 0.0001);
        let mut out = String::new();
        m.render(&mut out);
        assert!(out.contains(
            "estgate_http_request_duration_seconds_count{route=\"/.well-known/est/{label}/{op}\",op=\"simpleenroll\",status=\"200\"} 2\n"
        ));
        assert!(out.contains(
            "estgate_http_request_duration_seconds_count{route=\"/.well-known/est/{label}/{op}\",op=\"simpleenroll\",status=\"401\"} 1\n"
        ));
        assert!(out.contains(
            "estgate_http_request_duration_seconds_count{route=\"unmatched\",op=\"\",status=\"404\"} 1\n"
        ));
    }

    #[test]
    fn label_values_from_operators_are_escaped() {
        let m = Metrics::default();
        m.issued("a \"quoted\"\nname\\", "p");
        let mut out = String::new();
        m.render(&mut out);
        assert!(out.contains(
            "estgate_certificates_issued_total{account=\"a \\\"quoted\\\"\\nname\\\\\",profile=\"p\"} 1\n"
        ));
    }
}
