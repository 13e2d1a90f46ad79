//! The HTTPS listener's connection bounds (first byte, idle, head, body rate, per-address
//! cap), the client address behind a trusted reverse proxy, and a graceful stop on SIGTERM.
//! Timeouts are configured short here; each wait below is a generous upper bound on how
//! long the server may take, not a measurement.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use estgate_bench::{basic_auth, client_config, make_csrs, read_response, Response, TlsOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::client::TlsStream;

use crate::support::{start_with, Server};

const CACERTS: &[u8] = b"GET /.well-known/est/cacerts HTTP/1.1\r\nHost: localhost\r\n\r\n";

fn tls(s: &Server) -> Arc<rustls::ClientConfig> {
    client_config(&TlsOptions {
        roots_pem: s.roots_pem(),
        client_cert: None,
        version: None,
        alpn_h2: false,
    })
    .unwrap()
}

/// A TLS connection to `to` from the loopback address `from` (all of 127/8 is local).
async fn connect_from(
    cfg: Arc<rustls::ClientConfig>,
    from: IpAddr,
    to: SocketAddr,
) -> std::io::Result<TlsStream<TcpStream>> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from, 0))?;
    let tcp = socket.connect(to).await?;
    tcp.set_nodelay(true)?;
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    tokio_rustls::TlsConnector::from(cfg)
        .connect(name, tcp)
        .await
}

fn local(last: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, last])
}

/// Whether the server closes `stream` within `wait` while the client sends nothing more.
async fn closed_within(stream: &mut TlsStream<TcpStream>, wait: Duration) -> bool {
    let mut buf = [0u8; 512];
    let ended = tokio::time::timeout(wait, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    })
    .await;
    ended.is_ok()
}

async fn send(stream: TlsStream<TcpStream>, request: &[u8]) -> (Response, TlsStream<TcpStream>) {
    let mut r = BufReader::new(stream);
    r.get_mut().write_all(request).await.unwrap();
    r.get_mut().flush().await.unwrap();
    let resp = read_response(&mut r).await.unwrap();
    (resp, r.into_inner())
}

const SHORT: &[(&str, &str)] = &[
    ("ESTGATE_FIRST_BYTE_TIMEOUT_SECS", "1"),
    ("ESTGATE_IDLE_TIMEOUT_SECS", "1"),
    ("ESTGATE_HEADER_TIMEOUT_SECS", "1"),
    ("ESTGATE_BODY_GRACE_SECS", "1"),
    ("ESTGATE_BODY_MIN_BYTES_PER_SEC", "100"),
];

#[tokio::test]
async fn silent_idle_and_slow_head_connections_are_closed() {
    let s = start_with(SHORT).await;
    let cfg = tls(&s);
    // A handshake, then nothing: hyper's protocol sniffing alone would wait forever.
    let mut silent = connect_from(cfg.clone(), local(1), s.addr()).await.unwrap();
    assert!(
        closed_within(&mut silent, Duration::from_secs(8)).await,
        "a silent TLS connection was still open"
    );
    // One answered request, then an idle keep-alive (hyper's default head timer is 30 s).
    let c = connect_from(cfg.clone(), local(1), s.addr()).await.unwrap();
    let (r, mut c) = send(c, CACERTS).await;
    assert_eq!(r.status, 200);
    assert!(!r.closes_connection());
    assert!(
        closed_within(&mut c, Duration::from_secs(8)).await,
        "an idle kept-alive connection was still open"
    );
    // Half a request head, then nothing.
    let mut c = connect_from(cfg, local(1), s.addr()).await.unwrap();
    c.write_all(b"GET /.well-known/est/cacerts HTTP/1.1\r\nHost: loc")
        .await
        .unwrap();
    c.flush().await.unwrap();
    assert!(
        closed_within(&mut c, Duration::from_secs(8)).await,
        "a connection with half a request head was still open"
    );
    s.stop().await;
}

#[tokio::test]
async fn a_body_trickled_a_byte_at_a_time_is_cut_off_with_408() {
    let s = start_with(SHORT).await;
    let c = connect_from(tls(&s), local(1), s.addr()).await.unwrap();
    let (mut rd, mut wr) = tokio::io::split(c);
    let head = "POST /.well-known/est/devices/simpleenroll HTTP/1.1\r\nHost: localhost\r\n\
                Content-Type: application/pkcs10\r\nContent-Length: 400\r\n\r\n";
    wr.write_all(head.as_bytes()).await.unwrap();
    wr.flush().await.unwrap();
    let trickle = tokio::spawn(async move {
        // 1 byte every 250 ms: 100 s for the whole body, 4 B/s against a floor of 100 B/s.
        for _ in 0..400 {
            tokio::time::sleep(Duration::from_millis(250)).await;
            if wr.write_all(b"M").await.is_err() || wr.flush().await.is_err() {
                return false;
            }
        }
        true
    });
    let mut rd = BufReader::new(&mut rd);
    let resp = tokio::time::timeout(Duration::from_secs(15), read_response(&mut rd))
        .await
        .expect("the trickled body was not cut off")
        .unwrap();
    trickle.abort();
    assert_eq!(resp.status, 408, "{}", resp.body_text());
    assert!(resp.has_media_type("text/plain"));
    assert!(
        resp.body_text().contains("too slowly"),
        "{}",
        resp.body_text()
    );
    assert!(resp.closes_connection());
    s.stop().await;
}

#[tokio::test]
async fn over_the_per_address_cap_new_connections_are_closed_at_once() {
    let mut settings = SHORT.to_vec();
    settings.push(("ESTGATE_MAX_CONNECTIONS_PER_ADDRESS", "2"));
    settings.push(("ESTGATE_IDLE_TIMEOUT_SECS", "30"));
    settings.push(("ESTGATE_FIRST_BYTE_TIMEOUT_SECS", "30"));
    let s = start_with(&settings).await;
    let cfg = tls(&s);
    let first = connect_from(cfg.clone(), local(1), s.addr()).await.unwrap();
    let second = connect_from(cfg.clone(), local(1), s.addr()).await.unwrap();
    // The third from the same address is closed before its handshake completes.
    let third = connect_from(cfg.clone(), local(1), s.addr()).await;
    let refused = match third {
        Err(_) => true,
        Ok(mut c) => closed_within(&mut c, Duration::from_secs(3)).await,
    };
    assert!(refused, "a third connection from 127.0.0.1 was served");
    // Another address is not affected, and the held connections still work.
    let other = connect_from(cfg.clone(), local(2), s.addr()).await.unwrap();
    let (r, _other) = send(other, CACERTS).await;
    assert_eq!(r.status, 200);
    let (r, _first) = send(first, CACERTS).await;
    assert_eq!(r.status, 200);
    // Once one closes, its place is given back (the server notices the close by itself).
    drop(second);
    let mut admitted = None;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if let Ok(c) = connect_from(cfg.clone(), local(1), s.addr()).await {
            let mut r = BufReader::new(c);
            if r.get_mut().write_all(CACERTS).await.is_ok() {
                if let Ok(resp) = read_response(&mut r).await {
                    admitted = Some(resp.status);
                    break;
                }
            }
        }
    }
    assert_eq!(admitted, Some(200), "no place was given back");
    s.stop().await;
}

/// A POST to the access-code account `devices` with a wrong code and a fresh device name
/// (so that only the per-address count grows), sent by `send` with `extra` headers.
fn wrong_guess(n: usize, extra: &str) -> Vec<u8> {
    let csr = make_csrs("ec-p256", "sensor.example.org", 1)
        .unwrap()
        .remove(0)
        .0;
    let body = base64_body(&csr);
    format!(
        "POST /.well-known/est/devices/simpleenroll HTTP/1.1\r\nHost: localhost\r\n\
         Authorization: {}\r\nContent-Type: application/pkcs10\r\n{extra}\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        basic_auth(&format!("guesser-{n}"), "not-the-code"),
        body.len()
    )
    .into_bytes()
}

fn base64_body(der: &[u8]) -> String {
    estgate_protocol::transfer::encode_base64(der, estgate_protocol::transfer::Wrap::Unwrapped)
}

/// Guesses from one client, made by `connect`, until it is refused with 429; returns how
/// many got 401 before.
async fn guesses_until_429<F, Fut>(connect: F, extra: &str) -> u64
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = TlsStream<TcpStream>>,
{
    let cap = estgate::ra::MAX_FAILURES_PER_ADDRESS;
    for n in 0..=cap {
        let (r, _) = send(connect().await, &wrong_guess(n as usize, extra)).await;
        match r.status {
            401 => continue,
            429 => return n,
            other => panic!("guess {n}: {other} {}", r.body_text()),
        }
    }
    cap + 1
}

async fn one_guess<Fut: std::future::Future<Output = TlsStream<TcpStream>>>(
    stream: Fut,
    extra: &str,
) -> u16 {
    send(stream.await, &wrong_guess(999, extra)).await.0.status
}

/// A client at 127.0.0.2 plays the proxy: what it forwards is believed, and every address
/// it names gets its own count; the same header from 127.0.0.1 is ignored.
#[tokio::test]
async fn x_forwarded_for_is_believed_only_from_a_trusted_proxy() {
    let s = start_with(&[("ESTGATE_TRUSTED_PROXIES", "127.0.0.2/32")]).await;
    let cfg = tls(&s);
    let addr = s.addr();
    let cap = estgate::ra::MAX_FAILURES_PER_ADDRESS;
    let via_proxy = || connect_from(cfg.clone(), local(2), addr);
    let direct = || connect_from(cfg.clone(), local(1), addr);
    let proxied = |ip: &str| format!("X-Forwarded-For: 203.0.113.250, {ip}\r\n");
    // 198.51.100.1 behind the proxy uses up its count ...
    let n = guesses_until_429(
        || async { via_proxy().await.unwrap() },
        &proxied("198.51.100.1"),
    )
    .await;
    assert_eq!(n, cap);
    // ... which is not the proxy's, nor another forwarded client's.
    assert_eq!(
        one_guess(
            async { via_proxy().await.unwrap() },
            &proxied("198.51.100.2")
        )
        .await,
        401
    );
    assert_eq!(
        one_guess(async { via_proxy().await.unwrap() }, "").await,
        401
    );
    // A direct client naming itself 198.51.100.1 is counted as itself.
    assert_eq!(
        one_guess(
            async { direct().await.unwrap() },
            "X-Forwarded-For: 198.51.100.1\r\n"
        )
        .await,
        401
    );
    // A direct client cannot escape its own count by naming another address.
    let n = guesses_until_429(
        || async { direct().await.unwrap() },
        "X-Forwarded-For: 198.51.100.77\r\n",
    )
    .await;
    assert_eq!(
        n,
        cap - 1,
        "the direct client's earlier guess counts on 127.0.0.1"
    );
    s.stop().await;
}

/// The same through a real reverse proxy: Debian's nginx on loopback, TLS to estgate,
/// appending the client's address to `X-Forwarded-For`. Clients reach nginx from
/// 127.0.0.3 and 127.0.0.4; nginx reaches estgate from 127.0.0.2, the trusted proxy.
/// Skipped, with a notice, where nginx is not installed; `conformance/run` installs it in
/// CI's image and runs this test.
#[tokio::test]
async fn behind_nginx_forwarded_clients_count_apart_and_cannot_spoof() {
    let Some(nginx) = ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
    else {
        println!("SKIP behind_nginx: nginx is not installed (apt-get install nginx-light)");
        return;
    };
    let s = start_with(&[("ESTGATE_TRUSTED_PROXIES", "127.0.0.2")]).await;
    let dir = s.dir.path().join("nginx");
    std::fs::create_dir_all(&dir).unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let conf = format!(
        "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\n\
         error_log {d}/error.log info;\nevents {{ worker_connections 64; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
         fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
         server {{\n    listen 127.0.0.1:{port} ssl;\n    ssl_certificate {cert};\n    ssl_certificate_key {key};\n\
         location / {{\n      proxy_pass https://{up};\n      proxy_ssl_verify off;\n      proxy_bind 127.0.0.2;\n\
         proxy_set_header Host localhost;\n      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n    }}\n  }}\n}}\n",
        d = dir.display(),
        cert = s.config.tls_cert.display(),
        key = s.config.tls_key.display(),
        up = s.addr(),
    );
    std::fs::write(dir.join("nginx.conf"), conf).unwrap();
    let mut child = std::process::Command::new(nginx)
        .arg("-p")
        .arg(&dir)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let front: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let cfg = tls(&s);
    let mut up = false;
    for _ in 0..100 {
        if connect_from(cfg.clone(), local(3), front).await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if !up {
        let _ = child.kill();
        panic!(
            "nginx did not come up: {}",
            std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
        );
    }
    let cap = estgate::ra::MAX_FAILURES_PER_ADDRESS;
    let from = |last: u8| {
        let cfg = cfg.clone();
        move || {
            let cfg = cfg.clone();
            async move { connect_from(cfg, local(last), front).await.unwrap() }
        }
    };
    let three = from(3);
    // 127.0.0.3 uses up its count through nginx; a forged header it adds changes nothing,
    // since nginx appends the address it saw.
    assert_eq!(guesses_until_429(&three, "").await, cap);
    assert_eq!(
        one_guess(three(), "X-Forwarded-For: 127.0.0.9\r\n").await,
        429
    );
    // 127.0.0.4 through the same nginx has its own count.
    assert_eq!(one_guess(from(4)(), "").await, 401);
    // Straight to estgate, 127.0.0.3 cannot pass as someone else: it is not a trusted
    // proxy, so its header is ignored and its own count applies.
    let direct = connect_from(cfg.clone(), local(3), s.addr());
    assert_eq!(
        one_guess(
            async { direct.await.unwrap() },
            "X-Forwarded-For: 127.0.0.9\r\n"
        )
        .await,
        429,
        "a forged X-Forwarded-For from an untrusted peer escaped its count"
    );
    let _ = child.kill();
    let _ = child.wait();
    s.stop().await;
}

/// SIGTERM drains like Ctrl-C: a request whose body is still arriving is answered, then the
/// process exits 0.
#[tokio::test]
async fn sigterm_lets_a_request_in_progress_finish_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_estgate"))
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("serve")
        .arg("--listen")
        .arg("127.0.0.1:0")
        .env(
            "ESTGATE_DATABASE_URL",
            format!(
                "sqlite://{}?mode=rwc",
                dir.path().join("estgate.db").display()
            ),
        )
        .env_remove("ESTGATE_LOG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if let Some(a) = line.trim().strip_prefix("estgate listening on https://") {
                let _ = tx.send(a.to_string());
            }
        }
    });
    let addr: SocketAddr = match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(a) => a.parse().unwrap(),
        Err(_) => {
            let _ = child.kill();
            panic!("the server did not start");
        }
    };
    let roots = std::fs::read(dir.path().join("data/ca.pem")).unwrap();
    let cfg = client_config(&TlsOptions {
        roots_pem: roots,
        client_cert: None,
        version: None,
        alpn_h2: false,
    })
    .unwrap();
    let c = connect_from(cfg, local(1), addr).await.unwrap();
    let mut c = BufReader::new(c);
    let body = base64_body(
        &make_csrs("ec-p256", "x.example.org", 1)
            .unwrap()
            .remove(0)
            .0,
    );
    let (a, b) = body.split_at(body.len() / 2);
    let head = format!(
        "POST /.well-known/est/devices/simpleenroll HTTP/1.1\r\nHost: localhost\r\n\
         Content-Type: application/pkcs10\r\nContent-Length: {}\r\n\r\n{a}",
        body.len()
    );
    c.get_mut().write_all(head.as_bytes()).await.unwrap();
    c.get_mut().flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pid = child.id();
    let killed = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(killed.success());
    tokio::time::sleep(Duration::from_millis(500)).await;
    c.get_mut().write_all(b.as_bytes()).await.unwrap();
    c.get_mut().flush().await.unwrap();
    let resp = read_response(&mut c)
        .await
        .expect("the request in progress was cut");
    // No demo data, so no such account: what matters is that the whole body was read (the
    // EST handler reads it first) and the request was answered.
    assert_eq!(resp.status, 404, "{}", resp.body_text());
    assert!(resp.body_text().contains("devices"), "{}", resp.body_text());
    let mut status = None;
    for _ in 0..200 {
        if let Some(st) = child.try_wait().unwrap() {
            status = Some(st);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let Some(status) = status else {
        let _ = child.kill();
        panic!("the server did not exit within 20 s of SIGTERM");
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(status.success(), "exit status {status:?}: {err}");
    assert!(
        err.contains("shutting down") && err.contains("SIGTERM"),
        "{err}"
    );
}
