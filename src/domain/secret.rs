//! Secrets: access codes, secret IDs, later email tokens and PKCS#12 passwords.
//! Redacted `Debug`, zeroized on drop, stored only as Argon2id hashes, compared in
//! constant time by the hash verifier.

use std::fmt;

/// Length of generated secret IDs, access codes and URI extensions (base62: ~119 bits).
pub const SECRET_LEN: usize = 20;

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

/// The stored form of a high-entropy token (email link, session cookie): SHA-256, hex.
/// Argon2 is for secrets people choose or type; a 32-character random base62 token has
/// 190 bits, so a fast hash already makes the stored value useless to a thief, and lookups
/// by hash stay cheap.
pub fn hash_token(token: &Secret) -> String {
    hex::encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        token.expose().as_bytes(),
    ))
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
///
/// Argon2id costs ~15 ms of CPU and 19 MiB by design, which would cap a device fleet
/// re-presenting the same access code at a few dozen requests per second per core. So a
/// successful check is remembered for a few minutes as SHA-256(hash ‖ secret): a fresh salt
/// in every stored hash makes the key unique per secret version, resetting a secret changes
/// the hash (old entries never match again), and failures are never cached (the throttle
/// counts them). The cache is only a shortcut; every process can verify on its own.
pub fn verify_secret(secret: &Secret, hash: &SecretHash) -> bool {
    let key = cache_key(secret, hash);
    if VERIFIED.contains(&key) {
        return true;
    }
    let ok = match PasswordHash::new(&hash.0) {
        Ok(parsed) => Argon2::default()
            .verify_password(secret.expose().as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    };
    if ok {
        VERIFIED.insert(key);
    }
    ok
}

/// Whether this exact (secret, hash) pair was verified within the last few minutes: such a
/// presentation is known good without running Argon2 again.
pub fn recently_verified(secret: &Secret, hash: &SecretHash) -> bool {
    VERIFIED.contains(&cache_key(secret, hash))
}

fn cache_key(secret: &Secret, hash: &SecretHash) -> [u8; 32] {
    use aws_lc_rs::digest::{Context, SHA256};
    let mut ctx = Context::new(&SHA256);
    ctx.update(hash.0.as_bytes());
    ctx.update(&[0]);
    ctx.update(secret.expose().as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

static VERIFIED: VerifiedCache = VerifiedCache::new();

/// Recently verified (hash, secret) pairs, bounded in size and age.
struct VerifiedCache(
    std::sync::Mutex<Option<std::collections::HashMap<[u8; 32], std::time::Instant>>>,
);

const CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(300);
const CACHE_MAX: usize = 10_000;

impl VerifiedCache {
    const fn new() -> VerifiedCache {
        VerifiedCache(std::sync::Mutex::new(None))
    }

    fn contains(&self, key: &[u8; 32]) -> bool {
        let Ok(guard) = self.0.lock() else {
            return false;
        };
        guard
            .as_ref()
            .and_then(|m| m.get(key))
            .is_some_and(|at| at.elapsed() < CACHE_TTL)
    }

    fn insert(&self, key: [u8; 32]) {
        let Ok(mut guard) = self.0.lock() else { return };
        let map = guard.get_or_insert_with(Default::default);
        if map.len() >= CACHE_MAX {
            map.retain(|_, at| at.elapsed() < CACHE_TTL);
            if map.len() >= CACHE_MAX {
                map.clear();
            }
        }
        map.insert(key, std::time::Instant::now());
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
        assert!(!verify_secret(
            &s,
            &SecretHash::from_stored("garbage".into())
        ));
        // Cached after success, but only for the exact hash: a reset secret never matches.
        assert!(verify_secret(&s, &h));
        let reset = hash_secret(&s);
        assert!(!verify_secret(&Secret::new("correct horse!"), &reset));
        assert!(verify_secret(&s, &reset));
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let s = Secret::new("hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
