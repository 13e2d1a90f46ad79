//! A minimal EST and OCSP client: HTTP/1.1 written by hand over tokio-rustls or plain TCP, so
//! tests see the exact wire (header-name case, Content-Length) and the load generator pays no
//! framework cost.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod procfs;
pub mod record;

use std::net::SocketAddr;
use std::sync::Arc;

use base64::Engine;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{
    AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader,
};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
    #[error("PEM: {0}")]
    Pem(String),
    #[error("HTTP: {0}")]
    Http(String),
    #[error("key generation: {0}")]
    Keygen(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

pub struct TlsOptions {
    pub roots_pem: Vec<u8>,
    /// (certificate chain PEM, private key PEM) for TLS client authentication.
    pub client_cert: Option<(Vec<u8>, Vec<u8>)>,
    /// None: both TLS 1.2 and 1.3.
    pub version: Option<TlsVersion>,
    /// Offer h2 before http/1.1 in ALPN (this client still speaks HTTP/1.1 only).
    pub alpn_h2: bool,
}

pub fn client_config(opts: &TlsOptions) -> Result<Arc<rustls::ClientConfig>, Error> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(&opts.roots_pem) {
        roots.add(c.map_err(|e| Error::Pem(e.to_string()))?)?;
    }
    let versions: &[&'static rustls::SupportedProtocolVersion] = match opts.version {
        None => &[&rustls::version::TLS13, &rustls::version::TLS12],
        Some(TlsVersion::Tls12) => &[&rustls::version::TLS12],
        Some(TlsVersion::Tls13) => &[&rustls::version::TLS13],
    };
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_protocol_versions(versions)?
    .with_root_certificates(roots);
    let mut config = match &opts.client_cert {
        Some((chain, key)) => {
            let certs = CertificateDer::pem_slice_iter(chain)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| Error::Pem(e.to_string()))?;
            let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| Error::Pem(e.to_string()))?;
            builder.with_client_auth_cert(certs, key)?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = if opts.alpn_h2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Ok(Arc::new(config))
}

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub status_line: String,
    /// Names exactly as received.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Whether Content-Type names `media_type`; parameters and case do not matter
    /// (RFC 9110 section 8.3.1).
    pub fn has_media_type(&self, media_type: &str) -> bool {
        self.header("content-type")
            .and_then(|v| v.split(';').next())
            .is_some_and(|t| t.trim().eq_ignore_ascii_case(media_type))
    }

    /// Whether the server ends the connection after this response (RFC 9112 section 9.3):
    /// `Connection: close`, or HTTP/1.0 without `keep-alive`.
    pub fn closes_connection(&self) -> bool {
        let has = |token: &str| {
            self.header("connection")
                .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        };
        has("close") || (self.status_line.starts_with("HTTP/1.0") && !has("keep-alive"))
    }
}

/// One HTTP/1.1 connection: over TLS by default, over plain TCP for the listener that serves
/// CRLs and OCSP (RFC 6960 Appendix A is plain HTTP; the responses are signed).
pub struct Connection<S = TlsStream<TcpStream>> {
    stream: BufReader<S>,
    host: String,
}

impl Connection {
    pub async fn connect(
        addr: SocketAddr,
        server_name: &str,
        config: Arc<rustls::ClientConfig>,
    ) -> Result<Connection, Error> {
        Connection::connect_from(None, addr, server_name, config).await
    }

    /// `connect` from the local address `from` (e.g. 127.0.0.2, another client to a server
    /// on loopback), or the system's choice.
    pub async fn connect_from(
        from: Option<std::net::IpAddr>,
        addr: SocketAddr,
        server_name: &str,
        config: Arc<rustls::ClientConfig>,
    ) -> Result<Connection, Error> {
        let tcp = match from {
            None => TcpStream::connect(addr).await?,
            Some(ip) => {
                let socket = if ip.is_ipv4() {
                    tokio::net::TcpSocket::new_v4()?
                } else {
                    tokio::net::TcpSocket::new_v6()?
                };
                socket.bind(SocketAddr::new(ip, 0))?;
                socket.connect(addr).await?
            }
        };
        tcp.set_nodelay(true)?;
        let name = ServerName::try_from(server_name.to_string())
            .map_err(|e| Error::Http(format!("server name: {e}")))?;
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await?;
        Ok(Connection {
            stream: BufReader::new(tls),
            host: authority(server_name, addr.port()),
        })
    }

    pub fn negotiated_version(&self) -> Option<rustls::ProtocolVersion> {
        self.stream.get_ref().get_ref().1.protocol_version()
    }

    /// Full or resumed (RFC 8446 section 2.2, RFC 5246 section 7.3): what a resumption
    /// benchmark counts.
    pub fn handshake_kind(&self) -> Option<rustls::HandshakeKind> {
        self.stream.get_ref().get_ref().1.handshake_kind()
    }

    pub fn alpn_protocol(&self) -> Option<Vec<u8>> {
        self.stream
            .get_ref()
            .get_ref()
            .1
            .alpn_protocol()
            .map(|p| p.to_vec())
    }
}

impl Connection<TcpStream> {
    /// `host` is what the Host header names.
    pub async fn connect_plain(addr: SocketAddr, host: &str) -> Result<Self, Error> {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        Ok(Connection {
            stream: BufReader::new(tcp),
            host: authority(host, addr.port()),
        })
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    /// The value this connection sends as Host.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Writes `request` as given and reads one response.
    pub async fn send_raw(&mut self, request: &[u8]) -> Result<Response, Error> {
        self.stream.get_mut().write_all(request).await?;
        self.stream.get_mut().flush().await?;
        read_response(&mut self.stream).await
    }

    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Response, Error> {
        let req = encode_request(method, &self.host, path, headers, body);
        self.send_raw(&req).await
    }
}

/// `host:port` as the Host header wants it, an IPv6 literal in brackets.
pub fn authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// One HTTP/1.1 request on the wire. Every method but GET carries Content-Length, even for an
/// empty body, so a server never has to guess where the request ends.
pub fn encode_request(
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Vec<u8> {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\n");
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    if method != "GET" || !body.is_empty() {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// The path of an OCSP GET (RFC 6960 Appendix A.1): `base`, a slash, then the base64 of the
/// DER OCSPRequest URL-encoded. Base64's '/' would split the path segment and '+' reads as a
/// space to some decoders, so everything outside RFC 3986 unreserved is percent-encoded.
pub fn ocsp_get_path(base: &str, request_der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(request_der);
    let mut path = base.trim_end_matches('/').to_string();
    path.push('/');
    for b in b64.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            path.push(char::from(b));
        } else {
            path.push_str(&format!("%{b:02X}"));
        }
    }
    path
}

/// Reads one HTTP/1.1 response: status line, headers, body by Content-Length or chunked.
pub async fn read_response<R: AsyncBufRead + Unpin>(r: &mut R) -> Result<Response, Error> {
    let mut line = String::new();
    if r.read_line(&mut line).await? == 0 {
        return Err(Error::Http("connection closed before a response".into()));
    }
    let status_line = line.trim_end().to_string();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Error::Http(format!("bad status line {status_line:?}")))?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        if r.read_line(&mut line).await? == 0 {
            return Err(Error::Http("connection closed in headers".into()));
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (n, v) = l
            .split_once(':')
            .ok_or_else(|| Error::Http(format!("bad header {l:?}")))?;
        headers.push((n.to_string(), v.trim().to_string()));
    }
    let mut resp = Response {
        status,
        status_line,
        headers,
        body: Vec::new(),
    };
    if let Some(len) = resp.header("content-length") {
        let len: usize = len
            .parse()
            .map_err(|_| Error::Http("bad Content-Length".into()))?;
        resp.body = vec![0; len];
        r.read_exact(&mut resp.body).await?;
    } else if resp
        .header("transfer-encoding")
        .is_some_and(|t| t.eq_ignore_ascii_case("chunked"))
    {
        loop {
            line.clear();
            r.read_line(&mut line).await?;
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| Error::Http("bad chunk size".into()))?;
            let mut chunk = vec![0; size + 2];
            if size == 0 {
                line.clear();
                r.read_line(&mut line).await?;
                break;
            }
            r.read_exact(&mut chunk).await?;
            resp.body.extend_from_slice(&chunk[..size]);
        }
    } else if status != 204 && status != 304 && !(100..200).contains(&status) {
        return Err(Error::Http("response without Content-Length".into()));
    }
    Ok(resp)
}

pub fn basic_auth(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// The responseStatus of a DER OCSPResponse (RFC 6960 section 4.2.1), 0 being successful.
/// A responder answers a request it cannot use with HTTP 200 and an unsigned error status
/// (`30 03 0A 01 xx`), so a load test that looked at HTTP alone would count a wrongly encoded
/// request as served. Only the outer SEQUENCE header and the ENUMERATED are read.
pub fn ocsp_response_status(der: &[u8]) -> Option<u8> {
    let (&tag, rest) = der.split_first()?;
    let (&len, rest) = rest.split_first()?;
    if tag != 0x30 {
        return None;
    }
    // Short-form length, or long form with up to four length bytes.
    let skip = match len {
        0..=0x7f => 0,
        0x81..=0x84 => usize::from(len & 0x7f),
        _ => return None,
    };
    match rest.get(skip..skip + 3)? {
        [0x0a, 0x01, status] => Some(*status),
        _ => None,
    }
}

/// A key pair of `key_type` (ec-p256, ec-p384, rsa-2048, rsa-3072, rsa-4096), generated as the
/// server does (aws-lc-rs through rcgen).
pub fn generate_key(key_type: &str) -> Result<rcgen::KeyPair, Error> {
    match key_type {
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
        other => return Err(Error::Keygen(format!("unknown key type {other:?}"))),
    }
    .map_err(|e| Error::Keygen(e.to_string()))
}

/// `n` CSRs (DER) with CN and one dNSName = `cn`, each with its PKCS#8 key PEM.
pub fn make_csrs(key_type: &str, cn: &str, n: usize) -> Result<Vec<(Vec<u8>, String)>, Error> {
    let err = |e: rcgen::Error| Error::Keygen(e.to_string());
    (0..n)
        .map(|_| {
            let key = generate_key(key_type)?;
            let mut p = rcgen::CertificateParams::new(vec![cn.to_string()]).map_err(err)?;
            p.distinguished_name.push(rcgen::DnType::CommonName, cn);
            let csr = p.serialize_request(&key).map_err(err)?.der().to_vec();
            Ok((csr, key.serialize_pem()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn responses_keep_header_case_and_pipeline() {
        let wire = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello\
HTTP/1.1 201 Created\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        let mut r = BufReader::new(&wire[..]);
        let a = read_response(&mut r).await.unwrap();
        assert_eq!((a.status, a.body_text().as_str()), (200, "hello"));
        assert_eq!(a.headers[0].0, "Content-Type");
        assert_eq!(a.header("content-type"), Some("text/plain"));
        let b = read_response(&mut r).await.unwrap();
        assert_eq!((b.status, b.body_text().as_str()), (201, "abcde"));
        assert!(read_response(&mut r).await.is_err());
    }

    #[tokio::test]
    async fn a_body_without_length_is_an_error() {
        let mut r = BufReader::new(&b"HTTP/1.1 200 OK\r\n\r\nxyz"[..]);
        assert!(read_response(&mut r).await.is_err());
    }

    #[test]
    fn basic_auth_vector() {
        assert_eq!(
            basic_auth("Aladdin", "open sesame"),
            "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
    }

    #[test]
    fn csrs_are_made() {
        let csrs = make_csrs("ec-p256", "a.example.org", 2).unwrap();
        assert_eq!(csrs.len(), 2);
        assert_ne!(csrs[0].0, csrs[1].0);
        assert!(csrs[0].1.contains("BEGIN PRIVATE KEY"));
        assert!(make_csrs("dsa", "x", 1).is_err());
    }

    #[test]
    fn ocsp_get_path_escapes_what_base64_adds() {
        // base64 of these bytes is "+/8=": all three characters must be escaped.
        assert_eq!(ocsp_get_path("/ocsp", &[0xfb, 0xff]), "/ocsp/%2B%2F8%3D");
        assert_eq!(ocsp_get_path("/ocsp/", &[0xfb, 0xff]), "/ocsp/%2B%2F8%3D");
        assert_eq!(ocsp_get_path("", b"0\x03"), "/MAM%3D");
    }

    #[test]
    fn requests_are_encoded_with_length_except_bodyless_get() {
        let get = encode_request("GET", "h:1", "/x", &[("Accept", "*/*")], b"");
        assert_eq!(get, b"GET /x HTTP/1.1\r\nHost: h:1\r\nAccept: */*\r\n\r\n");
        let post = encode_request("POST", "h:1", "/ocsp", &[], b"ab");
        assert_eq!(
            post,
            b"POST /ocsp HTTP/1.1\r\nHost: h:1\r\nContent-Length: 2\r\n\r\nab"
        );
        assert_eq!(authority("::1", 80), "[::1]:80");
    }

    async fn parse(wire: &[u8]) -> Response {
        read_response(&mut BufReader::new(wire)).await.unwrap()
    }

    #[tokio::test]
    async fn media_type_ignores_parameters_and_case() {
        let r = parse(b"HTTP/1.1 200 OK\r\ncontent-type: Application/PKCS7-MIME; smime-type=certs-only\r\nContent-Length: 0\r\n\r\n").await;
        assert!(r.has_media_type("application/pkcs7-mime"));
        assert!(!r.has_media_type("application/ocsp-response"));
        let bare = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").await;
        assert!(!bare.has_media_type("application/ocsp-response"));
    }

    #[tokio::test]
    async fn connection_close_is_recognised() {
        let close =
            parse(b"HTTP/1.1 200 OK\r\nConnection: keep-alive, Close\r\nContent-Length: 0\r\n\r\n")
                .await;
        assert!(close.closes_connection());
        let old = parse(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n").await;
        assert!(old.closes_connection());
        let kept =
            parse(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n").await;
        assert!(!kept.closes_connection());
        let default = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").await;
        assert!(!default.closes_connection());
    }

    #[tokio::test]
    async fn a_plain_connection_carries_several_requests() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (sock, _) = listener.accept().await.unwrap();
            let mut sock = BufReader::new(sock);
            let mut seen = Vec::new();
            for n in 0..2 {
                let mut head = String::new();
                loop {
                    let mut line = String::new();
                    sock.read_line(&mut line).await.unwrap();
                    head.push_str(&line);
                    if line == "\r\n" {
                        break;
                    }
                }
                let mut body = vec![0; if head.starts_with("POST") { 3 } else { 0 }];
                sock.read_exact(&mut body).await.unwrap();
                seen.push((head, body));
                let reply = format!("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n{n}");
                sock.get_mut().write_all(reply.as_bytes()).await.unwrap();
            }
            seen
        });
        let mut c = Connection::connect_plain(addr, "127.0.0.1").await.unwrap();
        let a = c.request("GET", "/ocsp/MAM%3D", &[], b"").await.unwrap();
        let b = c.request("POST", "/ocsp", &[], b"0\x01\x00").await.unwrap();
        assert_eq!((a.body_text(), b.body_text()), ("0".into(), "1".into()));
        let seen = server.await.unwrap();
        let host = format!("Host: 127.0.0.1:{}\r\n", addr.port());
        assert!(
            seen[0].0.starts_with("GET /ocsp/MAM%3D HTTP/1.1\r\n") && seen[0].0.contains(&host)
        );
        assert_eq!(seen[1].1, b"0\x01\x00");
    }

    #[test]
    fn ocsp_status_is_read_from_short_and_long_forms() {
        // malformedRequest as responders send it, and the head of a successful answer.
        assert_eq!(
            ocsp_response_status(&[0x30, 0x03, 0x0a, 0x01, 0x01]),
            Some(1)
        );
        assert_eq!(
            ocsp_response_status(&[0x30, 0x82, 0x01, 0xd3, 0x0a, 0x01, 0x00, 0xa0]),
            Some(0)
        );
        assert_eq!(
            ocsp_response_status(&[0x30, 0x81, 0x90, 0x0a, 0x01, 0x06]),
            Some(6)
        );
        assert_eq!(ocsp_response_status(b"<html>"), None);
        assert_eq!(ocsp_response_status(&[0x30, 0x82, 0x01]), None);
        assert_eq!(ocsp_response_status(&[0x30, 0x80, 0x0a, 0x01, 0x00]), None);
    }
}
