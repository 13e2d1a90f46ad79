//! estgate-bench: load generator for EST simpleenroll (any EST server).

use std::net::ToSocketAddrs;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use estgate_bench::{basic_auth, client_config, make_csrs, Connection, TlsOptions, TlsVersion};
use estgate_protocol::transfer;

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Mode {
    /// One TLS connection per task, reused for every request
    Keepalive,
    /// A new TCP + TLS connection for every request (handshake included in latency)
    NewConnection,
}

#[derive(Debug, Parser)]
#[command(
    name = "estgate-bench",
    about = "Load generator for EST simpleenroll: requests/s and latency percentiles"
)]
struct Args {
    /// Full EST URL, e.g. https://127.0.0.1:8443/.well-known/est/devices/simpleenroll
    #[arg(long)]
    url: String,
    /// HTTP Basic user
    #[arg(long)]
    user: String,
    /// HTTP Basic password
    #[arg(long, env = "ESTGATE_BENCH_PASSWORD")]
    password: String,
    /// PEM trust anchor(s) for the server certificate
    #[arg(long)]
    ca: std::path::PathBuf,
    /// Concurrent requests in flight
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Total requests to send (stops earlier if --duration-secs passes)
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
}

fn parse_url(url: &str) -> Result<Target, String> {
    let rest = url
        .strip_prefix("https://")
        .ok_or("the URL must start with https://")?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => {
            (h, p.parse::<u16>().map_err(|_| "bad port")?)
        }
        _ => (authority, 443),
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
    })
}

/// One key pair of the given type, generated as the server does (aws-lc-rs through rcgen).
fn make_keys(key_type: &str) -> Result<(), String> {
    let r = match key_type {
        "ec-p256" => rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
        "ec-p384" => rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384),
        "rsa-2048" => {
            rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
        }
        "rsa-3072" => {
            rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_3072)
        }
        "rsa-4096" => {
            rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_4096)
        }
        other => return Err(format!("unknown key type {other}")),
    };
    r.map(|_| ()).map_err(|e| e.to_string())
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
            make_keys(&args.key_type)?;
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
    let version = match args.tls.as_deref() {
        None => None,
        Some("1.2") => Some(TlsVersion::Tls12),
        Some("1.3") => Some(TlsVersion::Tls13),
        Some(other) => return Err(format!("--tls must be 1.2 or 1.3, not {other}")),
    };
    let roots_pem = std::fs::read(&args.ca).map_err(|e| format!("{}: {e}", args.ca.display()))?;
    let config = client_config(&TlsOptions {
        roots_pem,
        client_cert: None,
        version,
        alpn_h2: false,
    })
    .map_err(|e| e.to_string())?;
    let pool = args.requests.clamp(1, 64);
    eprintln!("making {pool} {} CSRs…", args.key_type);
    let bodies: Arc<Vec<String>> = Arc::new(
        make_csrs(&args.key_type, &args.cn, pool)
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|(der, _)| transfer::encode_base64(&der, transfer::Wrap::Columns64))
            .collect(),
    );
    let auth = Arc::new(basic_auth(&args.user, &args.password));
    let next = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_secs(args.duration_secs);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.concurrency.max(1) {
        let (target, bodies, auth, next, config) = (
            target.clone(),
            bodies.clone(),
            auth.clone(),
            next.clone(),
            config.clone(),
        );
        let (mode, total) = (args.mode, args.requests);
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = Vec::new();
            let mut conn: Option<Connection> = None;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total || Instant::now() >= deadline {
                    break;
                }
                let body = &bodies[i % bodies.len()];
                let t = Instant::now();
                if mode == Mode::NewConnection || conn.is_none() {
                    match Connection::connect(target.addr, &target.host, config.clone()).await {
                        Ok(c) => conn = Some(c),
                        Err(e) => {
                            errors.push(format!("connect: {e}"));
                            continue;
                        }
                    }
                }
                let Some(c) = conn.as_mut() else { continue };
                let headers = [
                    ("Content-Type", "application/pkcs10"),
                    ("Authorization", auth.as_str()),
                    ("User-Agent", "estgate-bench"),
                ];
                match c
                    .request("POST", &target.path, &headers, body.as_bytes())
                    .await
                {
                    Ok(r) if r.status == 200 => lat.push(t.elapsed()),
                    Ok(r) => {
                        errors.push(format!("HTTP {}: {}", r.status, r.body_text().trim()));
                        conn = None;
                    }
                    Err(e) => {
                        errors.push(e.to_string());
                        conn = None;
                    }
                }
            }
            (lat, errors)
        }));
    }
    let mut lat = Vec::new();
    let mut errors = Vec::new();
    for t in tasks {
        let (l, e) = t.await.map_err(|e| e.to_string())?;
        lat.extend(l);
        errors.extend(e);
    }
    let wall = started.elapsed().as_secs_f64();
    lat.sort();
    let mode = match args.mode {
        Mode::Keepalive => "keepalive",
        Mode::NewConnection => "new-connection",
    };
    let rps = lat.len() as f64 / wall;
    println!("mode          {mode}");
    println!("concurrency   {}", args.concurrency);
    println!("key type      {}", args.key_type);
    println!("ok / errors   {} / {}", lat.len(), errors.len());
    println!("wall time     {wall:.2} s");
    println!("requests/s    {rps:.1}");
    println!(
        "latency ms    p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}",
        percentile(&lat, 0.50),
        percentile(&lat, 0.90),
        percentile(&lat, 0.99),
        percentile(&lat, 1.0)
    );
    if let Some(e) = errors.first() {
        println!("first error   {e}");
    }
    println!(
        "RESULT mode={mode} c={} rps={rps:.1} p50_ms={:.2} p99_ms={:.2} errors={}",
        args.concurrency,
        percentile(&lat, 0.50),
        percentile(&lat, 0.99),
        errors.len()
    );
    Ok(())
}
