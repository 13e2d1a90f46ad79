//! multipart/mixed bodies for /serverkeygen (RFC 7030 §4.4.2): one part per item, each
//! base64 with its own Content-Type.

use crate::transfer::{encode_base64, Wrap};

pub struct Part<'a> {
    pub content_type: &'a str,
    pub body_der: &'a [u8],
}

/// Returns the Content-Type header value and the body. The body may hold a private key:
/// the caller owns (and zeroizes) it; the part encodings made here are zeroized.
pub fn encode(parts: &[Part<'_>], boundary: &str, wrap: Wrap) -> (String, Vec<u8>) {
    let mut body = String::with_capacity(parts.iter().map(|p| p.body_der.len() * 2 + 128).sum());
    for p in parts {
        body.push_str(&format!(
            "--{boundary}\r\nContent-Type: {}\r\nContent-Transfer-Encoding: base64\r\n\r\n",
            p.content_type
        ));
        body.push_str(&zeroize::Zeroizing::new(encode_base64(p.body_der, wrap)));
        if wrap == Wrap::Unwrapped {
            body.push_str("\r\n");
        }
    }
    body.push_str(&format!("--{boundary}--\r\n"));
    (
        format!("multipart/mixed; boundary={boundary}"),
        body.into_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_parts_in_order() {
        let (ct, body) = encode(
            &[
                Part {
                    content_type: "application/pkcs8",
                    body_der: b"key",
                },
                Part {
                    content_type: "application/pkcs7-mime; smime-type=certs-only",
                    body_der: b"cert",
                },
            ],
            "estgateBoundary",
            Wrap::Columns64,
        );
        assert_eq!(ct, "multipart/mixed; boundary=estgateBoundary");
        let text = String::from_utf8(body).unwrap();
        assert_eq!(
            text,
            "--estgateBoundary\r\nContent-Type: application/pkcs8\r\nContent-Transfer-Encoding: base64\r\n\r\na2V5\r\n\
             --estgateBoundary\r\nContent-Type: application/pkcs7-mime; smime-type=certs-only\r\nContent-Transfer-Encoding: base64\r\n\r\nY2VydA==\r\n\
             --estgateBoundary--\r\n"
        );
    }
}
