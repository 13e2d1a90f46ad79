//! estgate-bench: load generator for EST simpleenroll and cacerts, and for OCSP (any server).

use std::net::ToSocketAddrs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
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
    /// in latency)
    NewConnection,
    /// GET of --url (…/cacerts) on one kept-alive connection per task; an answer counts only
    /// as 200 with application/pkcs7-mime
    Cacerts,
    /// OCSP GET (RFC 6960 A.1) of --ocsp-request under --url (…/ocsp), kept alive; an answer
    /// counts only as 200 with application/ocsp-response and responseStatus successful
    OcspGet,
    /// OCSP POST of --ocsp-request to --url, kept alive; counted as for ocsp-get
    OcspPost,
}

impl Mode {
    /// As spelt on the command line.
    fn name(self) -> String {
        self.to_possible_value()
            .map(|v| v.get_name().to_string())
            .unwrap_or_default()
    }

    fn enrolls(self) -> bool {
        matches!(self, Mode::Keepalive | Mode::NewConnection)
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
    /// Instead of sending requests, time N raw key generations of --key-type on this
    /// machine with the server's backend (aws-lc-rs), for comparison with /serverkeygen
    #[arg(long, value_name = "N")]
    raw_keygen: Option<usize>,
}

struct Target {
    addr: std::net::SocketAddr,
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
}

fn workload(args: &Args, target: &Target) -> Result<Workload, String> {
    let host = authority(&target.host, target.addr.port());
    let ua = ("User-Agent", "estgate-bench");
    let one = |method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]| {
        vec![encode_request(method, &host, path, headers, body)]
    };
    Ok(match args.mode {
        Mode::Keepalive | Mode::NewConnection => {
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
                reconnect: args.mode == Mode::NewConnection,
            }
        }
        Mode::Cacerts => Workload {
            requests: one("GET", &target.path, &[ua], b""),
            media_type: Some("application/pkcs7-mime"),
            ocsp: false,
            reconnect: false,
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
                Connection::connect(target.addr, &target.host, c.clone()).await?,
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
}

impl Tally {
    fn error(&mut self, e: String) {
        self.errors += 1;
        self.first_error.get_or_insert(e);
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)].as_secs_f64() * 1000.0
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
    let target = Arc::new(parse_url(&args.url)?);
    let config = if target.tls {
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
        Some(client_config(&options).map_err(|e| e.to_string())?)
    } else {
        None
    };
    let work = Arc::new(workload(&args, &target)?);
    let total = if args.requests == 0 {
        usize::MAX
    } else {
        args.requests
    };
    let next = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_secs(args.duration_secs);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.concurrency.max(1) {
        let (target, work, next, config) =
            (target.clone(), work.clone(), next.clone(), config.clone());
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
                        Ok(l) => l,
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
                            tally.latencies.push(t.elapsed());
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
        let tally = t.await.map_err(|e| e.to_string())?;
        all.latencies.extend(tally.latencies);
        all.errors += tally.errors;
        if all.first_error.is_none() {
            all.first_error = tally.first_error;
        }
    }
    let wall = started.elapsed().as_secs_f64();
    let lat = &mut all.latencies;
    lat.sort();
    let mode = args.mode.name();
    let rps = lat.len() as f64 / wall;
    println!("mode          {mode}");
    println!("url           {}", args.url);
    println!("concurrency   {}", args.concurrency);
    if args.mode.enrolls() {
        println!("key type      {}", args.key_type);
    }
    println!("ok / errors   {} / {}", lat.len(), all.errors);
    println!("wall time     {wall:.2} s");
    println!("requests/s    {rps:.1}");
    println!(
        "latency ms    p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}",
        percentile(lat, 0.50),
        percentile(lat, 0.90),
        percentile(lat, 0.99),
        percentile(lat, 1.0)
    );
    if let Some(e) = &all.first_error {
        println!("first error   {e}");
    }
    println!(
        "RESULT mode={mode} c={} rps={rps:.1} p50_ms={:.2} p99_ms={:.2} errors={}",
        args.concurrency,
        percentile(lat, 0.50),
        percentile(lat, 0.99),
        all.errors
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

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
        let post = workload(&a, &target).unwrap();
        assert_eq!(post.media_type, Some("application/ocsp-response"));
        let wire = &post.requests[0];
        assert!(wire.starts_with(b"POST /ocsp HTTP/1.1\r\nHost: 127.0.0.1:9580\r\n"));
        assert!(wire.ends_with(b"Content-Length: 5\r\n\r\n\x30\x03\x02\x01\xff"));
        let get = workload(&args("ocsp-get"), &target).unwrap();
        assert!(get.requests[0].starts_with(b"GET /ocsp/MAMCAf8%3D HTTP/1.1\r\n"));
        std::fs::write(&der, b"-----BEGIN").unwrap();
        assert!(workload(&args("ocsp-get"), &target).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn an_ocsp_answer_counts_only_when_typed_and_successful() {
        let work = Workload {
            requests: vec![],
            media_type: Some("application/ocsp-response"),
            ocsp: true,
            reconnect: false,
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
}
