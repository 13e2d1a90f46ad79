//! EST (RFC 7030 + RFC 8951) over HTTP: routing, media types, transfer encoding. Every
//! decision is the RA's.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::{Extension, Router};
use base64::Engine;
use estgate_protocol::{csrattrs, media, multipart, path::Operation, pkcs7, transfer};
use http_body_util::{BodyExt, LengthLimitError, Limited};

use super::{problem, AppState, ConnInfo};
use crate::domain::{generate_secret, Pkcs12Encryption, Secret};
use crate::error::{Error, ErrorKind};
use crate::ra::Credentials;

/// RFC 7030 bodies are a CSR or a few certificates; 64 KiB is ample and bounds memory.
pub const MAX_BODY: usize = 64 * 1024;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/.well-known/est/{op}", any(no_label))
        .route("/.well-known/est/{label}/{op}", any(with_label))
        // strongSwan's `pki --est` appends /.well-known/est/<op> to its URL's path, so the
        // label comes first there (protocol/docs/divergences.md).
        .route("/{label}/.well-known/est/{op}", any(with_label))
}

async fn no_label(
    State(state): State<AppState>,
    Extension(conn): Extension<ConnInfo>,
    method: Method,
    Path(op): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    handle(state, conn, method, None, op, headers, body)
        .await
        .unwrap_or_else(|e| problem::est(&e))
}

async fn with_label(
    State(state): State<AppState>,
    Extension(conn): Extension<ConnInfo>,
    method: Method,
    Path((label, op)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    handle(state, conn, method, Some(label), op, headers, body)
        .await
        .unwrap_or_else(|e| problem::est(&e))
}

async fn handle(
    state: AppState,
    conn: ConnInfo,
    method: Method,
    label: Option<String>,
    op: String,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Error> {
    // Read (bounded) before answering anything: an HTTP/2 client whose request body is
    // still being sent sees a stream reset instead of an early error response.
    let body = if method == Method::POST {
        Some(read_body(&headers, body).await?)
    } else {
        None
    };
    let op = Operation::parse(&op)
        .ok_or_else(|| Error::not_found(format!("unknown EST operation {op:?}")))?;
    if let Some(l) = &label {
        if !estgate_protocol::path::is_valid_label(l) {
            return Err(Error::not_found(format!("unknown EST label {l:?}")));
        }
    }
    let expected = match op {
        Operation::CaCerts | Operation::CsrAttrs => Method::GET,
        _ => Method::POST,
    };
    if method != expected {
        let mut r = problem::est(&Error::malformed(format!(
            "{} needs {expected}",
            op.as_str()
        )));
        *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
        let allow = if expected == Method::GET {
            "GET"
        } else {
            "POST"
        };
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static(allow));
        return Ok(r);
    }
    // strongSwan's base64 decoder fails on line breaks and it is the client that sends no
    // User-Agent (protocol/docs/divergences.md); everyone else gets 64-column lines.
    let wrap = if headers.contains_key(header::USER_AGENT) {
        transfer::Wrap::Columns64
    } else {
        transfer::Wrap::Unwrapped
    };
    let ra = &state.ra;
    let account = ra.account_for_label(label.as_deref()).await?;
    match op {
        Operation::CaCerts => {
            let chain: Vec<&[u8]> = ra.ca_chain().iter().map(Vec::as_slice).collect();
            Ok(base64_response(
                media::PKCS7,
                &pkcs7::certs_only(&chain),
                wrap,
            ))
        }
        Operation::CsrAttrs => match csrattrs::encode(
            &(ra.allowed_key_types(&account).await?)
                .into_iter()
                .map(Into::into)
                .collect::<Vec<_>>(),
        ) {
            Some(der) => Ok(base64_response(media::CSRATTRS, &der, wrap)),
            None => Ok(StatusCode::NO_CONTENT.into_response()),
        },
        Operation::SimpleEnroll | Operation::SimpleReenroll => {
            let csr = pkcs10_body(&headers, body.as_deref().unwrap_or_default())?;
            let source = conn.peer.to_string();
            let issued = if op == Operation::SimpleEnroll {
                ra.enroll(account, credentials(&headers), &csr, &source)
                    .await?
            } else {
                ra.reenroll(account, conn.client_cert.as_deref(), &csr, &source)
                    .await?
            };
            Ok(base64_response(
                media::PKCS7_CERTS_ONLY,
                &pkcs7::certs_only(&[&issued.der]),
                wrap,
            ))
        }
        Operation::ServerKeyGen => {
            let csr = pkcs10_body(&headers, body.as_deref().unwrap_or_default())?;
            let source = conn.peer.to_string();
            // Beyond RFC 7030 (protocol/docs/divergences.md): `Accept: application/pkcs12`
            // asks for one password-protected file instead of the multipart answer.
            let pkcs12 = if accepts(&headers, media::PKCS12) {
                let password = pkcs12_password(&headers)?;
                ra.check_pkcs12_password(&account, password.expose())?;
                let encryption = match headers.get("pkcs12-encryption") {
                    None => account.pkcs12_encryption,
                    Some(v) => v
                        .to_str()
                        .ok()
                        .and_then(|v| Pkcs12Encryption::parse(&v.trim().to_ascii_lowercase()))
                        .ok_or_else(|| {
                            Error::malformed("PKCS12-Encryption must be modern or legacy")
                        })?,
                };
                Some((password, encryption))
            } else {
                None
            };
            let out = ra
                .enroll_with_server_key(account, credentials(&headers), &csr, &source)
                .await?;
            match pkcs12 {
                Some((password, encryption)) => {
                    let file = ra.pkcs12(&out, &password, encryption).await?;
                    let body =
                        zeroize::Zeroizing::new(transfer::encode_base64(&file, wrap).into_bytes());
                    Ok(secret_response(
                        HeaderValue::from_static(media::PKCS12),
                        body,
                        true,
                    ))
                }
                None => {
                    let certs = pkcs7::certs_only(&[&out.issued.der]);
                    let boundary = format!("estgate-{}", generate_secret(24).expose());
                    let (content_type, body) = multipart::encode(
                        &[
                            multipart::Part {
                                content_type: media::PKCS8,
                                body_der: &out.key.pkcs8,
                            },
                            multipart::Part {
                                content_type: media::PKCS7_CERTS_ONLY,
                                body_der: &certs,
                            },
                        ],
                        &boundary,
                        wrap,
                    );
                    let content_type =
                        HeaderValue::from_str(&content_type).map_err(Error::internal)?;
                    Ok(secret_response(
                        content_type,
                        zeroize::Zeroizing::new(body),
                        false,
                    ))
                }
            }
        }
        Operation::FullCmc => Err(Error::new(
            ErrorKind::NotImplemented,
            format!("{} is not supported by this server yet", op.as_str()),
        )),
    }
}

/// A body holding private key material: its buffer is zeroized when hyper drops it.
/// (Copies inside hyper's and rustls's write buffers are beyond reach.) No cache, shared or
/// private, may keep it: `Cache-Control: no-store` (RFC 9111 §5.2.2.5).
pub(super) fn secret_response(
    content_type: HeaderValue,
    body: zeroize::Zeroizing<Vec<u8>>,
    base64: bool,
) -> Response {
    let mut r = Response::new(Body::from(bytes::Bytes::from_owner(body)));
    r.headers_mut().insert(header::CONTENT_TYPE, content_type);
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if base64 {
        r.headers_mut().insert(
            header::HeaderName::from_static("content-transfer-encoding"),
            HeaderValue::from_static("base64"),
        );
    }
    r
}

fn base64_response(content_type: &'static str, der: &[u8], wrap: transfer::Wrap) -> Response {
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, content_type),
            (
                header::HeaderName::from_static("content-transfer-encoding"),
                "base64",
            ),
        ],
        transfer::encode_base64(der, wrap),
    )
        .into_response()
}

/// The request body, at most `MAX_BODY` bytes (413 beyond), whether sent with a
/// Content-Length or chunked.
async fn read_body(headers: &HeaderMap, body: Body) -> Result<Vec<u8>, Error> {
    let too_large = || {
        Error::new(
            ErrorKind::PayloadTooLarge,
            format!("request body exceeds {MAX_BODY} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_BODY) {
        return Err(too_large());
    }
    Ok(Limited::new(body, MAX_BODY)
        .collect()
        .await
        .map_err(|e| {
            if e.downcast_ref::<LengthLimitError>().is_some() {
                too_large()
            } else {
                Error::malformed("the request body could not be read")
            }
        })?
        .to_bytes()
        .to_vec())
}

/// Content type and base64 (any whitespace; the request's Content-Transfer-Encoding is
/// ignored as RFC 8951 §3.2 says).
pub(crate) fn pkcs10_body(headers: &HeaderMap, body: &[u8]) -> Result<Vec<u8>, Error> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !media::is_pkcs10(ct) {
        return Err(Error::new(
            ErrorKind::UnsupportedMediaType,
            format!("Content-Type must be {}, not {ct:?}", media::PKCS10),
        ));
    }
    transfer::decode_base64(body).map_err(|_| {
        Error::malformed("the request body is not base64 (RFC 8951: a base64-encoded PKCS#10 CSR)")
    })
}

/// Whether the Accept header lists `media` (parameters and q-values ignored).
pub(crate) fn accepts(headers: &HeaderMap, media: &str) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            item.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case(media))
        })
}

/// `PKCS12-Password: base64(UTF-8 password)`; absent means the empty password.
pub(crate) fn pkcs12_password(headers: &HeaderMap) -> Result<Secret, Error> {
    let Some(value) = headers.get("pkcs12-password") else {
        return Ok(Secret::new(""));
    };
    let bad = || Error::malformed("PKCS12-Password must be the base64 of the UTF-8 password");
    let text = value.to_str().map_err(|_| bad())?;
    let bytes = zeroize::Zeroizing::new(
        base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|_| bad())?,
    );
    let password = std::str::from_utf8(&bytes).map_err(|_| bad())?;
    Ok(Secret::new(password))
}

/// HTTP Basic credentials; a malformed header counts as none (the client gets a 401).
pub fn credentials(headers: &HeaderMap) -> Option<Credentials> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let text = zeroize::Zeroizing::new(String::from_utf8(decoded).ok()?);
    let (user, password) = text.split_once(':')?;
    Some(Credentials {
        username: user.to_string(),
        password: Secret::new(password),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_parse_and_malformed_ones_are_none() {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic YWxpY2VAZXhhbXBsZS5vcmc6czNjcjM6dA=="),
        );
        let c = credentials(&h).unwrap();
        assert_eq!(c.username, "alice@example.org");
        assert_eq!(c.password.expose(), "s3cr3:t");
        for bad in ["Bearer abc", "Basic !!!", "Basic", "Basic bm9jb2xvbg=="] {
            h.insert(header::AUTHORIZATION, HeaderValue::from_static(bad));
            assert!(credentials(&h).is_none(), "{bad}");
        }
    }
}
