//! Certs-only CMS SignedData (RFC 5652 §5, RFC 7030 §4.1.3): the "degenerate" form with
//! certificates and no signers, used for /cacerts and enroll responses.

use crate::der::{self, expect, seq, tlv, SEQUENCE, SET};
use crate::Error;

/// 1.2.840.113549.1.7.2
const ID_SIGNED_DATA: &[u8] = &[
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02,
];
/// 1.2.840.113549.1.7.1
const ID_DATA: &[u8] = &[
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01,
];

pub fn certs_only(certs: &[&[u8]]) -> Vec<u8> {
    let version = der::integer(1);
    let digest_algorithms = tlv(SET, &[]);
    let encap = seq(&[ID_DATA]);
    // [0] IMPLICIT CertificateSet; DER orders SET OF members, but CMS readers take the
    // certificates in any order and clients expect ours as given (leaf or issuing CA first).
    let certificates = tlv(0xa0, &certs.concat());
    let signer_infos = tlv(SET, &[]);
    let signed_data = seq(&[
        &version,
        &digest_algorithms,
        &encap,
        &certificates,
        &signer_infos,
    ]);
    seq(&[ID_SIGNED_DATA, &tlv(0xa0, &signed_data)])
}

/// The certificates of a certs-only (or any) SignedData, as DER.
pub fn parse_certs_only(input: &[u8]) -> Result<Vec<Vec<u8>>, Error> {
    let (content_info, _) = expect(input, SEQUENCE)?;
    let (tag, oid, rest) = der::read(content_info)?;
    if tag != 0x06 || oid != &ID_SIGNED_DATA[2..] {
        return Err(Error::Der("not a SignedData".into()));
    }
    let (explicit, _) = expect(rest, 0xa0)?;
    let (signed_data, _) = expect(explicit, SEQUENCE)?;
    let (_, _, rest) = der::read(signed_data)?; // version
    let (_, _, rest) = der::read(rest)?; // digestAlgorithms
    let (_, _, rest) = der::read(rest)?; // encapContentInfo
    let (tag, mut certs, _) = der::read(rest)?;
    if tag != 0xa0 {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    while !certs.is_empty() {
        let (_, _, rest) = der::read(certs)?;
        out.push(certs[..certs.len() - rest.len()].to_vec());
        certs = rest;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(cn: &str) -> Vec<u8> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut p = rcgen::CertificateParams::new(vec![]).unwrap();
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name.push(rcgen::DnType::CommonName, cn);
        p.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn round_trip_and_prefix() {
        let a = cert("first.example");
        let b = cert("second.example");
        let p7 = certs_only(&[&a, &b]);
        assert_eq!(p7[0], 0x30);
        let (_, content) = p7.split_at(if p7[1] & 0x80 != 0 {
            2 + (p7[1] & 0x7f) as usize
        } else {
            2
        });
        assert_eq!(&content[..11], ID_SIGNED_DATA);
        assert_eq!(parse_certs_only(&p7).unwrap(), vec![a, b]);
        assert!(parse_certs_only(&p7[..p7.len() - 1]).is_err());
    }

    #[test]
    fn openssl_reads_it() {
        if std::process::Command::new("openssl")
            .arg("version")
            .output()
            .is_err()
        {
            eprintln!("openssl not installed: skipping the cross-check");
            return;
        }
        let a = cert("first.example");
        let b = cert("second.example");
        let dir = std::env::temp_dir().join(format!("estgate-p7-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("certs.p7");
        std::fs::write(&f, certs_only(&[&a, &b])).unwrap();
        let out = std::process::Command::new("openssl")
            .args(["pkcs7", "-inform", "DER", "-print_certs", "-in"])
            .arg(&f)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            text.contains("CN=first.example") || text.contains("CN = first.example"),
            "{text}"
        );
        assert!(text.contains("second.example"), "{text}");
        let _ = std::fs::remove_dir_all(dir);
    }
}
