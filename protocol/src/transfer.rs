//! base64 bodies (RFC 8951 §3): tolerant on input, 64-column lines on output.

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;

use crate::Error;

/// Standard alphabet; padding optional on input, because clients differ.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Decodes base64 with any ASCII whitespace anywhere (CRLF or LF line breaks at any width,
/// trailing blank lines as libest's client sends). The request's Content-Transfer-Encoding
/// header is not consulted (RFC 8951 §3.2).
pub fn decode_base64(body: &[u8]) -> Result<Vec<u8>, Error> {
    let compact: Vec<u8> = body
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    if compact.is_empty() {
        return Err(Error::Base64);
    }
    LENIENT.decode(&compact).map_err(|_| Error::Base64)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wrap {
    /// CRLF after every 64 characters and at the end.
    Columns64,
    /// One line, no line break (strongSwan's decoder rejects line breaks).
    Unwrapped,
}

/// Intermediate buffers are zeroized: the input may be a private key (serverkeygen).
pub fn encode_base64(der: &[u8], wrap: Wrap) -> String {
    let flat = zeroize::Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(der));
    match wrap {
        Wrap::Unwrapped => flat.to_string(),
        Wrap::Columns64 => {
            let mut out = String::with_capacity(flat.len() + flat.len() / 32 + 2);
            for chunk in flat.as_bytes().chunks(64) {
                out.push_str(&String::from_utf8_lossy(chunk));
                out.push_str("\r\n");
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        (0..=255u8).cycle().take(200).collect()
    }

    #[test]
    fn every_whitespace_variant_decodes_the_same() {
        let der = sample();
        let flat = encode_base64(&der, Wrap::Unwrapped);
        let lf64: String = flat
            .as_bytes()
            .chunks(64)
            .map(|c| format!("{}\n", std::str::from_utf8(c).unwrap()))
            .collect();
        let crlf76: String = flat
            .as_bytes()
            .chunks(76)
            .map(|c| format!("{}\r\n", std::str::from_utf8(c).unwrap()))
            .collect();
        let trailing = format!("{flat}\r\n\r\n");
        let spaced = flat.chars().map(|c| format!("{c} ")).collect::<String>();
        let unpadded = flat.trim_end_matches('=').to_string();
        for v in [flat.clone(), lf64, crlf76, trailing, spaced, unpadded] {
            assert_eq!(decode_base64(v.as_bytes()).unwrap(), der, "{v:?}");
        }
    }

    #[test]
    fn garbage_is_refused() {
        for bad in [
            "!!!",
            "-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n",
            "",
            "  \r\n",
            "QUJD$",
        ] {
            assert_eq!(decode_base64(bad.as_bytes()), Err(Error::Base64), "{bad:?}");
        }
    }

    #[test]
    fn wrapped_output_has_64_column_crlf_lines() {
        let text = encode_base64(&sample(), Wrap::Columns64);
        let lines: Vec<&str> = text.split("\r\n").collect();
        assert_eq!(lines.last(), Some(&""));
        assert!(lines[..lines.len() - 2].iter().all(|l| l.len() == 64));
        assert!(lines[lines.len() - 2].len() <= 64);
        assert!(!text.replace("\r\n", "").contains('\n'));
        let flat = encode_base64(&sample(), Wrap::Unwrapped);
        assert!(!flat.contains('\n') && !flat.contains('\r'));
        assert_eq!(text.replace("\r\n", ""), flat);
    }
}
