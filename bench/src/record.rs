//! `--record FILE`: one line per certificate the client received, so a crash test can ask the
//! database afterwards whether every delivered certificate has its row.
//!
//! A line is the serial as estgate stores it and `estgate cert list` prints it: upper-case
//! hex of the serial's unsigned bytes (`hex::encode_upper` of the 16 random bytes the CA
//! draws), so the script compares strings without normalising either side.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use estgate_protocol::der::{self, INTEGER, SEQUENCE};
use estgate_protocol::{pkcs7, transfer};

/// The serial number of a DER certificate (RFC 5280 section 4.1.2.2), as its unsigned bytes:
/// a 0x00 that DER puts before a high first bit only says "positive" and is not part of the
/// number estgate stores.
pub fn certificate_serial(cert_der: &[u8]) -> Result<Vec<u8>, String> {
    let bad = |e: estgate_protocol::Error| format!("certificate: {e}");
    let (cert, _) = der::expect(cert_der, SEQUENCE).map_err(bad)?;
    let (tbs, _) = der::expect(cert, SEQUENCE).map_err(bad)?;
    let (tag, content, rest) = der::read(tbs).map_err(bad)?;
    // version is [0] EXPLICIT and DEFAULT v1: when present, the serial follows it.
    let serial = if tag == 0xa0 {
        der::expect(rest, INTEGER).map_err(bad)?.0
    } else if tag == INTEGER {
        content
    } else {
        return Err(format!(
            "certificate: expected a serial, found tag {tag:#04x}"
        ));
    };
    let unsigned = match serial {
        [0x00, next, ..] if next & 0x80 != 0 => &serial[1..],
        [] => return Err("certificate: empty serial".into()),
        s => s,
    };
    Ok(unsigned.to_vec())
}

/// One record line, newline included.
pub fn record_line(serial: &[u8]) -> String {
    let mut line: String = serial.iter().map(|b| format!("{b:02X}")).collect();
    line.push('\n');
    line
}

/// The serials of the certificates in an enroll response body: base64 (RFC 8951 section 3)
/// of a certs-only PKCS#7.
pub fn delivered_serials(body: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let p7 = transfer::decode_base64(body).map_err(|e| format!("response body: {e}"))?;
    let certs =
        pkcs7::parse_certs_only(&p7).map_err(|e| format!("response body: certs-only: {e}"))?;
    if certs.is_empty() {
        return Err("response body: certs-only PKCS#7 without a certificate".into());
    }
    certs.iter().map(|c| certificate_serial(c)).collect()
}

/// The record file, shared by every task of a run.
pub struct Recorder {
    file: Mutex<File>,
}

impl Recorder {
    /// Appends to `path` (created if missing): a crash test runs several loads into one file.
    pub fn open(path: &Path) -> std::io::Result<Recorder> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(Recorder {
            file: Mutex::new(file),
        })
    }

    /// Records the certificates of one enroll response as soon as it has been read: each
    /// line goes to the kernel in one write, so a `kill -9` of the server (or of this client)
    /// afterwards cannot lose it. Returns how many were recorded.
    pub fn record(&self, body: &[u8]) -> Result<usize, String> {
        let serials = delivered_serials(body)?;
        let lines: String = serials.iter().map(|s| record_line(s)).collect();
        let mut file = self
            .file
            .lock()
            .map_err(|_| "record file: a writer panicked".to_string())?;
        file.write_all(lines.as_bytes())
            .and_then(|()| file.flush())
            .map_err(|e| format!("record file: {e}"))?;
        Ok(serials.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert_with_serial(serial: &[u8]) -> Vec<u8> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut p = rcgen::CertificateParams::new(vec!["a.example.org".into()]).unwrap();
        p.serial_number = Some(rcgen::SerialNumber::from_slice(serial));
        p.self_signed(&key).unwrap().der().to_vec()
    }

    fn response_body(certs: &[&[u8]]) -> Vec<u8> {
        transfer::encode_base64(&pkcs7::certs_only(certs), transfer::Wrap::Columns64).into_bytes()
    }

    #[test]
    fn lines_are_upper_case_hex_of_every_byte() {
        assert_eq!(record_line(&[0x01, 0xab, 0x00, 0x0f]), "01AB000F\n");
        assert_eq!(record_line(&[0x7f]), "7F\n");
    }

    #[test]
    fn the_serial_is_read_from_a_real_certificate() {
        // As the CA draws them: 16 bytes, first byte 0x01..=0x7f.
        let serial = [
            0x05, 0x10, 0xfe, 0x00, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb,
            0xcc, 0xdd,
        ];
        let cert = cert_with_serial(&serial);
        assert_eq!(certificate_serial(&cert).unwrap(), serial);
        let parsed = x509_parser::parse_x509_certificate(&cert).unwrap().1;
        assert_eq!(parsed.raw_serial(), serial);
    }

    #[test]
    fn the_sign_padding_is_not_part_of_the_serial() {
        let cert = cert_with_serial(&[0x80, 0x01]);
        let parsed = x509_parser::parse_x509_certificate(&cert).unwrap().1;
        assert_eq!(parsed.raw_serial(), [0x00, 0x80, 0x01]);
        assert_eq!(certificate_serial(&cert).unwrap(), [0x80, 0x01]);
    }

    #[test]
    fn a_response_is_recorded_line_by_line_and_appended() {
        let dir = std::env::temp_dir().join(format!("estgate-bench-rec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("delivered.txt");
        let _ = std::fs::remove_file(&path);
        let a = cert_with_serial(&[0x11, 0x22]);
        let b = cert_with_serial(&[0x0a]);
        Recorder::open(&path)
            .unwrap()
            .record(&response_body(&[&a]))
            .unwrap();
        let again = Recorder::open(&path).unwrap();
        assert_eq!(again.record(&response_body(&[&b])).unwrap(), 1);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "1122\n0A\n");
        assert!(again.record(b"not base64 !").is_err());
        assert!(again.record(&response_body(&[])).is_err());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "1122\n0A\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
