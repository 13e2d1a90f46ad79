//! Media types of RFC 7030 §4 and RFC 8951.

pub const PKCS7_CERTS_ONLY: &str = "application/pkcs7-mime; smime-type=certs-only";
pub const PKCS7: &str = "application/pkcs7-mime";
pub const PKCS10: &str = "application/pkcs10";
pub const CSRATTRS: &str = "application/csrattrs";
pub const PKCS8: &str = "application/pkcs8";
pub const PKCS12: &str = "application/pkcs12";

/// True when the media type (parameters ignored, case-insensitive) is `application/pkcs10`.
pub fn is_pkcs10(content_type: &str) -> bool {
    content_type
        .split(';')
        .next()
        .is_some_and(|t| t.trim().eq_ignore_ascii_case(PKCS10))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkcs10_with_parameters_and_case() {
        assert!(is_pkcs10("application/pkcs10"));
        assert!(is_pkcs10(" Application/PKCS10 ; charset=binary"));
        assert!(!is_pkcs10("application/pkcs10x"));
        assert!(!is_pkcs10("text/plain"));
        assert!(!is_pkcs10(""));
    }
}
