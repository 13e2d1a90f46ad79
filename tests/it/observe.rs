//! What an operator sees: the access line of every request (read from a real `estgate serve`
//! process's stderr) never holds a secret but does hold each refusal; request ids; the
//! probes; the enrollment URLs a normal `serve` prints.

use std::io::{BufRead, Read};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use estgate_bench::{basic_auth, client_config, make_csrs, Connection, Response, TlsOptions};
use sea_orm::{ConnectionTrait, Database, Statement};

use crate::support::{self, Server};

/// `estgate serve` (no `--demo`) on the in-process server's data directory and database.
struct Serve {
    child: Child,
    addr: SocketAddr,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl Serve {
    fn start(s: &Server, env: &[(&str, &str)]) -> Serve {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_estgate"));
        cmd.arg("--data-dir")
            .arg(&s.config.data_dir)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env("ESTGATE_DATABASE_URL", &s.config.database_url)
            .env_remove("ESTGATE_LOG")
            .env_remove("ESTGATE_LOG_FORMAT")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let out = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let lines = stdout.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines() {
                let Ok(line) = line else { return };
                if let Some(a) = line.trim().strip_prefix("estgate listening on https://") {
                    let _ = tx.send(a.to_string());
                }
                lines.lock().unwrap().push(line);
            }
        });
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = std::io::BufReader::new(err).read_to_string(&mut s);
            s
        });
        let addr = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(a) => a.parse().unwrap(),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("estgate serve did not start: {}", stderr.join().unwrap());
            }
        };
        Serve {
            child,
            addr,
            stdout,
            stderr: Some(stderr),
        }
    }

    async fn connect(&self, s: &Server) -> Connection {
        let cfg = client_config(&TlsOptions {
            roots_pem: s.roots_pem(),
            client_cert: None,
            version: None,
            alpn_h2: false,
        })
        .unwrap();
        Connection::connect(self.addr, "localhost", cfg)
            .await
            .unwrap()
    }

    /// Stops the process and returns everything it wrote to stderr.
    fn stop(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.stderr.take().unwrap().join().unwrap()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn form_base(s: &Server) -> String {
    let url = &s.demo.enroll_url;
    url[url.find("/enroll/").unwrap()..].to_string()
}

fn b64(der: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(der)
}

/// The `name=value` pairs of every `Set-Cookie`, as a `Cookie` header sends them back.
fn cookies(r: &Response) -> Vec<String> {
    r.headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("set-cookie"))
        .filter_map(|(_, v)| v.split(';').next().map(str::to_string))
        .collect()
}

/// Requests that carry each kind of secret, and refusals of each status, against a real
/// `serve` logging JSON: every request has its access line with its fields, the refusals
/// their reasons, and no secret appears anywhere in the process's output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_lines_name_each_request_and_never_a_secret() {
    let s = support::start().await;
    let srv = Serve::start(&s, &[("ESTGATE_LOG_FORMAT", "json")]);
    let mut c = srv.connect(&s).await;
    let (staff_user, staff_secret) = s.password("staff");
    let (dev_user, dev_code) = s.password("devices");
    let (_, visitor_code) = s.password("visitors");
    let wrong_password = "WrongBasicPassword4711";
    let p12_password = "Pkcs12PasswordSecret0815";
    let p12_header = b64(p12_password.as_bytes());
    let token = "ConfirmTokenSecret9Wq2x7Lm3";
    let query_secret = "QueryStringSecret5521";
    let mut secrets: Vec<String> = vec![
        staff_secret.clone(),
        dev_code.clone(),
        visitor_code.clone(),
        wrong_password.into(),
        p12_password.into(),
        p12_header.clone(),
        token.into(),
        query_secret.into(),
    ];
    let ua = ("User-Agent", "it");
    let pkcs10 = ("Content-Type", "application/pkcs10");

    // EST: Basic with a secret ID (issued), a wrong password (401), none (401), an access
    // code (issued), a PKCS12-Password header (issued), a wrong media type (415).
    let csr = b64(&make_csrs("ec-p256", "ignored", 1).unwrap().remove(0).0);
    let staff_auth = basic_auth(&staff_user, &staff_secret);
    secrets.push(staff_auth.clone());
    let r = c
        .request(
            "POST",
            "/.well-known/est/staff/simpleenroll",
            &[
                ua,
                pkcs10,
                ("Authorization", &staff_auth),
                ("X-Request-Id", "it-issue.1"),
            ],
            csr.as_bytes(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body_text());
    assert_eq!(r.header("x-request-id"), Some("it-issue.1"));
    let wrong_auth = basic_auth(&staff_user, wrong_password);
    secrets.push(wrong_auth.clone());
    let r = c
        .request(
            "POST",
            "/.well-known/est/staff/simpleenroll",
            &[
                ua,
                pkcs10,
                ("Authorization", &wrong_auth),
                ("X-Request-Id", "it-401"),
            ],
            csr.as_bytes(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 401, "{}", r.body_text());
    assert!(
        r.body_text().contains("(reference it-401)"),
        "{}",
        r.body_text()
    );
    let r = c
        .request(
            "POST",
            "/.well-known/est/staff/simpleenroll",
            &[ua, pkcs10],
            csr.as_bytes(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 401, "{}", r.body_text());
    let generated = r.header("x-request-id").unwrap().to_string();
    assert!(r.body_text().contains(&generated), "{}", r.body_text());
    let dev_csr = b64(&make_csrs("ec-p256", &dev_user, 1).unwrap().remove(0).0);
    let dev_auth = basic_auth(&dev_user, &dev_code);
    secrets.push(dev_auth.clone());
    let r = c
        .request(
            "POST",
            "/.well-known/est/devices/simpleenroll",
            &[ua, pkcs10, ("Authorization", &dev_auth)],
            dev_csr.as_bytes(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body_text());
    let rsa = b64(&make_csrs("rsa-2048", "ignored", 1).unwrap().remove(0).0);
    let r = c
        .request(
            "POST",
            "/.well-known/est/staff/serverkeygen",
            &[
                ua,
                pkcs10,
                ("Authorization", &staff_auth),
                ("Accept", "application/pkcs12"),
                ("PKCS12-Password", &p12_header),
            ],
            rsa.as_bytes(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body_text());
    let r = c
        .request(
            "POST",
            "/.well-known/est/staff/simpleenroll",
            &[
                ua,
                ("Content-Type", "text/plain"),
                ("Authorization", &staff_auth),
            ],
            csr.as_bytes(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 415, "{}", r.body_text());
    // An id that is too long or unsafe is replaced, not echoed.
    let unsafe_id = "x".repeat(65);
    let r = c
        .request(
            "GET",
            &format!("/nothing/here?token={query_secret}"),
            &[ua, ("X-Request-Id", &unsafe_id)],
            b"",
        )
        .await
        .unwrap();
    assert_eq!(r.status, 404, "{}", r.body_text());
    let replaced = r.header("x-request-id").unwrap().to_string();
    assert_ne!(replaced, unsafe_id);
    assert!(r.body_text().contains(&replaced), "{}", r.body_text());

    // The form: sign-in page, a POST without CSRF (403), a secret ID (signed in), an access
    // code, a confirmation link.
    let base = form_base(&s);
    let page = c.request("GET", &base, &[ua], b"").await.unwrap();
    assert_eq!(page.status, 200);
    let mut jar = cookies(&page);
    let csrf = jar
        .iter()
        .find_map(|c| c.strip_prefix("__Host-estgate-csrf="))
        .unwrap()
        .to_string();
    secrets.push(csrf.clone());
    let form = ("Content-Type", "application/x-www-form-urlencoded");
    let r = c
        .request(
            "POST",
            &format!("{base}/secret-id"),
            &[ua, form, ("X-Request-Id", "it-403")],
            format!("email={staff_user}&secret_id={staff_secret}").as_bytes(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 403, "{}", r.body_text());
    assert!(
        r.body_text().contains("Reference it-403"),
        "{}",
        r.body_text()
    );
    let cookie = jar.join("; ");
    let r = c
        .request(
            "POST",
            &format!("{base}/secret-id"),
            &[ua, form, ("Cookie", &cookie)],
            format!("csrf={csrf}&email={staff_user}&secret_id={staff_secret}").as_bytes(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 303, "{}", r.body_text());
    jar.extend(cookies(&r));
    for c in &jar {
        secrets.push(c.split_once('=').unwrap().1.to_string());
    }
    let cookie = jar.join("; ");
    let r = c
        .request(
            "POST",
            &format!("{base}/account/code"),
            &[ua, form, ("Cookie", &cookie)],
            format!("csrf={csrf}&access_code={visitor_code}").as_bytes(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 303, "{}", r.body_text());
    let r = c
        .request("GET", &format!("{base}/confirm?token={token}"), &[ua], b"")
        .await
        .unwrap();
    assert!(r.status >= 400, "{}", r.body_text());
    // The probes answer, and stay out of the INFO log.
    let r = c.request("GET", "/healthz", &[ua], b"").await.unwrap();
    assert_eq!((r.status, r.body_text().as_str()), (200, "ok\n"));

    let log = srv.stop();
    for secret in &secrets {
        assert!(
            !log.contains(secret.as_str()),
            "the log holds the secret {secret:?}:\n{log}"
        );
    }
    let lines: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|v: &serde_json::Value| v["target"] == "estgate::access")
        .collect();
    let fields = |id: &str| {
        lines
            .iter()
            .map(|l| &l["fields"])
            .find(|f| f["request_id"] == id)
            .unwrap_or_else(|| panic!("no access line for {id}:\n{log}"))
            .clone()
    };
    let issued = fields("it-issue.1");
    assert_eq!(issued["method"], "POST");
    assert_eq!(issued["route"], "/.well-known/est/{label}/{op}");
    assert_eq!(issued["status"], 200);
    assert_eq!(
        (issued["label"].clone(), issued["op"].clone()),
        ("staff".into(), "simpleenroll".into())
    );
    assert!(issued["duration_ms"].as_f64().unwrap() > 0.0, "{issued}");
    assert!(
        issued["client"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{issued}"
    );
    assert!(issued.get("reason").is_none(), "{issued}");
    let refused = fields("it-401");
    assert_eq!(refused["status"], 401);
    assert!(
        refused["reason"].as_str().unwrap().contains("secret"),
        "{refused}"
    );
    assert!(fields(&generated)["reason"].is_string());
    let not_found = fields(&replaced);
    assert_eq!(not_found["status"], 404);
    assert_eq!(not_found["path"], "/nothing/here");
    assert!(not_found["reason"]
        .as_str()
        .unwrap()
        .contains("nothing is served at this path"));
    let csrf_refused = fields("it-403");
    assert_eq!(csrf_refused["status"], 403);
    assert_eq!(csrf_refused["step"], "secret-id");
    assert_eq!(csrf_refused["route"], "/enroll/{ext}/secret-id");
    assert!(csrf_refused["reason"]
        .as_str()
        .unwrap()
        .contains("not sent from this site"));
    let statuses: Vec<u64> = lines
        .iter()
        .filter_map(|l| l["fields"]["status"].as_u64())
        .collect();
    for status in [200, 303, 401, 403, 404, 415] {
        assert!(
            statuses.contains(&status),
            "no {status} line: {statuses:?}\n{log}"
        );
    }
    let media = lines
        .iter()
        .map(|l| &l["fields"])
        .find(|f| f["status"] == 415)
        .unwrap();
    assert!(
        media["reason"].as_str().unwrap().contains("Content-Type"),
        "{media}"
    );
    assert!(
        !lines.iter().any(|l| l["fields"]["route"] == "/healthz"),
        "probes are logged below INFO:\n{log}"
    );
    s.stop().await;
}

/// A normal `serve` prints the form URL of each endpoint and the EST base of each labelled
/// account; the text access line is there; the probes answer with no-store and an id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_prints_enrollment_urls_and_answers_probes() {
    let s = support::start().await;
    let srv = Serve::start(&s, &[]);
    // The URLs follow the listening line; give the printer a moment.
    let mut printed = String::new();
    for _ in 0..100 {
        printed = srv.stdout.lock().unwrap().join("\n");
        if printed.contains("/.well-known/est/visitors/") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ext = form_base(&s);
    assert!(
        printed
            .lines()
            .any(|l| l.starts_with("enrollment form") && l.ends_with(&ext)),
        "{printed}"
    );
    for label in ["staff", "devices", "visitors"] {
        assert!(
            printed.lines().any(|l| l.starts_with("EST account")
                && l.ends_with(&format!("/.well-known/est/{label}/"))),
            "{label}: {printed}"
        );
    }
    let mut c = srv.connect(&s).await;
    for (path, body) in [("/healthz", "ok\n"), ("/readyz", "ready\n")] {
        let r = c.request("GET", path, &[], b"").await.unwrap();
        assert_eq!((r.status, r.body_text().as_str()), (200, body), "{path}");
        assert_eq!(r.header("cache-control"), Some("no-store"), "{path}");
        assert!(r.header("x-request-id").is_some(), "{path}");
    }
    let r = c
        .request("GET", "/nowhere", &[("X-Request-Id", "it-text-404")], b"")
        .await
        .unwrap();
    assert_eq!(r.status, 404);
    let log = srv.stop();
    let line = log
        .lines()
        .find(|l| l.contains("it-text-404"))
        .unwrap_or_else(|| panic!("no access line:\n{log}"));
    assert!(
        line.contains("estgate::access")
            && line.contains("status=404")
            && line.contains("method=GET")
            && line.contains("reason="),
        "{line}"
    );
    s.stop().await;
}

/// `/readyz` answers 503 naming what is missing when the database lacks a migration this
/// build has (as after restoring an older backup), and 200 again once it is back.
#[tokio::test]
async fn readyz_names_a_missing_migration() {
    let s = support::start().await;
    let mut c = s.connect().await;
    let r = c.request("GET", "/readyz", &[], b"").await.unwrap();
    assert_eq!((r.status, r.body_text().as_str()), (200, "ready\n"));
    let db = Database::connect(&s.config.database_url).await.unwrap();
    let backend = db.get_database_backend();
    let row = db
        .query_one(Statement::from_string(
            backend,
            "SELECT version, applied_at FROM seaql_migrations ORDER BY version DESC",
        ))
        .await
        .unwrap()
        .unwrap();
    let version: String = row.try_get("", "version").unwrap();
    let applied_at: i64 = row.try_get("", "applied_at").unwrap();
    db.execute_unprepared(&format!(
        "DELETE FROM seaql_migrations WHERE version = '{version}'"
    ))
    .await
    .unwrap();
    let r = c.request("GET", "/readyz", &[], b"").await.unwrap();
    assert_eq!(r.status, 503, "{}", r.body_text());
    assert_eq!(
        r.body_text(),
        format!("not ready: database migrations not applied: {version}\n")
    );
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let r = c.request("GET", "/healthz", &[], b"").await.unwrap();
    assert_eq!(r.status, 200, "alive while not ready");
    db.execute_unprepared(&format!(
        "INSERT INTO seaql_migrations (version, applied_at) VALUES ('{version}', {applied_at})"
    ))
    .await
    .unwrap();
    let r = c.request("GET", "/readyz", &[], b"").await.unwrap();
    assert_eq!((r.status, r.body_text().as_str()), (200, "ready\n"));
    s.stop().await;
}

/// `/readyz` answers 503 when no new connection to the database can be made (its SQLite
/// file replaced by a directory; on PostgreSQL the database closed to new connections),
/// while the connections already open keep `/healthz` answering, and 200 once it is back.
/// The probe's own connection is opened at the first probe, so none may come before.
#[tokio::test]
async fn readyz_says_when_the_database_cannot_be_reached() {
    let s = support::start().await;
    let url = s.config.database_url.clone();
    let postgres = std::env::var("ESTGATE_TEST_DATABASE_URL").ok();
    let moved = s.dir.path().join("moved.db");
    let file = s.dir.path().join("test.db");
    let admin = match &postgres {
        Some(base) => {
            let name = url.rsplit('/').next().unwrap().to_string();
            let db = Database::connect(base).await.unwrap();
            db.execute_unprepared(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false"))
                .await
                .unwrap();
            Some((db, name))
        }
        None => {
            assert!(url.contains(&*file.to_string_lossy()), "{url}");
            std::fs::rename(&file, &moved).unwrap();
            std::fs::create_dir(&file).unwrap();
            None
        }
    };
    let mut c = s.connect().await;
    let r = c.request("GET", "/readyz", &[], b"").await.unwrap();
    let body = r.body_text();
    let r2 = c.request("GET", "/healthz", &[], b"").await.unwrap();
    match &admin {
        Some((db, name)) => {
            db.execute_unprepared(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"))
                .await
                .unwrap();
        }
        None => {
            std::fs::remove_dir(&file).unwrap();
            std::fs::rename(&moved, &file).unwrap();
        }
    }
    assert_eq!(r.status, 503, "{body}");
    assert!(
        body == "not ready: the database does not answer\n"
            || body == "not ready: the database did not answer within 2 s\n",
        "{body}"
    );
    assert_eq!(r2.status, 200, "alive while not ready");
    let r = c.request("GET", "/readyz", &[], b"").await.unwrap();
    assert_eq!((r.status, r.body_text().as_str()), (200, "ready\n"));
    s.stop().await;
}
