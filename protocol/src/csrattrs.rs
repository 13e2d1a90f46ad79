//! CSR attributes (RFC 7030 §4.5.2, clarified by RFC 9908):
//! `CsrAttrs ::= SEQUENCE SIZE (0..MAX) OF AttrOrOID`.
//!
//! estgate tells the client which key algorithms its profiles allow, in the RFC 7030 §4.5.2
//! style: an Attribute whose type is the key algorithm and whose value narrows it — the
//! named curve for id-ecPublicKey, the modulus size as an INTEGER for rsaEncryption — and
//! the signature algorithm OID the server prefers for each family.

use crate::der::{integer, seq, tlv, SET};
use crate::KeyAlgorithm;

/// 1.2.840.10045.2.1
const ID_EC_PUBLIC_KEY: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
/// 1.2.840.10045.3.1.7
const PRIME256V1: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// 1.3.132.0.34
const SECP384R1: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];
/// 1.2.840.113549.1.1.1
const RSA_ENCRYPTION: &[u8] = &[
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01,
];
/// 1.2.840.10045.4.3.2
const ECDSA_WITH_SHA256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
/// 1.2.840.113549.1.1.11
const SHA256_WITH_RSA: &[u8] = &[
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b,
];

/// DER CsrAttrs for the allowed key algorithms; `None` when there is nothing to say (the
/// server then answers 204, RFC 7030 §4.5.2).
pub fn encode(allowed: &[KeyAlgorithm]) -> Option<Vec<u8>> {
    if allowed.is_empty() {
        return None;
    }
    let mut items: Vec<Vec<u8>> = Vec::new();
    let curves: Vec<&[u8]> = allowed
        .iter()
        .filter_map(|k| match k {
            KeyAlgorithm::EcP256 => Some(PRIME256V1),
            KeyAlgorithm::EcP384 => Some(SECP384R1),
            KeyAlgorithm::Rsa { .. } => None,
        })
        .collect();
    let sizes: Vec<Vec<u8>> = allowed
        .iter()
        .filter_map(|k| match k {
            KeyAlgorithm::Rsa { bits } => Some(integer(*bits)),
            _ => None,
        })
        .collect();
    if !curves.is_empty() {
        items.push(seq(&[ID_EC_PUBLIC_KEY, &tlv(SET, &curves.concat())]));
        items.push(ECDSA_WITH_SHA256.to_vec());
    }
    if !sizes.is_empty() {
        items.push(seq(&[RSA_ENCRYPTION, &tlv(SET, &sizes.concat())]));
        items.push(SHA256_WITH_RSA.to_vec());
    }
    let refs: Vec<&[u8]> = items.iter().map(Vec::as_slice).collect();
    Some(seq(&refs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_to_say_is_none() {
        assert_eq!(encode(&[]), None);
    }

    #[test]
    fn p256_only() {
        let got = encode(&[KeyAlgorithm::EcP256]).unwrap();
        let want: Vec<u8> = [
            &[0x30, 0x21][..],
            &[0x30, 0x15],
            &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01],
            &[
                0x31, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07,
            ],
            &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02],
        ]
        .concat();
        assert_eq!(got, want);
    }

    #[test]
    fn rsa_and_p384() {
        let got = encode(&[KeyAlgorithm::Rsa { bits: 2048 }, KeyAlgorithm::EcP384]).unwrap();
        let want: Vec<u8> = [
            &[0x30, 0x3c][..],
            &[0x30, 0x12],
            &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01],
            &[0x31, 0x07, 0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22],
            &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02],
            &[0x30, 0x11],
            &[
                0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01,
            ],
            &[0x31, 0x04, 0x02, 0x02, 0x08, 0x00],
            &[
                0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b,
            ],
        ]
        .concat();
        assert_eq!(got, want);
    }
}
