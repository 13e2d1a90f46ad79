//! Starting a real server with demo data, and checking certificates independently.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use estgate::app::{self, Running};
use estgate::config::{Config, Overrides};
use estgate::demo::Demo;
use estgate::domain::{Clock, SystemClock};
use estgate_bench::{client_config, Connection, Response, TlsOptions, TlsVersion};

pub struct Server {
    pub running: Option<Running>,
    pub config: Config,
    pub demo: Demo,
    pub dir: tempfile::TempDir,
}

/// The public base URL the test server's certificates carry for CRL, OCSP and caIssuers.
pub const PUBLIC_HTTP: &str = "http://pki.example.org";

pub async fn start() -> Server {
    start_with(&[]).await
}

/// `start` with more configuration, given as the `ESTGATE_*` variables that set it.
pub async fn start_with(extra: &[(&str, &str)]) -> Server {
    let extra: Vec<(String, String)> = extra
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let db = estgate::testing::database_url(dir.path()).await.unwrap();
    let overrides = Overrides {
        data_dir: Some(dir.path().join("data")),
        listen: Some("127.0.0.1:0".into()),
        // The plain-HTTP listener (CRL, caIssuers, OCSP) on a free port.
        http_listen: Some("127.0.0.1:0".into()),
    };
    // Certificates name a public host, as in production: pkilint refuses loopback URLs in
    // S/MIME certificates (cabf.internal_domain_name). OCSP and CRL fetches in the tests go
    // to the bound address.
    let env = move |k: &str| match k {
        "ESTGATE_DATABASE_URL" => Some(db.clone()),
        "ESTGATE_HTTP_PUBLIC_URL" => Some(PUBLIC_HTTP.to_string()),
        _ => extra
            .iter()
            .find(|(var, _)| var == k)
            .map(|(_, v)| v.clone()),
    };
    let config = Config::load(None, env, &overrides).unwrap();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    app::prepare_files(&config, clock.now()).unwrap();
    let demo = estgate::demo::seed(&app::admin_ra(&config).await.unwrap())
        .await
        .unwrap();
    let running = app::start(&config, clock).await.unwrap();
    Server {
        running: Some(running),
        config,
        demo,
        dir,
    }
}

impl Server {
    pub fn addr(&self) -> std::net::SocketAddr {
        self.running.as_ref().unwrap().addr
    }

    pub fn http_addr(&self) -> std::net::SocketAddr {
        self.running.as_ref().unwrap().http_addr.unwrap()
    }

    pub fn roots_pem(&self) -> Vec<u8> {
        std::fs::read(&self.config.trust_anchor).unwrap()
    }

    pub fn password(&self, label: &str) -> (String, String) {
        let a = self
            .demo
            .accounts
            .iter()
            .find(|a| a.label == label)
            .unwrap();
        (a.username.clone(), a.password.clone())
    }

    pub async fn connect_with(
        &self,
        version: Option<TlsVersion>,
        client_cert: Option<(Vec<u8>, Vec<u8>)>,
        alpn_h2: bool,
    ) -> Connection {
        let cfg = client_config(&TlsOptions {
            roots_pem: self.roots_pem(),
            client_cert,
            version,
            alpn_h2,
        })
        .unwrap();
        Connection::connect(self.addr(), "localhost", cfg)
            .await
            .unwrap()
    }

    pub async fn connect(&self) -> Connection {
        self.connect_with(None, None, false).await
    }

    pub fn issuing_ca_pem(&self) -> PathBuf {
        let chain = std::fs::read_to_string(&self.config.ca_chain).unwrap();
        let first = chain
            .split_inclusive("-----END CERTIFICATE-----\n")
            .next()
            .unwrap();
        let p = self.dir.path().join("issuing.pem");
        std::fs::write(&p, first).unwrap();
        p
    }

    /// An administrator made in-process, as the bootstrap `estgate admin add` makes one,
    /// and an API key of it: (admin id, key).
    pub async fn admin_key(
        &self,
        email: &str,
        role: estgate::domain::Role,
        organisation_ids: Vec<i64>,
        department_ids: Vec<i64>,
    ) -> (i64, String) {
        use estgate::ra::admin::{AdminRequest, Caller};
        let ra = &self.running.as_ref().unwrap().ra;
        let op = Caller::operator("it");
        let (admin, _) = ra
            .add_admin(
                &op,
                AdminRequest {
                    name: email.into(),
                    email: email.into(),
                    role,
                    organisation_ids,
                    department_ids,
                    password: None,
                },
            )
            .await
            .unwrap();
        let key = ra
            .create_api_key(&op, Some(admin.id), "it", 30)
            .await
            .unwrap();
        (admin.id, key.token.expose().to_string())
    }

    /// The server's database, opened beside it: tests read rows the way an operator's SQL
    /// would, and the server hands out no store of its own.
    pub async fn store(&self) -> estgate::store::Store {
        estgate::store::Store::open(&self.config.database_url)
            .await
            .unwrap()
    }

    pub async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.stop().await;
        }
    }
}

pub fn pem(der: &[u8]) -> String {
    estgate::ca::pem_certificate(der)
}

/// With `ESTGATE_LINT_DIR` set (`.ci/run` sets it), keeps a certificate the tests received
/// for `conformance/lint-certs`, which runs pkilint over all of them after the tests.
pub fn keep_for_lint(der: &[u8]) {
    if let Some(dir) = std::env::var_os("ESTGATE_LINT_DIR") {
        let dir = PathBuf::from(dir);
        let _ = std::fs::create_dir_all(&dir);
        let _ = std::fs::write(
            dir.join(format!("{}.der", estgate::ra::sha256_hex(der))),
            der,
        );
    }
}

/// `openssl verify` of `leaf` against the server's root with the issuing CA as intermediate.
pub fn openssl_verify(server: &Server, leaf_der: &[u8], purpose: Option<&str>) {
    keep_for_lint(leaf_der);
    let leaf = server
        .dir
        .path()
        .join(format!("leaf-{}.pem", estgate::ra::sha256_hex(leaf_der)));
    std::fs::write(&leaf, pem(leaf_der)).unwrap();
    let mut cmd = Command::new("openssl");
    cmd.arg("verify")
        .arg("-CAfile")
        .arg(&server.config.trust_anchor)
        .arg("-untrusted")
        .arg(server.issuing_ca_pem());
    if let Some(p) = purpose {
        cmd.arg("-purpose").arg(p);
    }
    let out = cmd.arg(&leaf).output().expect("openssl must be installed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains(": OK"),
        "openssl verify: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn openssl(args: &[&str], dir: &Path) -> String {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl must be installed");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The single certificate of a certs-only response body.
pub fn single_cert(resp: &Response) -> Vec<u8> {
    let der = estgate_protocol::transfer::decode_base64(&resp.body).unwrap();
    let mut certs = estgate_protocol::pkcs7::parse_certs_only(&der).unwrap();
    assert_eq!(certs.len(), 1);
    keep_for_lint(&certs[0]);
    certs.remove(0)
}
