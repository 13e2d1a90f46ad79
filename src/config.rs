//! Configuration: one TOML file, every key overridable by `ESTGATE_<KEY>` in the
//! environment, validated into `Config`. An invalid value stops the start and names the key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::ca::dev::PkiFiles;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid config key `{key}`: {message}")]
    Invalid { key: &'static str, message: String },
}

/// The file as written; every field optional so the environment can fill it in.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: Option<String>,
    public_url: Option<String>,
    data_dir: Option<String>,
    database_url: Option<String>,
    log_format: Option<String>,
    tls_cert: Option<String>,
    tls_key: Option<String>,
    ca_chain: Option<String>,
    ca_key: Option<String>,
}

/// Every key, its environment variable and its meaning; used for help text and docs.
pub const KEYS: &[(&str, &str, &str)] = &[
    ("listen", "ESTGATE_LISTEN", "address:port to listen on (default 127.0.0.1:8443)"),
    ("public_url", "ESTGATE_PUBLIC_URL", "base URL clients use (default https://localhost:<port>)"),
    ("data_dir", "ESTGATE_DATA_DIR", "directory for the SQLite database and generated keys (default ./estgate-data)"),
    ("database_url", "ESTGATE_DATABASE_URL", "sqlite://… or postgres://… (default SQLite in data_dir)"),
    ("log_format", "ESTGATE_LOG_FORMAT", "text or json (default text)"),
    ("tls_cert", "ESTGATE_TLS_CERT", "PEM server certificate chain (default: generated in data_dir)"),
    ("tls_key", "ESTGATE_TLS_KEY", "PEM server private key"),
    ("ca_chain", "ESTGATE_CA_CHAIN", "PEM issuing CA certificate, then its chain up to the root (default: development CA in data_dir)"),
    ("ca_key", "ESTGATE_CA_KEY", "PEM private key of the issuing CA"),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub public_url: String,
    pub data_dir: PathBuf,
    pub database_url: String,
    pub log_format: LogFormat,
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    pub ca_chain: PathBuf,
    pub ca_key: PathBuf,
    /// True when no CA was configured: `serve` makes the development CA in `data_dir`.
    pub dev_ca: bool,
    /// True when no TLS certificate was configured: `serve` issues one for localhost.
    pub dev_tls: bool,
    pub trust_anchor: PathBuf,
}

/// Command-line values; they win over the file and the environment.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub data_dir: Option<PathBuf>,
    pub listen: Option<String>,
}

fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        message: message.into(),
    }
}

impl Config {
    /// Reads the file (if any), applies `ESTGATE_*` variables from `env`, then `overrides`.
    pub fn load(
        path: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
        overrides: &Overrides,
    ) -> Result<Config, ConfigError> {
        let mut raw = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.to_path_buf(),
                    source,
                })?;
                toml::from_str::<RawConfig>(&text).map_err(|e| ConfigError::Parse {
                    path: p.to_path_buf(),
                    message: e.message().to_string(),
                })?
            }
            None => RawConfig::default(),
        };
        let fields: [(&str, &mut Option<String>); 9] = [
            ("ESTGATE_LISTEN", &mut raw.listen),
            ("ESTGATE_PUBLIC_URL", &mut raw.public_url),
            ("ESTGATE_DATA_DIR", &mut raw.data_dir),
            ("ESTGATE_DATABASE_URL", &mut raw.database_url),
            ("ESTGATE_LOG_FORMAT", &mut raw.log_format),
            ("ESTGATE_TLS_CERT", &mut raw.tls_cert),
            ("ESTGATE_TLS_KEY", &mut raw.tls_key),
            ("ESTGATE_CA_CHAIN", &mut raw.ca_chain),
            ("ESTGATE_CA_KEY", &mut raw.ca_key),
        ];
        for (var, slot) in fields {
            if let Some(v) = env(var).filter(|v| !v.is_empty()) {
                *slot = Some(v);
            }
        }
        if let Some(d) = &overrides.data_dir {
            raw.data_dir = Some(d.to_string_lossy().into_owned());
        }
        if let Some(l) = &overrides.listen {
            raw.listen = Some(l.clone());
        }
        Config::validate(raw)
    }

    fn validate(raw: RawConfig) -> Result<Config, ConfigError> {
        let listen: SocketAddr = raw
            .listen
            .as_deref()
            .unwrap_or("127.0.0.1:8443")
            .parse()
            .map_err(|e| invalid("listen", format!("not an address:port ({e})")))?;
        let public_url = match raw.public_url {
            Some(u) => {
                if !u.starts_with("https://") || u.len() <= "https://".len() {
                    return Err(invalid("public_url", "must be an https:// URL"));
                }
                u.trim_end_matches('/').to_string()
            }
            None => format!("https://localhost:{}", listen.port()),
        };
        let data_dir = PathBuf::from(raw.data_dir.unwrap_or_else(|| "./estgate-data".into()));
        if data_dir.as_os_str().is_empty() {
            return Err(invalid("data_dir", "must not be empty"));
        }
        let database_url = match raw.database_url {
            Some(u)
                if u.starts_with("sqlite:")
                    || u.starts_with("postgres://")
                    || u.starts_with("postgresql://") =>
            {
                u
            }
            Some(_) => {
                return Err(invalid(
                    "database_url",
                    "must start with sqlite: or postgres://",
                ))
            }
            None => format!(
                "sqlite://{}?mode=rwc",
                data_dir.join("estgate.db").display()
            ),
        };
        let log_format = match raw.log_format.as_deref().unwrap_or("text") {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                return Err(invalid(
                    "log_format",
                    format!("{other:?} is neither text nor json"),
                ))
            }
        };
        let files = PkiFiles::in_dir(&data_dir);
        let (ca_chain, ca_key, dev_ca) = match (raw.ca_chain, raw.ca_key) {
            (Some(c), Some(k)) => (existing("ca_chain", c)?, existing("ca_key", k)?, false),
            (None, None) => (files.ca_chain.clone(), files.ca_key.clone(), true),
            (Some(_), None) => return Err(invalid("ca_key", "required when ca_chain is set")),
            (None, Some(_)) => return Err(invalid("ca_chain", "required when ca_key is set")),
        };
        let (tls_cert, tls_key, dev_tls) = match (raw.tls_cert, raw.tls_key) {
            (Some(c), Some(k)) => (existing("tls_cert", c)?, existing("tls_key", k)?, false),
            (None, None) => (files.tls_cert.clone(), files.tls_key.clone(), true),
            (Some(_), None) => return Err(invalid("tls_key", "required when tls_cert is set")),
            (None, Some(_)) => return Err(invalid("tls_cert", "required when tls_key is set")),
        };
        let trust_anchor = files.trust_anchor.clone();
        Ok(Config {
            listen,
            public_url,
            data_dir,
            database_url,
            log_format,
            tls_cert,
            tls_key,
            ca_chain,
            ca_key,
            dev_ca,
            dev_tls,
            trust_anchor,
        })
    }
}

fn existing(key: &'static str, path: String) -> Result<PathBuf, ConfigError> {
    let p = PathBuf::from(path);
    if !p.is_file() {
        return Err(invalid(
            key,
            format!("{} is not a readable file", p.display()),
        ));
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn defaults_make_a_local_dev_server() {
        let c = Config::load(None, no_env, &Overrides::default()).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8443");
        assert_eq!(c.public_url, "https://localhost:8443");
        assert!(c
            .database_url
            .starts_with("sqlite://./estgate-data/estgate.db"));
        assert!(c.dev_ca && c.dev_tls);
    }

    #[test]
    fn environment_overrides_file_and_flags_override_environment() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("estgate.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:9000\"\nlog_format = \"text\"\n",
        )
        .unwrap();
        let env = |k: &str| (k == "ESTGATE_LOG_FORMAT").then(|| "json".to_string());
        let o = Overrides {
            listen: Some("127.0.0.1:9100".into()),
            ..Default::default()
        };
        let c = Config::load(Some(&file), env, &o).unwrap();
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(c.listen.port(), 9100);
    }

    #[test]
    fn invalid_values_name_their_key() {
        let cases = [
            ("ESTGATE_LISTEN", "nonsense", "listen"),
            ("ESTGATE_LOG_FORMAT", "xml", "log_format"),
            ("ESTGATE_DATABASE_URL", "mysql://x", "database_url"),
            ("ESTGATE_PUBLIC_URL", "http://x", "public_url"),
            ("ESTGATE_CA_CHAIN", "/nonexistent.pem", "ca_key"),
        ];
        for (var, value, key) in cases {
            let env = |k: &str| (k == var).then(|| value.to_string());
            let err = Config::load(None, env, &Overrides::default()).unwrap_err();
            assert!(
                err.to_string().contains(&format!("`{key}`")),
                "{var}: {err}"
            );
        }
    }

    #[test]
    fn unknown_file_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("estgate.toml");
        std::fs::write(&file, "lisen = \"127.0.0.1:9000\"\n").unwrap();
        let err = Config::load(Some(&file), no_env, &Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("lisen"), "{err}");
    }
}
