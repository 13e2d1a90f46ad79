//! The one boundary error. Each module has its own error enum; the RA converts them to
//! this, and only `web/problem.rs` turns an `ErrorKind` into an HTTP status.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The request itself is malformed (bad base64, bad DER, missing field).
    Malformed,
    /// The CSR is well-formed but unacceptable (signature, key type).
    BadCsr,
    /// No or wrong credentials.
    Unauthorized,
    /// Authenticated, but policy forbids it.
    Forbidden,
    NotFound,
    /// A conflict with the current state: already used, or a name taken by another object.
    AlreadyUsed,
    /// `If-Match` names a version that is no longer current (a lost update).
    PreconditionFailed,
    Expired,
    /// Accepted, come back later (approval, email confirmation).
    Pending {
        retry_after: u64,
    },
    /// Too many failed attempts.
    RateLimited {
        retry_after: u64,
    },
    UnsupportedMediaType,
    PayloadTooLarge,
    NotImplemented,
    /// Overloaded or a dependency is down.
    Unavailable {
        retry_after: u64,
    },
    Internal,
}

/// An error safe to show to the client: `message` never carries secrets or internals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
    /// The request field at fault, when one is (JSON pointer-like path: `email`,
    /// `profiles[1]`); the admin API's problem documents name it.
    pub field: Option<String>,
}

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
            field: None,
        }
    }

    /// The same error, naming the request field at fault.
    pub fn at(mut self, field: impl Into<String>) -> Error {
        self.field = Some(field.into());
        self
    }

    /// A malformed value of one named field.
    pub fn invalid(field: &str, m: impl Into<String>) -> Error {
        Error::malformed(m).at(field)
    }

    /// A name or value already taken, naming the object that holds it.
    pub fn conflict(m: impl Into<String>) -> Error {
        Error::new(ErrorKind::AlreadyUsed, m)
    }

    pub fn malformed(m: impl Into<String>) -> Error {
        Error::new(ErrorKind::Malformed, m)
    }

    pub fn bad_csr(m: impl Into<String>) -> Error {
        Error::new(ErrorKind::BadCsr, m)
    }

    pub fn unauthorized(m: impl Into<String>) -> Error {
        Error::new(ErrorKind::Unauthorized, m)
    }

    pub fn forbidden(m: impl Into<String>) -> Error {
        Error::new(ErrorKind::Forbidden, m)
    }

    pub fn not_found(m: impl Into<String>) -> Error {
        Error::new(ErrorKind::NotFound, m)
    }

    /// Logs the detail with an id and returns a generic error that only names the id: the
    /// request's id while one is being answered (so the access line and this one share it),
    /// else a fresh one.
    pub fn internal(detail: impl fmt::Display) -> Error {
        let id = match request_id() {
            Some(id) => id.to_string(),
            None => crate::domain::generate_secret(12).expose().to_string(),
        };
        tracing::error!(error_id = %id, "internal error: {detail}");
        Error::new(
            ErrorKind::Internal,
            format!("internal error (reference {id})"),
        )
    }
}

tokio::task_local! {
    /// The id of the request being answered, set by the web layer around each request
    /// (`web/observe.rs`): error bodies name it as their reference and the access log line
    /// carries it, so an operator finds one from the other.
    static REQUEST_ID: std::sync::Arc<str>;
}

/// The id of the request this task is answering, if it is answering one.
pub fn request_id() -> Option<std::sync::Arc<str>> {
    REQUEST_ID.try_with(std::sync::Arc::clone).ok()
}

/// Runs `f` as the answer to the request `id`.
pub async fn with_request_id<F: std::future::Future>(id: std::sync::Arc<str>, f: F) -> F::Output {
    REQUEST_ID.scope(id, f).await
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}
