//! PKCS#12 (RFC 7292) files for browsers, mail clients and OS keychains: the private key,
//! the leaf and the chain, with friendlyName and localKeyId on key and leaf.
//!
//! Written by hand on aws-lc-rs primitives because the maintained builder (p12-keystore 0.4)
//! forces the leaf's friendlyName to its subject DN, and the issue asks for the person's name
//! and email. Two encryptions:
//! - `Modern`: PBES2 (PBKDF2-HMAC-SHA256, AES-256-CBC) for key and certificates, HMAC-SHA256
//!   MAC — what OpenSSL 3 writes by default, 2048 iterations there, 100 000 here.
//! - `Legacy`: pbeWithSHAAnd3-KeyTripleDES-CBC for key and certificates, HMAC-SHA1 MAC, for
//!   older Windows and macOS keychains. 3DES comes from the `des` crate (aws-lc-rs has none).

use aws_lc_rs::cipher::{PaddedBlockEncryptingKey, UnboundCipherKey, AES_256};
use aws_lc_rs::digest;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use estgate_protocol::der::{integer, seq, tlv, SEQUENCE, SET};
use zeroize::Zeroizing;

use super::CaError;
pub use crate::domain::Pkcs12Encryption;

pub const ITERATIONS_MODERN: u32 = 100_000;
/// Old Windows keychains time out on high counts; 2048 is what they were written with.
pub const ITERATIONS_LEGACY: u32 = 2048;

const OCTET_STRING: u8 = 0x04;
const BMP_STRING: u8 = 0x1e;
const NULL: &[u8] = &[0x05, 0x00];

fn oid(content: &[u8]) -> Vec<u8> {
    tlv(0x06, content)
}
fn explicit0(content: &[u8]) -> Vec<u8> {
    tlv(0xa0, content)
}
fn octets(content: &[u8]) -> Vec<u8> {
    tlv(OCTET_STRING, content)
}

// OIDs (content bytes).
const ID_DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01];
const ID_ENCRYPTED_DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x06];
const PKCS8_SHROUDED_KEY_BAG: &[u8] = &[
    0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x0c, 0x0a, 0x01, 0x02,
];
const CERT_BAG: &[u8] = &[
    0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x0c, 0x0a, 0x01, 0x03,
];
const X509_CERTIFICATE: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x16, 0x01];
const FRIENDLY_NAME: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x14];
const LOCAL_KEY_ID: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x15];
const PBES2: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x05, 0x0d];
const PBKDF2: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x05, 0x0c];
const HMAC_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x02, 0x09];
const AES256_CBC: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x2a];
const PBE_SHA1_3DES: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x0c, 0x01, 0x03];
const SHA1: &[u8] = &[0x2b, 0x0e, 0x03, 0x02, 0x1a];
const SHA256: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01];

fn random<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    while SystemRandom::new().fill(&mut out).is_err() {}
    out
}

/// The password as RFC 7292 Appendix B.1 wants it: BMPString (UTF-16BE) plus two zero bytes.
fn bmp_password(password: &str) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(password.len() * 2 + 2));
    for u in password.encode_utf16() {
        out.extend_from_slice(&u.to_be_bytes());
    }
    out.extend_from_slice(&[0, 0]);
    out
}

/// RFC 7292 Appendix B.2 key derivation (ID 1 = key, 2 = IV, 3 = MAC key).
fn pkcs12_kdf(
    alg: &'static digest::Algorithm,
    password: &[u8],
    salt: &[u8],
    iterations: u32,
    id: u8,
    n: usize,
) -> Zeroizing<Vec<u8>> {
    let u = alg.output_len();
    let v = alg.block_len();
    let fill = |s: &[u8]| -> Vec<u8> {
        if s.is_empty() {
            return Vec::new();
        }
        let len = v * s.len().div_ceil(v);
        s.iter().copied().cycle().take(len).collect()
    };
    let mut i_buf = Zeroizing::new([fill(salt), fill(password)].concat());
    let d = vec![id; v];
    let mut out = Zeroizing::new(Vec::with_capacity(n + u));
    while out.len() < n {
        let mut a = digest::digest(alg, &[d.as_slice(), i_buf.as_slice()].concat());
        for _ in 1..iterations {
            a = digest::digest(alg, a.as_ref());
        }
        out.extend_from_slice(a.as_ref());
        let b: Vec<u8> = a.as_ref().iter().copied().cycle().take(v).collect();
        for block in i_buf.chunks_mut(v) {
            // block = (block + b + 1) mod 2^(8v)
            let mut carry = 1u16;
            for (x, y) in block.iter_mut().rev().zip(b.iter().rev()) {
                let sum = u16::from(*x) + u16::from(*y) + carry;
                *x = sum as u8;
                carry = sum >> 8;
            }
        }
    }
    out.truncate(n);
    out
}

/// Encrypts `plain` and returns (AlgorithmIdentifier DER, ciphertext).
fn encrypt(
    enc: Pkcs12Encryption,
    password: &str,
    plain: &[u8],
) -> Result<(Vec<u8>, Vec<u8>), CaError> {
    let err = |what: &str| CaError::Sign(format!("PKCS#12 {what}"));
    match enc {
        Pkcs12Encryption::Modern => {
            let salt: [u8; 16] = random();
            let mut key = Zeroizing::new([0u8; 32]);
            let iterations =
                std::num::NonZeroU32::new(ITERATIONS_MODERN).ok_or_else(|| err("iterations"))?;
            // PBES2 passes the password as its UTF-8 bytes (RFC 8018), unlike PBES1 above.
            aws_lc_rs::pbkdf2::derive(
                aws_lc_rs::pbkdf2::PBKDF2_HMAC_SHA256,
                iterations,
                &salt,
                password.as_bytes(),
                key.as_mut(),
            );
            let cipher_key =
                UnboundCipherKey::new(&AES_256, key.as_ref()).map_err(|_| err("key"))?;
            let sealer =
                PaddedBlockEncryptingKey::cbc_pkcs7(cipher_key).map_err(|_| err("cipher"))?;
            let mut data = plain.to_vec();
            let ctx = sealer.encrypt(&mut data).map_err(|_| err("encryption"))?;
            let iv: &[u8] = (&ctx).try_into().map_err(|_| err("IV"))?;
            let kdf = seq(&[
                &oid(PBKDF2),
                &seq(&[
                    &octets(&salt),
                    &integer(ITERATIONS_MODERN),
                    &seq(&[&oid(HMAC_SHA256), NULL]),
                ]),
            ]);
            let scheme = seq(&[&oid(AES256_CBC), &octets(iv)]);
            Ok((seq(&[&oid(PBES2), &seq(&[&kdf, &scheme])]), data))
        }
        Pkcs12Encryption::Legacy => {
            use des::cipher::{BlockCipherEncrypt, KeyInit};
            let salt: [u8; 8] = random();
            let pass = bmp_password(password);
            let key = pkcs12_kdf(
                &digest::SHA1_FOR_LEGACY_USE_ONLY,
                &pass,
                &salt,
                ITERATIONS_LEGACY,
                1,
                24,
            );
            let iv = pkcs12_kdf(
                &digest::SHA1_FOR_LEGACY_USE_ONLY,
                &pass,
                &salt,
                ITERATIONS_LEGACY,
                2,
                8,
            );
            let cipher = des::TdesEde3::new_from_slice(&key).map_err(|_| err("3DES key"))?;
            let pad = 8 - plain.len() % 8;
            let mut data = plain.to_vec();
            data.extend(std::iter::repeat_n(pad as u8, pad));
            let mut prev = [0u8; 8];
            prev.copy_from_slice(&iv);
            for chunk in data.chunks_mut(8) {
                let mut block = [0u8; 8];
                for (b, (c, p)) in block.iter_mut().zip(chunk.iter().zip(prev.iter())) {
                    *b = c ^ p;
                }
                let mut b = des::cipher::Block::<des::TdesEde3>::from(block);
                cipher.encrypt_block(&mut b);
                chunk.copy_from_slice(b.as_slice());
                prev.copy_from_slice(chunk);
            }
            Ok((
                seq(&[
                    &oid(PBE_SHA1_3DES),
                    &seq(&[&octets(&salt), &integer(ITERATIONS_LEGACY)]),
                ]),
                data,
            ))
        }
    }
}

fn attributes(friendly_name: &str, local_key_id: &[u8]) -> Vec<u8> {
    let bmp: Vec<u8> = friendly_name
        .encode_utf16()
        .flat_map(|u| u.to_be_bytes())
        .collect();
    let name = seq(&[&oid(FRIENDLY_NAME), &tlv(SET, &tlv(BMP_STRING, &bmp))]);
    let id = seq(&[&oid(LOCAL_KEY_ID), &tlv(SET, &octets(local_key_id))]);
    tlv(SET, &[name, id].concat())
}

fn cert_bag(der: &[u8], attrs: Option<&[u8]>) -> Vec<u8> {
    let value = seq(&[&oid(X509_CERTIFICATE), &explicit0(&octets(der))]);
    let mut parts: Vec<&[u8]> = vec![];
    let id = oid(CERT_BAG);
    let wrapped = explicit0(&value);
    parts.push(&id);
    parts.push(&wrapped);
    if let Some(a) = attrs {
        parts.push(a);
    }
    seq(&parts)
}

/// Builds the file. `chain` is the issuing CA first, then up to the root.
pub fn build(
    pkcs8_key: &[u8],
    leaf: &[u8],
    chain: &[Vec<u8>],
    friendly_name: &str,
    password: &str,
    enc: Pkcs12Encryption,
) -> Result<Vec<u8>, CaError> {
    // localKeyId: SHA-1 of the leaf, as OpenSSL and Windows write it.
    let local_key_id = digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, leaf);
    let attrs = attributes(friendly_name, local_key_id.as_ref());

    let mut certs = cert_bag(leaf, Some(&attrs));
    for c in chain {
        certs.extend_from_slice(&cert_bag(c, None));
    }
    let cert_safe = Zeroizing::new(tlv(SEQUENCE, &certs));
    let (alg, encrypted) = encrypt(enc, password, &cert_safe)?;
    // EncryptedData { version 0, EncryptedContentInfo { id-data, alg, [0] IMPLICIT ciphertext } }
    let encrypted_data = seq(&[
        &integer(0),
        &seq(&[&oid(ID_DATA), &alg, &tlv(0x80, &encrypted)]),
    ]);
    let certs_info = seq(&[&oid(ID_ENCRYPTED_DATA), &explicit0(&encrypted_data)]);

    let (key_alg, key_encrypted) = encrypt(enc, password, pkcs8_key)?;
    let shrouded = seq(&[&key_alg, &octets(&key_encrypted)]);
    let key_bag = seq(&[&oid(PKCS8_SHROUDED_KEY_BAG), &explicit0(&shrouded), &attrs]);
    let key_info = seq(&[&oid(ID_DATA), &explicit0(&octets(&seq(&[&key_bag])))]);

    let auth_safe = seq(&[&certs_info, &key_info]);
    let mac = mac_data(enc, password, &auth_safe);
    Ok(seq(&[
        &integer(3),
        &seq(&[&oid(ID_DATA), &explicit0(&octets(&auth_safe))]),
        &mac,
    ]))
}

/// MacData (RFC 7292 §4): HMAC over the AuthenticatedSafe with a key from the PKCS#12 KDF.
fn mac_data(enc: Pkcs12Encryption, password: &str, auth_safe: &[u8]) -> Vec<u8> {
    let (digest_alg, hmac_alg, digest_oid, iterations) = match enc {
        Pkcs12Encryption::Modern => (
            &digest::SHA256,
            aws_lc_rs::hmac::HMAC_SHA256,
            SHA256,
            ITERATIONS_MODERN,
        ),
        Pkcs12Encryption::Legacy => (
            &digest::SHA1_FOR_LEGACY_USE_ONLY,
            aws_lc_rs::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
            SHA1,
            ITERATIONS_LEGACY,
        ),
    };
    let salt: [u8; 16] = random();
    let pass = bmp_password(password);
    let key = pkcs12_kdf(
        digest_alg,
        &pass,
        &salt,
        iterations,
        3,
        digest_alg.output_len(),
    );
    let tag = aws_lc_rs::hmac::sign(&aws_lc_rs::hmac::Key::new(hmac_alg, &key), auth_safe);
    let digest_info = seq(&[&seq(&[&oid(digest_oid), NULL]), &octets(tag.as_ref())]);
    seq(&[&digest_info, &octets(&salt), &integer(iterations)])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7292 KDF checked against a vector computed with OpenSSL's PKCS12_key_gen_uni
    /// (password "smeg", salt 0A58CF64530D823F, 1 iteration, ID 1, 24 bytes, SHA-1).
    #[test]
    fn kdf_matches_openssl() {
        let salt = [0x0a, 0x58, 0xcf, 0x64, 0x53, 0x0d, 0x82, 0x3f];
        let key = pkcs12_kdf(
            &digest::SHA1_FOR_LEGACY_USE_ONLY,
            &bmp_password("smeg"),
            &salt,
            1,
            1,
            24,
        );
        assert_eq!(
            hex::encode(key.as_slice()),
            "8aaae6297b6cb04642ab5b077851284eb7128f1a2a7fbca3"
        );
    }
}
