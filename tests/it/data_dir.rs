//! The data directory: keys written once with mode 0600, reused on restart; a configured CA
//! is used instead of the development one.

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use estgate::app;
use estgate::config::{Config, Overrides};
use estgate::domain::{Clock, SystemClock};

fn config(dir: &std::path::Path, env: impl Fn(&str) -> Option<String>) -> Config {
    let overrides = Overrides {
        data_dir: Some(dir.to_path_buf()),
        listen: Some("127.0.0.1:0".into()),
        ..Overrides::default()
    };
    Config::load(None, env, &overrides).unwrap()
}

fn mode(p: &std::path::Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn keys_are_private_and_reused_on_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let c = config(&data, |_| None);
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let first = app::start(&c, clock.clone()).await.unwrap();
    first.stop().await;
    let files = [
        "ca.pem",
        "ca-chain.pem",
        "issuing-ca.key",
        "root-ca.key",
        "tls.pem",
        "tls.key",
    ];
    let before: Vec<Vec<u8>> = files
        .iter()
        .map(|f| std::fs::read(data.join(f)).unwrap())
        .collect();
    for key in ["issuing-ca.key", "root-ca.key", "tls.key"] {
        assert_eq!(mode(&data.join(key)), 0o600, "{key}");
    }
    assert_eq!(mode(&data), 0o700);
    let second = app::start(&c, clock).await.unwrap();
    second.stop().await;
    let after: Vec<Vec<u8>> = files
        .iter()
        .map(|f| std::fs::read(data.join(f)).unwrap())
        .collect();
    assert_eq!(
        before, after,
        "a restart must not regenerate keys or certificates"
    );
}

#[tokio::test]
async fn demo_credentials_file_is_private_and_complete() {
    let s = crate::support::start().await;
    let path = s.dir.path().join("demo-credentials.toml");
    s.demo.write(&path).unwrap();
    assert_eq!(mode(&path), 0o600);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.starts_with("enroll_url = \"https://localhost:"),
        "{text}"
    );
    assert_eq!(text.matches("[[accounts]]").count(), 3);
    for label in ["staff", "devices", "visitors"] {
        assert!(text.contains(&format!("label = \"{label}\"")), "{label}");
    }
    for a in &s.demo.accounts {
        assert!(text.contains(&format!("label = \"{}\"", a.label)));
        assert!(text.contains(&format!("password = \"{}\"", a.password)));
    }
    s.stop().await;
}

#[tokio::test]
async fn a_configured_ca_is_used_and_no_development_ca_is_made() {
    // An operator's CA, made elsewhere.
    let dir = tempfile::tempdir().unwrap();
    let theirs = dir.path().join("their-ca");
    std::fs::create_dir_all(&theirs).unwrap();
    let files = estgate::ca::dev::PkiFiles::in_dir(&theirs);
    estgate::ca::dev::ensure_dev_ca(&files, SystemClock.now()).unwrap();
    let (chain, key) = (
        files.ca_chain.display().to_string(),
        files.ca_key.display().to_string(),
    );
    let data = dir.path().join("data");
    let c = config(&data, move |k| match k {
        "ESTGATE_CA_CHAIN" => Some(chain.clone()),
        "ESTGATE_CA_KEY" => Some(key.clone()),
        _ => None,
    });
    assert!(!c.dev_ca);
    let running = app::start(&c, Arc::new(SystemClock)).await.unwrap();
    assert_eq!(running.ra.ca_chain().len(), 2);
    running.stop().await;
    assert!(
        !data.join("issuing-ca.key").exists(),
        "no development CA when one is configured"
    );
    assert_eq!(
        std::fs::read_to_string(data.join("ca.pem")).unwrap(),
        std::fs::read_to_string(&files.trust_anchor)
            .unwrap()
            .replace("\r\n", "\n"),
        "the configured chain's root is published as the trust anchor"
    );
}
