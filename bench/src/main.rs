//! estgate-bench: load generator for EST simpleenroll and cacerts, and for OCSP (any server).

use std::net::ToSocketAddrs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use estgate_bench::procfs::{Sampler, Usage};
use estgate_bench::record::Recorder;
use estgate_bench::{
    authority, basic_auth, client_config, encode_request, generate_key, make_csrs, ocsp_get_path,
    ocsp_response_status, Connection, Error, Response, TlsOptions, TlsVersion,
};
use estgate_protocol::transfer;
use tokio::net::TcpStream;

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Mode {
    /// simpleenroll POSTs on one connection per task, reused for every request
    Keepalive,
    /// simpleenroll POSTs, a new TCP + TLS connection for every request (handshake included
    /// in latency), each a full handshake: the client keeps no TLS session
    NewConnection,
    /// simpleenroll POSTs, a new TCP + TLS connection for every request, resuming the TLS
    /// session (TLS 1.3 tickets, TLS 1.2 session IDs or tickets) from a store all tasks
    /// share; prints how many handshakes resumed
    Resume,
    /// GET of --url (…/cacerts) on one kept-alive connection per task; an answer counts only
    /// as 200 with application/pkcs7-mime
    Cacerts,
    /// cacerts, then keep-alive simpleenroll, each for the same --duration-secs,
    /// --requests and --concurrency against the one server; prints both rates and the
    /// ratio simpleenroll/cacerts. --url is the simpleenroll URL
    Ratio,
    /// OCSP GET (RFC 6960 A.1) of --ocsp-request under --url (…/ocsp), kept alive; an answer
    /// counts only as 200 with application/ocsp-response and responseStatus successful
    OcspGet,
    /// OCSP POST of --ocsp-request to --url, kept alive; counted as for ocsp-get
    OcspPost,
    /// Wrong passwords under ever new usernames to --url (simpleenroll) from --concurrency
    /// kept-alive connections (e.g. 1000), an answer counting only as 401, 429 or 503,
    /// while one connection enrolls with --probe-user on --probe-url: prints the flood's
    /// and the probe's figures, the server's from --server-pid over the flood
    GuessFlood,
}

impl Mode {
    /// As spelt on the command line.
    fn name(self) -> String {
        self.to_possible_value()
            .map(|v| v.get_name().to_string())
            .unwrap_or_default()
    }

    fn enrolls(self) -> bool {
        matches!(
            self,
            Mode::Keepalive | Mode::NewConnection | Mode::Resume | Mode::Ratio
        )
    }
}

#[derive(Debug, Parser)]
#[command(
    name = "estgate-bench",
    about = "Load generator for EST simpleenroll and cacerts, and OCSP: requests/s and latency \
             percentiles"
)]
struct Args {
    /// Full URL: https://127.0.0.1:8443/.well-known/est/devices/simpleenroll (enroll modes),
    /// …/.well-known/est/cacerts (cacerts), http://127.0.0.1:8080/ocsp (ocsp-get, ocsp-post).
    /// https:// speaks TLS, http:// plain TCP, whatever the mode
    #[arg(long)]
    url: String,
    /// HTTP Basic user (enroll modes)
    #[arg(long)]
    user: Option<String>,
    /// HTTP Basic password (enroll modes)
    #[arg(long, env = "ESTGATE_BENCH_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    /// PEM trust anchor(s) for the server certificate (https:// URLs)
    #[arg(long)]
    ca: Option<PathBuf>,
    /// DER OCSPRequest to send (ocsp modes), e.g. from
    /// `openssl ocsp -issuer issuing.pem -cert leaf.pem -no_nonce -reqout req.der`
    #[arg(long, value_name = "FILE")]
    ocsp_request: Option<PathBuf>,
    /// Concurrent requests in flight
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Total requests to send (stops earlier if --duration-secs passes); 0: no limit
    #[arg(long, default_value_t = 200)]
    requests: usize,
    /// Upper bound on the run time in seconds
    #[arg(long, default_value_t = 60)]
    duration_secs: u64,
    #[arg(long, value_enum, default_value_t = Mode::Keepalive)]
    mode: Mode,
    /// Key type of the pre-made CSRs: ec-p256, ec-p384, rsa-2048, rsa-3072, rsa-4096
    #[arg(long, default_value = "ec-p256")]
    key_type: String,
    /// Common name and dNSName of the CSRs
    #[arg(long, default_value = "bench.example.org")]
    cn: String,
    /// TLS version: 1.2 or 1.3 (default: negotiate)
    #[arg(long)]
    tls: Option<String>,
    /// Linux PID of the server: its CPU seconds during the run, CPU ms per request and peak
    /// memory (largest sampled VmRSS, and VmHWM) are printed with the figures
    #[arg(long, value_name = "PID")]
    server_pid: Option<u32>,
    /// Append the serial of every certificate received (enroll modes) to FILE, one per
    /// line as `estgate cert list` prints it, written as soon as each response is read
    #[arg(long, value_name = "FILE")]
    record: Option<PathBuf>,
    /// The cacerts URL of the ratio mode (default: …/.well-known/est/cacerts on the host
    /// of --url)
    #[arg(long, value_name = "URL")]
    cacerts_url: Option<String>,
    /// The simpleenroll URL a valid enrollment is timed on during guess-flood
    #[arg(long, value_name = "URL")]
    probe_url: Option<String>,
    /// The local address the guess-flood probe connects from, e.g. 127.0.0.2: another client
    /// than the flood's, which the server's per-address limits lock out
    #[arg(long, value_name = "IP")]
    probe_bind: Option<std::net::IpAddr>,
    /// HTTP Basic user of the guess-flood probe
    #[arg(long)]
    probe_user: Option<String>,
    /// HTTP Basic password of the guess-flood probe
    #[arg(long, env = "ESTGATE_BENCH_PROBE_PASSWORD", hide_env_values = true)]
    probe_password: Option<String>,
    /// Instead of sending requests, time N raw key generations of --key-type on this
    /// machine with the server's backend (aws-lc-rs), for comparison with /serverkeygen
    #[arg(long, value_name = "N")]
    raw_keygen: Option<usize>,
}

struct Target {
    addr: std::net::SocketAddr,
    /// The local address to connect from (guess-flood's probe); none: the system's choice.
    bind: Option<std::net::IpAddr>,
    host: String,
    path: String,
    tls: bool,
}

fn parse_url(url: &str) -> Result<Target, String> {
    let (rest, tls, default_port) = if let Some(r) = url.strip_prefix("https://") {
        (r, true, 443)
    } else if let Some(r) = url.strip_prefix("http://") {
        (r, false, 80)
    } else {
        return Err("the URL must start with https:// or http://".into());
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => {
            (h, p.parse::<u16>().map_err(|_| "bad port")?)
        }
        _ => (authority, default_port),
    };
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let addr = (host.as_str(), port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .next()
        .ok_or("no address")?;
    Ok(Target {
        addr,
        bind: None,
        host,
        path: if path.is_empty() {
            "/".into()
        } else {
            path.into()
        },
        tls,
    })
}

/// What the tasks send and what counts as an answer.
struct Workload {
    /// Whole requests on the wire; request `i` of the run is `requests[i % len]`.
    requests: Vec<Vec<u8>>,
    /// Besides status 200, the media type an answer must carry.
    media_type: Option<&'static str>,
    /// The body must be an OCSPResponse with responseStatus successful.
    ocsp: bool,
    /// A new connection for every request.
    reconnect: bool,
    /// Refusals are the answers wanted (guess-flood): 401, 429 and 503 count, 200 does not.
    refusals_wanted: bool,
}

/// The cacerts URL beside an EST URL: everything up to `/.well-known/est/`, then `cacerts`.
fn cacerts_url_for(url: &str) -> Result<String, String> {
    const EST: &str = "/.well-known/est/";
    match url.find(EST) {
        Some(i) => Ok(format!("{}cacerts", &url[..i + EST.len()])),
        None => Err(format!(
            "cannot tell the cacerts URL from {url}: give --cacerts-url"
        )),
    }
}

/// The workload of `mode` (the ratio mode runs two: cacerts, then keepalive).
fn workload(args: &Args, target: &Target, mode: Mode) -> Result<Workload, String> {
    let host = authority(&target.host, target.addr.port());
    let ua = ("User-Agent", "estgate-bench");
    let one = |method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]| {
        vec![encode_request(method, &host, path, headers, body)]
    };
    Ok(match mode {
        Mode::Keepalive | Mode::NewConnection | Mode::Resume | Mode::Ratio => {
            let (Some(user), Some(password)) = (&args.user, &args.password) else {
                return Err("enroll modes need --user and --password".into());
            };
            let auth = basic_auth(user, password);
            let pool = if args.requests == 0 {
                64
            } else {
                args.requests.clamp(1, 64)
            };
            eprintln!("making {pool} {} CSRs…", args.key_type);
            let csrs = make_csrs(&args.key_type, &args.cn, pool).map_err(|e| e.to_string())?;
            let headers = [
                ("Content-Type", "application/pkcs10"),
                ("Authorization", auth.as_str()),
                ua,
            ];
            Workload {
                requests: csrs
                    .iter()
                    .map(|(der, _)| {
                        let body = transfer::encode_base64(der, transfer::Wrap::Columns64);
                        encode_request("POST", &host, &target.path, &headers, body.as_bytes())
                    })
                    .collect(),
                media_type: None,
                ocsp: false,
                reconnect: matches!(mode, Mode::NewConnection | Mode::Resume),
                refusals_wanted: false,
            }
        }
        Mode::GuessFlood => {
            // Ever new names: none shares a per-name throttle key or a verified secret.
            let requests = (0..4096)
                .map(|i| {
                    let auth = basic_auth(&format!("guess-{i}@example.org"), "not-the-secret");
                    let headers = [
                        ("Content-Type", "application/pkcs10"),
                        ("Authorization", auth.as_str()),
                        ua,
                    ];
                    encode_request("POST", &host, &target.path, &headers, b"MIIB")
                })
                .collect();
            Workload {
                requests,
                media_type: None,
                ocsp: false,
                reconnect: false,
                refusals_wanted: true,
            }
        }
        Mode::Cacerts => Workload {
            requests: one("GET", &target.path, &[ua], b""),
            media_type: Some("application/pkcs7-mime"),
            ocsp: false,
            reconnect: false,
            refusals_wanted: false,
        },
        Mode::OcspGet => Workload {
            requests: one(
                "GET",
                &ocsp_get_path(&target.path, &ocsp_der(args)?),
                &[ua],
                b"",
            ),
            media_type: Some("application/ocsp-response"),
            ocsp: true,
            reconnect: false,
            refusals_wanted: false,
        },
        Mode::OcspPost => Workload {
            requests: one(
                "POST",
                &target.path,
                &[("Content-Type", "application/ocsp-request"), ua],
                &ocsp_der(args)?,
            ),
            media_type: Some("application/ocsp-response"),
            ocsp: true,
            reconnect: false,
            refusals_wanted: false,
        },
    })
}

fn ocsp_der(args: &Args) -> Result<Vec<u8>, String> {
    let path: &Path = args
        .ocsp_request
        .as_deref()
        .ok_or("ocsp modes need --ocsp-request FILE")?;
    let der = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    // An OCSPRequest is a DER SEQUENCE; a PEM or base64 file would only earn 400s.
    if der.first() != Some(&0x30) {
        return Err(format!("{}: not a DER OCSPRequest", path.display()));
    }
    Ok(der)
}

/// One connection of a task, TLS or plain by the URL's scheme.
enum Link {
    /// Boxed: a TLS session's buffers and state dwarf a bare socket.
    Tls(Box<Connection>),
    Plain(Connection<TcpStream>),
}

impl Link {
    async fn open(
        target: &Target,
        config: Option<&Arc<rustls::ClientConfig>>,
    ) -> Result<Link, Error> {
        Ok(match config {
            Some(c) => Link::Tls(Box::new(
                Connection::connect_from(target.bind, target.addr, &target.host, c.clone()).await?,
            )),
            None => Link::Plain(Connection::connect_plain(target.addr, &target.host).await?),
        })
    }

    async fn send(&mut self, request: &[u8]) -> Result<Response, Error> {
        match self {
            Link::Tls(c) => c.send_raw(request).await,
            Link::Plain(c) => c.send_raw(request).await,
        }
    }
}

impl Workload {
    /// Why `r` does not count as an answer, in one line; None when it does.
    fn refusal(&self, r: &Response) -> Option<String> {
        if self.refusals_wanted {
            return (!matches!(r.status, 401 | 429 | 503))
                .then(|| format!("HTTP {} to a wrong password", r.status));
        }
        let ct = r.header("content-type").unwrap_or("no Content-Type");
        let status_ok = r.status == 200 && self.media_type.is_none_or(|m| r.has_media_type(m));
        if !status_ok {
            let mut s = format!("HTTP {} ({ct}, {} bytes)", r.status, r.body.len());
            if ct.starts_with("text/") || ct.contains("json") {
                s.push_str(": ");
                s.push_str(&r.body_text().trim().chars().take(200).collect::<String>());
            }
            return Some(s);
        }
        match ocsp_response_status(&r.body) {
            _ if !self.ocsp => None,
            Some(0) => None,
            Some(status) => Some(format!("OCSP responseStatus {status} (RFC 6960 4.2.1)")),
            None => Some(format!(
                "HTTP 200 but not an OCSPResponse ({} bytes)",
                r.body.len()
            )),
        }
    }
}

#[derive(Default)]
struct Tally {
    latencies: Vec<Duration>,
    errors: usize,
    first_error: Option<String>,
    /// TLS handshakes by kind (one per connection opened).
    full_handshakes: usize,
    resumed_handshakes: usize,
    /// Certificates written to the --record file.
    recorded: usize,
}

impl Tally {
    fn error(&mut self, e: String) {
        self.errors += 1;
        self.first_error.get_or_insert(e);
    }

    fn add(&mut self, other: Tally) {
        self.latencies.extend(other.latencies);
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.full_handshakes += other.full_handshakes;
        self.resumed_handshakes += other.resumed_handshakes;
        self.recorded += other.recorded;
    }

    fn count_handshake(&mut self, link: &Link) {
        if let Link::Tls(c) = link {
            match c.handshake_kind() {
                Some(rustls::HandshakeKind::Resumed) => self.resumed_handshakes += 1,
                Some(_) => self.full_handshakes += 1,
                None => {}
            }
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

/// One load: the same for every mode but in what it sends and how it connects.
struct Load {
    target: Arc<Target>,
    work: Arc<Workload>,
    config: Option<Arc<rustls::ClientConfig>>,
    concurrency: usize,
    /// Requests to send; usize::MAX: until the duration has passed.
    total: usize,
    duration: Duration,
    recorder: Option<Arc<Recorder>>,
    server_pid: Option<u32>,
}

/// What a load measured.
struct Summary {
    tally: Tally,
    wall: f64,
    server: Option<Usage>,
}

impl Summary {
    fn ok(&self) -> usize {
        self.tally.latencies.len()
    }

    fn rps(&self) -> f64 {
        self.ok() as f64 / self.wall
    }
}

impl Load {
    async fn run(&self) -> Result<Summary, String> {
        // Sampling starts before the first request and ends after the last answer, so the
        // CPU counted is the run's, handshakes included (the CSRs are made before).
        let sampler = match self.server_pid {
            Some(pid) => Some(
                Sampler::start(pid)
                    .map_err(|e| format!("--server-pid {pid}: cannot read /proc/{pid}: {e}"))?,
            ),
            None => None,
        };
        let next = Arc::new(AtomicUsize::new(0));
        let deadline = Instant::now() + self.duration;
        let started = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..self.concurrency.max(1) {
            let (target, work, next, config, recorder) = (
                self.target.clone(),
                self.work.clone(),
                next.clone(),
                self.config.clone(),
                self.recorder.clone(),
            );
            let total = self.total;
            tasks.push(tokio::spawn(async move {
                let mut tally = Tally::default();
                let mut link: Option<Link> = None;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total || Instant::now() >= deadline {
                        break;
                    }
                    let request = &work.requests[i % work.requests.len()];
                    let t = Instant::now();
                    let l = match link.take() {
                        Some(l) if !work.reconnect => l,
                        _ => match Link::open(&target, config.as_ref()).await {
                            Ok(l) => {
                                tally.count_handshake(&l);
                                l
                            }
                            Err(e) => {
                                tally.error(format!("connect: {e}"));
                                continue;
                            }
                        },
                    };
                    let l = link.insert(l);
                    match l.send(request).await {
                        Ok(r) => match work.refusal(&r) {
                            None => {
                                let recorded = match &recorder {
                                    Some(rec) => rec.record(&r.body).map(Some),
                                    None => Ok(None),
                                };
                                match recorded {
                                    Ok(n) => {
                                        tally.latencies.push(t.elapsed());
                                        tally.recorded += n.unwrap_or(0);
                                    }
                                    Err(e) => tally.error(e),
                                }
                                if r.closes_connection() {
                                    link = None;
                                }
                            }
                            Some(why) => {
                                tally.error(why);
                                link = None;
                            }
                        },
                        Err(e) => {
                            tally.error(e.to_string());
                            link = None;
                        }
                    }
                }
                tally
            }));
        }
        let mut all = Tally::default();
        for t in tasks {
            all.add(t.await.map_err(|e| e.to_string())?);
        }
        let wall = started.elapsed().as_secs_f64();
        let server = match sampler {
            Some(s) => Some(s.finish().await),
            None => None,
        };
        all.latencies.sort();
        Ok(Summary {
            tally: all,
            wall,
            server,
        })
    }
}

/// The human lines and the RESULT line of one load.
fn print_summary(mode: Mode, url: &str, key_type: &str, load: &Load, s: &Summary) {
    let mode = mode.name();
    let lat = &s.tally.latencies;
    let rps = s.rps();
    println!("mode          {mode}");
    println!("url           {url}");
    println!("concurrency   {}", load.concurrency);
    if load.work.media_type.is_none() {
        println!("key type      {key_type}");
    }
    println!("ok / errors   {} / {}", lat.len(), s.tally.errors);
    println!("wall time     {:.2} s", s.wall);
    println!("requests/s    {rps:.1}");
    println!(
        "latency ms    p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}",
        percentile(lat, 0.50),
        percentile(lat, 0.90),
        percentile(lat, 0.99),
        percentile(lat, 1.0)
    );
    let handshakes = s.tally.full_handshakes + s.tally.resumed_handshakes;
    if handshakes > 0 {
        println!(
            "handshakes    {handshakes}: {} full, {} resumed",
            s.tally.full_handshakes, s.tally.resumed_handshakes
        );
    }
    if load.recorder.is_some() {
        println!("recorded      {} certificates", s.tally.recorded);
    }
    if let (Some(u), Some(pid)) = (&s.server, load.server_pid) {
        for line in u.report(pid, lat.len()) {
            println!("{line}");
        }
    }
    if let Some(e) = &s.tally.first_error {
        println!("first error   {e}");
    }
    let mut result = format!(
        "RESULT mode={mode} c={} rps={rps:.1} p50_ms={:.2} p99_ms={:.2} errors={}",
        load.concurrency,
        percentile(lat, 0.50),
        percentile(lat, 0.99),
        s.tally.errors
    );
    if handshakes > 0 {
        result.push_str(&format!(
            " handshakes_full={} handshakes_resumed={}",
            s.tally.full_handshakes, s.tally.resumed_handshakes
        ));
    }
    if let Some(u) = &s.server {
        result.push_str(&format!(
            " server_cpu_s={:.2} server_cpu_ms_per_req={} server_peak_rss_mb={:.1} server_hwm_mb={:.1}",
            u.cpu_secs,
            u.cpu_ms_per_request(lat.len())
                .map(|ms| format!("{ms:.3}"))
                .unwrap_or_else(|| "n/a".into()),
            estgate_bench::procfs::mb(u.peak_rss_kb),
            estgate_bench::procfs::mb(u.hwm_kb)
        ));
    }
    println!("{result}");
}

/// The ratio mode's closing lines: both rates and simpleenroll/cacerts. The goal
/// compares against the old build's cacerts, so a run of each build prints its own.
fn ratio_report(concurrency: usize, cacerts_rps: f64, enroll_rps: f64) -> [String; 2] {
    let ratio = if cacerts_rps > 0.0 {
        format!("{:.3}", enroll_rps / cacerts_rps)
    } else {
        "n/a".into()
    };
    [
        format!(
            "ratio         simpleenroll/cacerts {ratio} ({enroll_rps:.1} / {cacerts_rps:.1} requests/s)"
        ),
        format!(
            "RESULT mode=ratio c={concurrency} cacerts_rps={cacerts_rps:.1} \
             simpleenroll_rps={enroll_rps:.1} ratio={ratio}"
        ),
    ]
}

fn tls_config(args: &Args, mode: Mode) -> Result<Arc<rustls::ClientConfig>, String> {
    let version = match args.tls.as_deref() {
        None => None,
        Some("1.2") => Some(TlsVersion::Tls12),
        Some("1.3") => Some(TlsVersion::Tls13),
        Some(other) => return Err(format!("--tls must be 1.2 or 1.3, not {other}")),
    };
    let ca = args.ca.as_ref().ok_or("https:// URLs need --ca")?;
    let roots_pem = std::fs::read(ca).map_err(|e| format!("{}: {e}", ca.display()))?;
    let options = TlsOptions {
        roots_pem,
        client_cert: None,
        version,
        alpn_h2: false,
    };
    let config = client_config(&options).map_err(|e| e.to_string())?;
    // rustls keeps sessions by default; new-connection measures what a client that keeps
    // none costs the server, so only resume (and the kept-alive modes) may resume.
    Ok(if mode == Mode::NewConnection {
        let mut c = (*config).clone();
        c.resumption = rustls::client::Resumption::disabled();
        Arc::new(c)
    } else {
        config
    })
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let args = Args::parse();
    if let Some(n) = args.raw_keygen {
        let mut times = Vec::with_capacity(n);
        for _ in 0..n {
            let t = Instant::now();
            generate_key(&args.key_type).map_err(|e| e.to_string())?;
            times.push(t.elapsed());
        }
        times.sort();
        println!(
            "RESULT raw-keygen key={} n={n} p50_ms={:.2} p99_ms={:.2}",
            args.key_type,
            percentile(&times, 0.50),
            percentile(&times, 0.99)
        );
        return Ok(());
    }
    if args.record.is_some() && !args.mode.enrolls() {
        return Err(
            "--record needs an enroll mode (keepalive, new-connection, resume, ratio)".into(),
        );
    }
    let recorder = match &args.record {
        Some(path) => Some(Arc::new(
            Recorder::open(path).map_err(|e| format!("{}: {e}", path.display()))?,
        )),
        None => None,
    };
    let target = Arc::new(parse_url(&args.url)?);
    let config = if target.tls {
        Some(tls_config(&args, args.mode)?)
    } else {
        None
    };
    let load = |target: Arc<Target>, work: Workload, recorder: Option<Arc<Recorder>>| Load {
        target,
        work: Arc::new(work),
        config: config.clone(),
        concurrency: args.concurrency.max(1),
        total: if args.requests == 0 {
            usize::MAX
        } else {
            args.requests
        },
        duration: Duration::from_secs(args.duration_secs),
        recorder,
        server_pid: args.server_pid,
    };
    if args.mode == Mode::Ratio {
        let cacerts_url = match &args.cacerts_url {
            Some(u) => u.clone(),
            None => cacerts_url_for(&args.url)?,
        };
        let cacerts_target = Arc::new(parse_url(&cacerts_url)?);
        // The CSRs are made before either phase, so both start on an idle client.
        let enroll = load(
            target.clone(),
            workload(&args, &target, Mode::Keepalive)?,
            recorder,
        );
        let cacerts = load(
            cacerts_target.clone(),
            workload(&args, &cacerts_target, Mode::Cacerts)?,
            None,
        );
        let c = cacerts.run().await?;
        print_summary(Mode::Cacerts, &cacerts_url, &args.key_type, &cacerts, &c);
        println!();
        let e = enroll.run().await?;
        print_summary(Mode::Keepalive, &args.url, &args.key_type, &enroll, &e);
        println!();
        for line in ratio_report(enroll.concurrency, c.rps(), e.rps()) {
            println!("{line}");
        }
        return Ok(());
    }
    if args.mode == Mode::GuessFlood {
        let (Some(probe_url), Some(user), Some(password)) =
            (&args.probe_url, &args.probe_user, &args.probe_password)
        else {
            return Err("guess-flood needs --probe-url, --probe-user and --probe-password".into());
        };
        let probe_target = Arc::new(Target {
            bind: args.probe_bind,
            ..parse_url(probe_url)?
        });
        let probe_args = Args {
            user: Some(user.clone()),
            password: Some(password.clone()),
            requests: 0,
            ..Args::parse_from(["estgate-bench", "--url", probe_url])
        };
        let probe = Load {
            concurrency: 1,
            server_pid: None,
            ..load(
                probe_target.clone(),
                workload(&probe_args, &probe_target, Mode::Keepalive)?,
                None,
            )
        };
        let flood = load(
            target,
            workload(&args, &parse_url(&args.url)?, Mode::GuessFlood)?,
            None,
        );
        let (f, p) = tokio::join!(flood.run(), probe.run());
        print_summary(Mode::GuessFlood, &args.url, &args.key_type, &flood, &f?);
        println!();
        print_summary(Mode::Keepalive, probe_url, &args.key_type, &probe, &p?);
        return Ok(());
    }
    let work = workload(&args, &target, args.mode)?;
    let one = load(target, work, recorder);
    let summary = one.run().await?;
    print_summary(args.mode, &args.url, &args.key_type, &one, &summary);
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A TLS server on 127.0.0.1 that answers every request with 200 and `body`, with
    /// rustls's default server session cache (TLS 1.2 session IDs, TLS 1.3 tickets), as
    /// estgate's listener has. Returns its address and the CA file to trust.
    async fn tls_responder(body: Vec<u8>) -> (std::net::SocketAddr, PathBuf) {
        use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let dir = std::env::temp_dir().join(format!(
            "estgate-bench-tls-{}-{}",
            std::process::id(),
            NEXT_DIR.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, cert.pem()).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls_pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
        )
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let body = Arc::new(body);
        tokio::spawn(async move {
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                let (acceptor, body) = (acceptor.clone(), body.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut s = tokio::io::BufReader::new(tls);
                    loop {
                        let mut length = 0;
                        loop {
                            let mut line = String::new();
                            if s.read_line(&mut line).await.unwrap_or(0) == 0 {
                                return;
                            }
                            if let Some(v) = line.strip_prefix("Content-Length: ") {
                                length = v.trim().parse().unwrap();
                            }
                            if line == "\r\n" {
                                break;
                            }
                        }
                        let mut request_body = vec![0; length];
                        s.read_exact(&mut request_body).await.unwrap();
                        let head =
                            format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
                        let out = s.get_mut();
                        out.write_all(head.as_bytes()).await.unwrap();
                        out.write_all(&body).await.unwrap();
                        out.flush().await.unwrap();
                    }
                });
            }
        });
        (addr, ca)
    }

    static NEXT_DIR: AtomicUsize = AtomicUsize::new(0);

    /// A load of `requests` POSTs in `mode` against `addr`.
    fn load_for(
        mode: Mode,
        tls: &str,
        addr: std::net::SocketAddr,
        ca: &Path,
        requests: usize,
        recorder: Option<Arc<Recorder>>,
    ) -> Load {
        let url = format!(
            "https://127.0.0.1:{}/.well-known/est/simpleenroll",
            addr.port()
        );
        let args = Args::parse_from([
            "estgate-bench",
            "--url",
            &url,
            "--ca",
            ca.to_str().unwrap(),
            "--tls",
            tls,
        ]);
        let target = parse_url(&url).unwrap();
        let request = encode_request("POST", "127.0.0.1", &target.path, &[], b"csr");
        Load {
            work: Arc::new(Workload {
                requests: vec![request],
                media_type: None,
                ocsp: false,
                reconnect: matches!(mode, Mode::NewConnection | Mode::Resume),
                refusals_wanted: false,
            }),
            target: Arc::new(target),
            config: Some(tls_config(&args, mode).unwrap()),
            concurrency: 2,
            total: requests,
            duration: Duration::from_secs(30),
            recorder,
            server_pid: None,
        }
    }

    #[tokio::test]
    async fn resume_resumes_and_new_connection_never_does() {
        let (addr, ca) = tls_responder(Vec::new()).await;
        for tls in ["1.2", "1.3"] {
            let fresh = load_for(Mode::NewConnection, tls, addr, &ca, 12, None)
                .run()
                .await
                .unwrap();
            assert_eq!(fresh.ok(), 12, "TLS {tls}: {:?}", fresh.tally.first_error);
            assert_eq!(
                (fresh.tally.full_handshakes, fresh.tally.resumed_handshakes),
                (12, 0),
                "TLS {tls}"
            );
            let resumed = load_for(Mode::Resume, tls, addr, &ca, 12, None)
                .run()
                .await
                .unwrap();
            assert_eq!(resumed.ok(), 12, "TLS {tls}");
            let t = &resumed.tally;
            assert_eq!(t.full_handshakes + t.resumed_handshakes, 12, "TLS {tls}");
            // At most one full handshake per task before the store has a session.
            assert!(
                t.resumed_handshakes >= 10,
                "TLS {tls}: {} resumed",
                t.resumed_handshakes
            );
        }
        std::fs::remove_dir_all(ca.parent().unwrap()).unwrap();
    }

    #[tokio::test]
    async fn every_answered_enrollment_is_on_record() {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut p = rcgen::CertificateParams::new(vec!["d.example.org".into()]).unwrap();
        p.serial_number = Some(rcgen::SerialNumber::from_slice(&[0x0c, 0xaf, 0xe0]));
        let leaf = p.self_signed(&key).unwrap().der().to_vec();
        let body = transfer::encode_base64(
            &estgate_protocol::pkcs7::certs_only(&[&leaf]),
            transfer::Wrap::Columns64,
        );
        let (addr, ca) = tls_responder(body.into_bytes()).await;
        let file = ca.with_file_name("delivered.txt");
        let recorder = Arc::new(Recorder::open(&file).unwrap());
        let s = load_for(Mode::Keepalive, "1.3", addr, &ca, 5, Some(recorder))
            .run()
            .await
            .unwrap();
        assert_eq!((s.ok(), s.tally.errors, s.tally.recorded), (5, 0, 5));
        assert_eq!(
            std::fs::read_to_string(&file).unwrap(),
            "0CAFE0\n".repeat(5)
        );
        // An answer that holds no certificate is an error, and nothing is recorded for it.
        let (addr, ca) = tls_responder(b"not a certificate".to_vec()).await;
        let recorder = Arc::new(Recorder::open(&file).unwrap());
        let s = load_for(Mode::Keepalive, "1.3", addr, &ca, 2, Some(recorder))
            .run()
            .await
            .unwrap();
        assert_eq!((s.ok(), s.tally.errors, s.tally.recorded), (0, 2, 0));
        assert_eq!(std::fs::read_to_string(&file).unwrap().lines().count(), 5);
        std::fs::remove_dir_all(file.parent().unwrap()).unwrap();
        std::fs::remove_dir_all(ca.parent().unwrap()).unwrap();
    }

    #[test]
    fn the_scheme_picks_transport_and_default_port() {
        let t = parse_url("http://127.0.0.1/ocsp").unwrap();
        assert_eq!(
            (t.tls, t.addr.port(), t.path.as_str()),
            (false, 80, "/ocsp")
        );
        let t = parse_url("https://[::1]:8443").unwrap();
        assert_eq!((t.tls, t.addr.port(), t.path.as_str()), (true, 8443, "/"));
        assert_eq!(t.host, "::1");
        assert!(parse_url("ftp://127.0.0.1/").is_err());
    }

    #[test]
    fn the_ratio_is_printed_with_both_rates() {
        let [line, result] = ratio_report(8, 11_200.0, 600.0);
        assert_eq!(
            line,
            "ratio         simpleenroll/cacerts 0.054 (600.0 / 11200.0 requests/s)"
        );
        assert_eq!(
            result,
            "RESULT mode=ratio c=8 cacerts_rps=11200.0 simpleenroll_rps=600.0 ratio=0.054"
        );
        let [none, _] = ratio_report(8, 0.0, 600.0);
        assert!(none.contains("simpleenroll/cacerts n/a"));
    }

    #[test]
    fn the_cacerts_url_is_beside_the_enroll_url() {
        assert_eq!(
            cacerts_url_for("https://127.0.0.1:8443/.well-known/est/devices/simpleenroll").unwrap(),
            "https://127.0.0.1:8443/.well-known/est/cacerts"
        );
        assert!(cacerts_url_for("https://127.0.0.1:8443/devices").is_err());
        let a = Args::parse_from([
            "estgate-bench",
            "--url",
            "https://127.0.0.1:8443/.well-known/est/staff/simpleenroll",
            "--mode",
            "ratio",
        ]);
        assert!(a.mode.enrolls());
    }

    #[test]
    fn ocsp_workloads_send_the_file_as_given() {
        let dir = std::env::temp_dir().join(format!("estgate-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let der = dir.join("req.der");
        std::fs::write(&der, [0x30, 0x03, 0x02, 0x01, 0xff]).unwrap();
        let args = |mode: &str| {
            Args::parse_from([
                "estgate-bench",
                "--url",
                "http://127.0.0.1:9580/ocsp",
                "--mode",
                mode,
                "--ocsp-request",
                der.to_str().unwrap(),
            ])
        };
        let a = args("ocsp-post");
        let target = parse_url(&a.url).unwrap();
        let post = workload(&a, &target, a.mode).unwrap();
        assert_eq!(post.media_type, Some("application/ocsp-response"));
        let wire = &post.requests[0];
        assert!(wire.starts_with(b"POST /ocsp HTTP/1.1\r\nHost: 127.0.0.1:9580\r\n"));
        assert!(wire.ends_with(b"Content-Length: 5\r\n\r\n\x30\x03\x02\x01\xff"));
        let get = workload(&args("ocsp-get"), &target, Mode::OcspGet).unwrap();
        assert!(get.requests[0].starts_with(b"GET /ocsp/MAMCAf8%3D HTTP/1.1\r\n"));
        std::fs::write(&der, b"-----BEGIN").unwrap();
        assert!(workload(&args("ocsp-get"), &target, Mode::OcspGet).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn an_ocsp_answer_counts_only_when_typed_and_successful() {
        let work = Workload {
            requests: vec![],
            media_type: Some("application/ocsp-response"),
            ocsp: true,
            reconnect: false,
            refusals_wanted: false,
        };
        let answer = |ct: &str, body: &[u8]| {
            let mut wire = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: {ct}\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .into_bytes();
            wire.extend_from_slice(body);
            wire
        };
        let read = |wire: Vec<u8>| async move {
            estgate_bench::read_response(&mut tokio::io::BufReader::new(&wire[..]))
                .await
                .unwrap()
        };
        let good = read(answer(
            "application/ocsp-response",
            &[0x30, 0x81, 0x90, 0x0a, 0x01, 0x00],
        ))
        .await;
        assert_eq!(work.refusal(&good), None);
        let malformed = read(answer(
            "application/ocsp-response",
            &[0x30, 0x03, 0x0a, 0x01, 0x01],
        ))
        .await;
        assert!(work
            .refusal(&malformed)
            .unwrap()
            .contains("responseStatus 1"));
        let html = read(answer("text/html", b"<p>no</p>")).await;
        assert!(work
            .refusal(&html)
            .unwrap()
            .starts_with("HTTP 200 (text/html"));
    }

    #[tokio::test]
    async fn a_guess_flood_counts_refusals_and_not_certificates() {
        let work = Workload {
            requests: vec![],
            media_type: None,
            ocsp: false,
            reconnect: false,
            refusals_wanted: true,
        };
        for (status, counts) in [
            (401, true),
            (429, true),
            (503, true),
            (200, false),
            (400, false),
        ] {
            let wire = format!("HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n").into_bytes();
            let r = estgate_bench::read_response(&mut tokio::io::BufReader::new(&wire[..]))
                .await
                .unwrap();
            assert_eq!(work.refusal(&r).is_none(), counts, "{status}");
        }
    }
}
