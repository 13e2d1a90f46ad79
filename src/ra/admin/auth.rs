//! How administrators authenticate: a password (Argon2id, throttled like every secret)
//! plus a TOTP code (RFC 6238) for people, and API keys for automation. Sessions and API
//! keys are random tokens of which only a SHA-256 is stored; the TOTP secret must be read
//! back to check codes, so it is stored sealed (AES-256-GCM) under the server's admin key.

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine;

use super::{Caller, Principal};
use crate::domain::{
    generate_secret, hash_token, Actor, Admin, ApiKeyRecord, EmailAddress, Id, Secret,
};
use crate::error::{Error, ErrorKind};
use crate::metrics::GuessRefusal;
use crate::ra::{throttle, Ra};
use crate::store::AuditEntry;

/// A session ends after this long without a request, and at the latest after
/// `SESSION_MAX_SECS`.
pub const SESSION_IDLE_SECS: i64 = 15 * 60;
pub const SESSION_MAX_SECS: i64 = 8 * 60 * 60;
/// The longest an API key may live.
pub const API_KEY_MAX_DAYS: u32 = 366;
/// RFC 6238: 30-second steps, 6 digits, one step of clock drift either way.
const TOTP_STEP: i64 = 30;
const TOTP_DRIFT: i64 = 1;
/// Admin failures are counted in their own scope of the failure table (no account is -1).
const ADMIN_SCOPE: Id = -1;
const SEAL_AAD: &[u8] = b"estgate-admin-totp-v1";

/// A new session: the bearer token exists only in this value.
#[derive(Debug)]
pub struct SessionCreated {
    pub token: Secret,
    pub expires_at: i64,
    pub admin: Admin,
}

/// A new API key: the token exists only in this value.
#[derive(Debug)]
pub struct ApiKeyCreated {
    pub record: ApiKeyRecord,
    pub token: Secret,
}

/// A TOTP secret to put into an authenticator app, shown once.
#[derive(Debug)]
pub struct TotpEnrolment {
    /// Base32 (RFC 4648), as authenticator apps take it.
    pub secret: Secret,
    /// `otpauth://totp/…` for a QR code.
    pub uri: Secret,
}

/// The server's key for sealing TOTP secrets (a file in the data directory).
#[derive(Clone)]
pub struct SealKey(std::sync::Arc<[u8; 32]>);

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealKey(..)")
    }
}

impl SealKey {
    pub fn from_bytes(bytes: [u8; 32]) -> SealKey {
        SealKey(std::sync::Arc::new(bytes))
    }

    fn key(&self) -> Result<LessSafeKey, Error> {
        UnboundKey::new(&AES_256_GCM, self.0.as_ref())
            .map(LessSafeKey::new)
            .map_err(|_| Error::internal("admin seal key rejected"))
    }

    pub(crate) fn seal(&self, plain: &[u8]) -> Result<String, Error> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| Error::internal("no randomness"))?;
        let mut data = plain.to_vec();
        self.key()?
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(SEAL_AAD),
                &mut data,
            )
            .map_err(|_| Error::internal("sealing failed"))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&data);
        Ok(format!(
            "v1:{}",
            base64::engine::general_purpose::STANDARD.encode(out)
        ))
    }

    pub(crate) fn open(&self, sealed: &str) -> Result<zeroize::Zeroizing<Vec<u8>>, Error> {
        let broken = || Error::internal("a sealed TOTP secret does not open with this key");
        let raw = sealed
            .strip_prefix("v1:")
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .ok_or_else(broken)?;
        if raw.len() < NONCE_LEN {
            return Err(broken());
        }
        let (nonce, data) = raw.split_at(NONCE_LEN);
        let mut data = zeroize::Zeroizing::new(data.to_vec());
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| broken())?;
        let len = self
            .key()?
            .open_in_place(nonce, Aad::from(SEAL_AAD), &mut data)
            .map_err(|_| broken())?
            .len();
        data.truncate(len);
        Ok(data)
    }
}

/// RFC 4648 base32 without padding, as authenticator apps read TOTP secrets.
pub fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::new();
    let (mut buf, mut bits) = (0u32, 0u32);
    for b in bytes {
        buf = (buf << 8) | u32::from(*b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((buf >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buf << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// The RFC 6238 code (HMAC-SHA-1, 6 digits) for one time step.
pub fn totp_code(secret: &[u8], step: i64) -> u32 {
    use aws_lc_rs::hmac;
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret);
    let tag = hmac::sign(&key, &(step as u64).to_be_bytes());
    let h = tag.as_ref();
    let at = (h[h.len() - 1] & 0x0f) as usize;
    let bin = u32::from_be_bytes([h[at] & 0x7f, h[at + 1], h[at + 2], h[at + 3]]);
    bin % 1_000_000
}

/// A fresh TOTP secret (160 bits, RFC 4226 §4's recommendation) and what to show of it.
pub(crate) fn new_totp(email: &EmailAddress) -> Result<(Vec<u8>, TotpEnrolment), Error> {
    let mut secret = vec![0u8; 20];
    SystemRandom::new()
        .fill(&mut secret)
        .map_err(|_| Error::internal("no randomness"))?;
    let b32 = base32(&secret);
    let uri = format!(
        "otpauth://totp/estgate:{email}?secret={b32}&issuer=estgate&algorithm=SHA1&digits=6&period=30"
    );
    Ok((
        secret,
        TotpEnrolment {
            secret: Secret::new(b32),
            uri: Secret::new(uri),
        },
    ))
}

/// The administrator's own key: forgotten after their successful sign-in.
fn admin_key(email: &str) -> throttle::Key {
    throttle::Key {
        scope: ADMIN_SCOPE,
        name: format!("admin:{}", email.trim().to_lowercase()),
        limit: throttle::MAX_FAILURES,
        reach: throttle::Reach::Personal,
    }
}

fn signed_in_wrong() -> Error {
    Error::unauthorized("wrong email address, password or one-time code")
}

fn key_refused() -> Error {
    Error::unauthorized("the API key or session is unknown, expired or revoked")
}

impl Ra {
    pub(crate) fn seal_key(&self) -> Result<&SealKey, Error> {
        self.seal_key.as_ref().ok_or_else(|| {
            Error::new(
                ErrorKind::Unavailable { retry_after: 60 },
                "administrator passwords are not available: no admin seal key is configured",
            )
        })
    }

    /// The principal of a stored administrator (a DRAO's departments with their
    /// organisations).
    pub(crate) async fn principal_of(
        &self,
        admin: &Admin,
        name: String,
    ) -> Result<Principal, Error> {
        let mut departments = Vec::with_capacity(admin.department_ids.len());
        for d in &admin.department_ids {
            let dept = self.store.department(*d).await?;
            departments.push((dept.organisation_id, dept.id));
        }
        Ok(Principal::of(admin, name, departments))
    }

    /// Password + TOTP sign-in. Every failure is counted (per email, per client address
    /// among administrators, and in the client address's count across the whole server)
    /// and audited; the answer does not tell which part was wrong. A success forgets only
    /// the email's failures.
    pub async fn sign_in_admin(
        &self,
        email: &str,
        password: &Secret,
        code: &str,
        source: &str,
        request_id: Option<String>,
    ) -> Result<SessionCreated, Error> {
        let now = self.clock.now();
        let keys = [
            admin_key(email),
            throttle::Key::address(ADMIN_SCOPE, source),
            throttle::Key::client(&self.guess_limits, source),
        ];
        let counts = self.counted(
            throttle::check(&self.store, &keys, now).await,
            GuessRefusal::Locked,
        )?;
        let found = match EmailAddress::parse(email) {
            Some(e) => self.store.admin_by_email(&e).await?,
            None => None,
        };
        let hash = found
            .as_ref()
            .filter(|(a, _)| !a.disabled)
            .and_then(|(_, c)| c.password_hash.clone());
        let password_ok = self.verify_guess(&keys, password, hash, source).await?;
        let mut ok = false;
        if let (true, Some((admin, creds))) = (password_ok, &found) {
            if let Some(sealed) = &creds.totp_sealed {
                let secret = self.seal_key()?.open(sealed)?;
                let step_now = now.div_euclid(TOTP_STEP);
                let code = code.trim();
                for step in step_now - TOTP_DRIFT..=step_now + TOTP_DRIFT {
                    let want = format!("{:06}", totp_code(&secret, step));
                    if code.len() == 6
                        && subtle::ConstantTimeEq::ct_eq(want.as_bytes(), code.as_bytes()).into()
                    {
                        // A code is good once: a replayed (or earlier) step is refused.
                        ok = self.store.use_totp_step(admin.id, step).await?;
                        break;
                    }
                }
            }
            if !ok {
                throttle::fail(&self.store, &keys, now).await?;
                self.record_lockouts(&keys, &counts, source).await?;
            }
        }
        let Some((admin, _)) = found.filter(|_| ok) else {
            let entry = AuditEntry {
                actor: Actor {
                    name: format!("admin:{}", email.trim().to_lowercase()),
                    source: source.to_string(),
                    role: None,
                    request_id,
                },
                action: "admin.sign-in-failed".into(),
                object: "admin".into(),
                ..Default::default()
            };
            self.store.audit(&entry, now).await?;
            return Err(signed_in_wrong());
        };
        throttle::forget_failures(&self.store, &keys, &counts).await?;
        let token = generate_secret(40);
        let expires_at = now + SESSION_MAX_SECS;
        self.store
            .create_admin_session(admin.id, &hash_token(&token), source, now, expires_at)
            .await?;
        let caller = Caller {
            principal: self
                .principal_of(&admin, format!("admin:{}", admin.email))
                .await?,
            source: source.to_string(),
            request_id,
        };
        let entry = caller.audit("admin.sign-in", format!("admin {}", admin.id), None, None);
        self.store.audit(&entry, now).await?;
        Ok(SessionCreated {
            token,
            expires_at,
            admin,
        })
    }

    pub async fn sign_out_admin(&self, token: &Secret) -> Result<(), Error> {
        self.store.delete_admin_session(&hash_token(token)).await?;
        Ok(())
    }

    /// The caller a bearer token names: an API key (`eg_<id>_<secret>`) or a session.
    pub async fn authenticate_admin(
        &self,
        token: &Secret,
        source: &str,
        request_id: Option<String>,
    ) -> Result<Caller, Error> {
        let now = self.clock.now();
        let text = token.expose();
        let (admin, name) = if let Some(rest) = text.strip_prefix("eg_") {
            let (key_id, _) = rest.split_once('_').ok_or_else(key_refused)?;
            let (record, hash) = self.store.api_key(key_id).await?.ok_or_else(key_refused)?;
            let matches: bool =
                subtle::ConstantTimeEq::ct_eq(hash.as_bytes(), hash_token(token).as_bytes()).into();
            if !matches || record.revoked_at.is_some() || record.expires_at <= now {
                return Err(key_refused());
            }
            let admin = self.store.admin(record.admin_id).await?;
            if record.last_used_at.is_none_or(|t| t + 60 < now) {
                self.store.touch_api_key(record.id, now).await?;
            }
            let name = format!("api-key:{} ({})", record.key_id, admin.email);
            (admin, name)
        } else {
            let admin = self
                .store
                .admin_session(&hash_token(token), now, SESSION_IDLE_SECS)
                .await?
                .ok_or_else(key_refused)?;
            let name = format!("admin:{}", admin.email);
            (admin, name)
        };
        if admin.disabled {
            return Err(key_refused());
        }
        Ok(Caller {
            principal: self.principal_of(&admin, name).await?,
            source: source.to_string(),
            request_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totp_matches_rfc_6238_appendix_b() {
        // The SHA-1 seed of RFC 6238 Appendix B; the RFC prints 8 digits, we use the last 6.
        let seed = b"12345678901234567890";
        for (t, code) in [
            (59i64, 94287082u32),
            (1111111109, 7081804),
            (1111111111, 14050471),
            (1234567890, 89005924),
            (2000000000, 69279037),
        ] {
            assert_eq!(totp_code(seed, t / 30), code % 1_000_000, "T={t}");
        }
    }

    #[test]
    fn base32_matches_rfc_4648_vectors() {
        for (plain, b32) in [
            ("", ""),
            ("f", "MY"),
            ("fo", "MZXQ"),
            ("foo", "MZXW6"),
            ("foob", "MZXW6YQ"),
            ("fooba", "MZXW6YTB"),
            ("foobar", "MZXW6YTBOI"),
        ] {
            assert_eq!(base32(plain.as_bytes()), b32);
        }
    }

    #[test]
    fn sealed_secrets_open_only_with_their_key() {
        let key = SealKey::from_bytes([7; 32]);
        let sealed = key.seal(b"totp secret").unwrap();
        assert!(!sealed.contains("totp"));
        assert_eq!(key.open(&sealed).unwrap().as_slice(), b"totp secret");
        assert!(SealKey::from_bytes([8; 32]).open(&sealed).is_err());
        // Change the last base64 character to a different one, whatever it was.
        let mut tampered = sealed.clone();
        let last = tampered.pop().unwrap();
        tampered.push(if last == 'A' { 'B' } else { 'A' });
        assert!(key.open(&tampered).is_err());
    }
}
