//! Server-side key generation (for EST /serverkeygen and PKCS#12 downloads) on the same
//! backend rustls uses, aws-lc-rs. Private keys live only in zeroized buffers for the
//! duration of a request.
//!
//! RSA generation takes from tens of milliseconds (2048) to seconds (4096), so it runs on
//! the blocking pool behind a bounded gate: at most `workers` generations run at once and at
//! most `queue` more wait; past that the caller is told to come back later rather than let
//! memory grow.

use std::sync::Arc;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P384_SHA384_ASN1_SIGNING,
};
use tokio::sync::Semaphore;
use zeroize::Zeroizing;

use super::CaError;
use crate::domain::KeyType;

/// A freshly generated key pair.
pub struct GeneratedKey {
    /// PKCS#8 (RFC 5208) private key; zeroized on drop.
    pub pkcs8: Zeroizing<Vec<u8>>,
    /// X.509 SubjectPublicKeyInfo of the public key.
    pub spki_der: Vec<u8>,
    pub key_type: KeyType,
}

impl std::fmt::Debug for GeneratedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeneratedKey")
            .field("key_type", &self.key_type)
            .field("pkcs8", &"<redacted>")
            .finish()
    }
}

fn failed(what: &str) -> CaError {
    CaError::Key(format!("{what} key generation failed"))
}

/// Generates one key pair, synchronously. Callers on the async executor use `KeyGenerator`.
pub fn generate(key_type: KeyType) -> Result<GeneratedKey, CaError> {
    let (pkcs8, spki_der) = match key_type {
        KeyType::Rsa { bits } => {
            let size = match bits {
                2048 => KeySize::Rsa2048,
                3072 => KeySize::Rsa3072,
                4096 => KeySize::Rsa4096,
                other => return Err(CaError::Key(format!("RSA-{other} is not offered"))),
            };
            let pair = aws_lc_rs::rsa::KeyPair::generate(size).map_err(|_| failed("RSA"))?;
            let pkcs8: aws_lc_rs::encoding::Pkcs8V1Der<'_> =
                pair.as_der().map_err(|_| failed("RSA"))?;
            let spki = pair.public_key().as_der().map_err(|_| failed("RSA"))?;
            (
                Zeroizing::new(pkcs8.as_ref().to_vec()),
                spki.as_ref().to_vec(),
            )
        }
        KeyType::EcP256 | KeyType::EcP384 => {
            let alg = if key_type == KeyType::EcP256 {
                &ECDSA_P256_SHA256_ASN1_SIGNING
            } else {
                &ECDSA_P384_SHA384_ASN1_SIGNING
            };
            let pair = EcdsaKeyPair::generate(alg).map_err(|_| failed("EC"))?;
            let pkcs8 = pair.to_pkcs8v1().map_err(|_| failed("EC"))?;
            let spki = pair.public_key().as_der().map_err(|_| failed("EC"))?;
            (
                Zeroizing::new(pkcs8.as_ref().to_vec()),
                spki.as_ref().to_vec(),
            )
        }
    };
    Ok(GeneratedKey {
        pkcs8,
        spki_der,
        key_type,
    })
}

/// Why a generation request was not served.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeygenError {
    #[error("key generation is busy; try again in {retry_after} seconds")]
    Busy { retry_after: u64 },
    #[error("{0}")]
    Failed(String),
}

/// The bounded gate in front of the blocking pool.
#[derive(Clone)]
pub struct KeyGenerator {
    running: Arc<Semaphore>,
    admitted: Arc<Semaphore>,
}

impl KeyGenerator {
    pub fn new(workers: usize, queue: usize) -> KeyGenerator {
        let workers = workers.max(1);
        KeyGenerator {
            running: Arc::new(Semaphore::new(workers)),
            admitted: Arc::new(Semaphore::new(workers + queue)),
        }
    }

    pub async fn generate(&self, key_type: KeyType) -> Result<GeneratedKey, KeygenError> {
        // Admission first, without waiting: a full queue is an immediate 503.
        let _admitted = self
            .admitted
            .clone()
            .try_acquire_owned()
            .map_err(|_| KeygenError::Busy { retry_after: 2 })?;
        let _running = self
            .running
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| KeygenError::Failed("key generator closed".into()))?;
        tokio::task::spawn_blocking(move || generate(key_type))
            .await
            .map_err(|e| KeygenError::Failed(e.to_string()))?
            .map_err(|e| KeygenError::Failed(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::prelude::*;

    #[test]
    fn every_offered_type_generates_a_matching_pair() {
        for (k, bits) in [
            (KeyType::Rsa { bits: 2048 }, 2048),
            (KeyType::Rsa { bits: 3072 }, 3072),
            (KeyType::EcP256, 256),
            (KeyType::EcP384, 384),
        ] {
            let key = generate(k).unwrap();
            let (_, spki) = SubjectPublicKeyInfo::from_der(&key.spki_der).unwrap();
            assert_eq!(spki.parsed().unwrap().key_size(), bits, "{k:?}");
            // The CSR check in estgate-protocol agrees on the type.
            let signer = rcgen::KeyPair::try_from(key.pkcs8.as_slice()).unwrap();
            let csr = rcgen::CertificateParams::new(vec!["k.example.org".to_string()])
                .unwrap()
                .serialize_request(&signer)
                .unwrap();
            let parsed = estgate_protocol::pkcs10::parse(csr.der()).unwrap();
            assert_eq!(crate::domain::KeyType::from(parsed.key), k);
            assert_eq!(parsed.spki_der, key.spki_der);
            assert!(!format!("{key:?}").contains("pkcs8: ["));
        }
    }

    #[test]
    fn odd_rsa_sizes_are_refused() {
        assert!(generate(KeyType::Rsa { bits: 1024 }).is_err());
    }

    #[tokio::test]
    async fn a_full_queue_answers_busy_instead_of_waiting() {
        // One worker, no queue: while one RSA-4096 generation runs, the next is refused.
        let g = KeyGenerator::new(1, 0);
        let first = {
            let g = g.clone();
            tokio::spawn(async move { g.generate(KeyType::Rsa { bits: 4096 }).await })
        };
        // Give the first request time to be admitted.
        while g.admitted.available_permits() > 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(
            g.generate(KeyType::EcP256).await.unwrap_err(),
            KeygenError::Busy { retry_after: 2 }
        );
        first.await.unwrap().unwrap();
        // Capacity is back once the first finished.
        g.generate(KeyType::EcP256).await.unwrap();
    }
}
