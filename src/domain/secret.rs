//! Secrets: access codes, secret IDs, later email tokens and PKCS#12 passwords.
//! Redacted `Debug`, zeroized on drop, stored only as Argon2id hashes, compared in
//! constant time by the hash verifier.

use std::fmt;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use zeroize::Zeroizing;

/// A secret value a person or device presents. Never printed.
#[derive(Clone)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(Zeroizing::new(s.into()))
    }

    /// Only for the one place that must show a freshly generated secret to an operator.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// An Argon2id PHC string.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretHash(String);

impl SecretHash {
    pub fn from_stored(s: String) -> SecretHash {
        SecretHash(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretHash(<argon2id>)")
    }
}

const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// `len` base62 characters from the system CSPRNG, without modulo bias.
pub fn generate_secret(len: usize) -> Secret {
    use aws_lc_rs::rand::{SecureRandom, SystemRandom};
    let rng = SystemRandom::new();
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 64];
    while out.len() < len {
        if rng.fill(&mut buf).is_err() {
            continue;
        }
        // 248 = 4 * 62: bytes at or above it would bias the distribution.
        for b in buf.iter().filter(|b| **b < 248) {
            if out.len() == len {
                break;
            }
            out.push(BASE62[(*b % 62) as usize] as char);
        }
    }
    Secret::new(out)
}

pub fn hash_secret(secret: &Secret) -> SecretHash {
    use aws_lc_rs::rand::{SecureRandom, SystemRandom};
    let mut salt = [0u8; 16];
    while SystemRandom::new().fill(&mut salt).is_err() {}
    let hash = SaltString::encode_b64(&salt)
        .and_then(|salt| {
            Argon2::default()
                .hash_password(secret.expose().as_bytes(), &salt)
                .map(|h| h.to_string())
        })
        .unwrap_or_default();
    SecretHash(hash)
}

/// Constant-time (inside Argon2's verifier) check of a presented secret against its hash.
pub fn verify_secret(secret: &Secret, hash: &SecretHash) -> bool {
    match PasswordHash::new(&hash.0) {
        Ok(parsed) => Argon2::default()
            .verify_password(secret.expose().as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secrets_are_base62_and_distinct() {
        let a = generate_secret(24);
        let b = generate_secret(24);
        assert_eq!(a.expose().len(), 24);
        assert!(a.expose().bytes().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a.expose(), b.expose());
    }

    #[test]
    fn hash_verifies_only_the_same_secret() {
        let s = Secret::new("correct horse");
        let h = hash_secret(&s);
        assert!(h.as_str().starts_with("$argon2id$"));
        assert!(verify_secret(&s, &h));
        assert!(!verify_secret(&Secret::new("correct horsE"), &h));
        assert!(!verify_secret(&s, &SecretHash::from_stored("garbage".into())));
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let s = Secret::new("hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
