//! Publication of revocation status: the CRL and OCSP responses. Both are kept in the
//! database, so every process serves the same ones (DESIGN.md "Scale").
//!
//! - The CRL is signed again after each revocation made in this process, when a tick sees a
//!   revocation made elsewhere (another process, the CLI), and when it is older than
//!   `CRL_REFRESH_SECS` — well before its nextUpdate.
//! - OCSP responses for every unexpired certificate are signed ahead of need (SHA-1 CertID,
//!   as `openssl ocsp` and most clients ask) and re-signed on revocation and before their
//!   nextUpdate. Requests with a nonce, or a SHA-256 CertID, or several certificates are
//!   signed when they come.
//! - This process keeps the responses it served in memory; an entry is dropped when a tick
//!   sees its certificate revoked, so a revocation anywhere is served here within
//!   `TICK_SECS` (README "CRL and OCSP").
//! - The delegated OCSP responder certificate (id-kp-OCSPSigning, ocsp-nocheck) is issued by
//!   the CA for a key that exists only in this process's memory, and renewed by itself.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{Mutex, RwLock};

use crate::ca::crl::RevokedEntry;
use crate::ca::ocsp::{self, OcspErrorStatus, OcspResponder, SingleStatus};
use crate::ca::Ca;
use crate::domain::{CertStatus, CertificateRecord, Clock, UnixTime};
use crate::error::Error;
use crate::store::{AuditEntry, Store};

/// How often the publisher looks for work.
pub const TICK_SECS: u64 = 5;
/// A CRL is valid for a day and signed again after six hours.
const CRL_LIFETIME_SECS: i64 = 24 * 3600;
const CRL_REFRESH_SECS: i64 = 6 * 3600;
/// An OCSP response is valid for a day and signed again eight hours before it ends.
const OCSP_LIFETIME_SECS: i64 = 24 * 3600;
const OCSP_REFRESH_MARGIN_SECS: i64 = 8 * 3600;
/// Responses signed ahead per tick, so a large backlog never starves requests.
const OCSP_BATCH: u64 = 500;
/// The responder certificate lives 30 days and is renewed when 7 are left.
const RESPONDER_LIFETIME_SECS: i64 = 30 * 24 * 3600;
const RESPONDER_RENEW_SECS: i64 = 7 * 24 * 3600;
/// How long a shared HTTP cache may keep an OCSP answer: short, so a cached "good" does not
/// outlive a revocation by long (RFC 5019 §6 lets a responder choose).
const OCSP_MAX_AGE_SECS: i64 = 60;
/// In-memory responses kept at most (a bound on memory, not a correctness limit).
const CACHE_MAX: usize = 100_000;

/// A signed OCSP response and when it stops being valid.
#[derive(Clone)]
struct Cached {
    der: Arc<Vec<u8>>,
    next_update: UnixTime,
}

/// An answer for the HTTP front end: the DER and, for caches, how long it stays valid.
pub struct OcspAnswer {
    pub der: Arc<Vec<u8>>,
    /// Seconds a shared cache may keep it (RFC 5019 §6.2): 0 for error responses and
    /// nonce-bound answers.
    pub max_age: i64,
}

pub struct Publisher {
    ca: Arc<Ca>,
    store: Store,
    clock: Arc<dyn Clock>,
    responder: RwLock<Arc<OcspResponder>>,
    /// Upper-case hex serial → the SHA-1-CertID response served for it.
    cache: RwLock<HashMap<String, Cached>>,
    /// One CRL signature at a time in this process.
    crl_turn: Mutex<()>,
    /// Revocations at or after this time are not yet known to be published here.
    seen_until: Mutex<UnixTime>,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    #[error("CA: {0}")]
    Ca(#[from] crate::ca::CaError),
    #[error("{0}")]
    Store(#[from] crate::store::StoreError),
    #[error("the signer task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
    #[error("stored serial {0:?} is not hex")]
    Serial(String),
}

impl From<PublishError> for Error {
    fn from(e: PublishError) -> Self {
        Error::internal(e)
    }
}

impl Publisher {
    /// Issues this process's responder certificate.
    pub async fn start(
        ca: Arc<Ca>,
        store: Store,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<Publisher>, PublishError> {
        let responder = issue_responder(&ca, &store, clock.now()).await?;
        let seen_until = store
            .latest_crl()
            .await?
            .map(|(_, this_update, _, _)| this_update)
            .unwrap_or(0);
        let p = Arc::new(Publisher {
            ca,
            store,
            clock,
            responder: RwLock::new(Arc::new(responder)),
            cache: RwLock::new(HashMap::new()),
            crl_turn: Mutex::new(()),
            seen_until: Mutex::new(seen_until),
        });
        // The first round runs in `run`, whose interval fires at once; start-up does not
        // wait for it (a CRL is signed on demand if none exists, and an OCSP request that
        // finds no pre-signed answer is signed when it comes).
        Ok(p)
    }

    /// Runs `tick` every `TICK_SECS` until the task is dropped.
    pub async fn run(self: Arc<Self>) {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(TICK_SECS));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            if let Err(e) = self.tick().await {
                tracing::warn!("publishing CRL/OCSP: {e}");
            }
        }
    }

    /// One round: revocations made elsewhere, the CRL's age, responses coming due, the
    /// responder's renewal.
    pub async fn tick(&self) -> Result<(), PublishError> {
        let now = self.clock.now();
        self.renew_responder(now).await?;
        let since = *self.seen_until.lock().await;
        // A second's overlap: a revocation in the same second as the last look is not lost.
        let revoked = self.store.revoked_since(since.saturating_sub(1)).await?;
        let crl_stale = match self.store.latest_crl().await? {
            None => true,
            Some((_, this_update, _, _)) => this_update + CRL_REFRESH_SECS <= now,
        };
        if crl_stale || !revoked.is_empty() {
            self.publish_crl().await?;
        }
        for cert in &revoked {
            self.presign(cert, now).await?;
        }
        if let Some(latest) = revoked
            .iter()
            .filter_map(|c| c.revocation.as_ref())
            .map(|r| r.at)
            .max()
        {
            let mut seen = self.seen_until.lock().await;
            *seen = (*seen).max(latest);
        }
        for cert in self
            .store
            .ocsp_due(now, now + OCSP_REFRESH_MARGIN_SECS, OCSP_BATCH)
            .await?
        {
            self.presign(&cert, now).await?;
        }
        Ok(())
    }

    /// Called by the RA right after a revocation in this process.
    pub async fn after_revocation(&self, serial: &str) -> Result<(), PublishError> {
        let now = self.clock.now();
        self.publish_crl().await?;
        if let Some(cert) = self.store.certificate_by_serial(serial).await? {
            self.presign(&cert, now).await?;
        }
        Ok(())
    }

    /// The CRL to serve, signing one first when none exists yet.
    pub async fn crl(&self) -> Result<Vec<u8>, PublishError> {
        if let Some((_, _, _, der)) = self.store.latest_crl().await? {
            return Ok(der);
        }
        self.publish_crl().await
    }

    /// The issuing CA certificate (caIssuers).
    pub fn issuing_ca(&self) -> &[u8] {
        self.ca
            .chain()
            .first()
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// Signs and stores a new CRL with the next number. Two processes racing for a number
    /// both succeed: the loser signs again with the number after.
    async fn publish_crl(&self) -> Result<Vec<u8>, PublishError> {
        let _turn = self.crl_turn.lock().await;
        for _ in 0..3 {
            let now = self.clock.now();
            let number = self
                .store
                .latest_crl()
                .await?
                .map(|(n, _, _, _)| n + 1)
                .unwrap_or(1);
            let entries = self
                .store
                .revoked_unexpired(now)
                .await?
                .iter()
                .filter_map(revoked_entry)
                .collect::<Result<Vec<_>, _>>()?;
            let ca = self.ca.clone();
            let der = tokio::task::spawn_blocking(move || {
                ca.sign_crl(number as u64, now, now + CRL_LIFETIME_SECS, &entries)
            })
            .await??;
            if self
                .store
                .store_crl(number, now, now + CRL_LIFETIME_SECS, &der)
                .await?
            {
                tracing::info!(number, "CRL published");
                return Ok(der);
            }
        }
        // Three lost races in a row: serve the newest one, which another process signed.
        Ok(self
            .store
            .latest_crl()
            .await?
            .map(|(_, _, _, der)| der)
            .unwrap_or_default())
    }

    /// Signs the SHA-1-CertID response for one certificate and stores it for every process.
    async fn presign(&self, cert: &CertificateRecord, now: UnixTime) -> Result<(), PublishError> {
        let serial = serial_bytes(&cert.serial)?;
        let status = single_status(Some(cert));
        let responder = self.responder.read().await.clone();
        let ca = self.ca.clone();
        let next = now + OCSP_LIFETIME_SECS;
        let der = tokio::task::spawn_blocking(move || {
            responder.sign_for_serial(&ca, &serial, status, now, now, next)
        })
        .await??;
        self.store
            .put_ocsp_response(&cert.serial, &der, now, next)
            .await?;
        self.cache.write().await.insert(
            cert.serial.clone(),
            Cached {
                der: Arc::new(der),
                next_update: next,
            },
        );
        Ok(())
    }

    /// Answers one OCSP request (DER, from a GET path or a POST body).
    pub async fn answer(&self, request: &[u8]) -> OcspAnswer {
        match self.try_answer(request).await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!("OCSP: {e}");
                error_answer(OcspErrorStatus::InternalError)
            }
        }
    }

    async fn try_answer(&self, request: &[u8]) -> Result<OcspAnswer, PublishError> {
        let Ok(query) = ocsp::parse_request(request) else {
            return Ok(error_answer(OcspErrorStatus::MalformedRequest));
        };
        if query.ids.is_empty() {
            return Ok(error_answer(OcspErrorStatus::MalformedRequest));
        }
        if !query.ids.iter().all(|id| self.ca.issuer_matches(id)) {
            // RFC 6960 §2.3: a responder that cannot answer for that issuer says so.
            return Ok(error_answer(OcspErrorStatus::Unauthorized));
        }
        let now = self.clock.now();
        // The common case: one certificate, no nonce, the CertID that is signed ahead.
        if let ([id], None) = (query.ids.as_slice(), &query.nonce) {
            if id.hash() == ocsp::CertIdHash::Sha1 {
                let serial = hex::encode_upper(id.serial());
                if let Some(hit) = self.cached(&serial, now).await? {
                    return Ok(OcspAnswer {
                        max_age: (hit.next_update - now).clamp(0, OCSP_MAX_AGE_SECS),
                        der: hit.der,
                    });
                }
            }
        }
        let mut answers = Vec::with_capacity(query.ids.len());
        for id in &query.ids {
            let serial = hex::encode_upper(id.serial());
            let record = self.store.certificate_by_serial(&serial).await?;
            answers.push((id.clone(), single_status(record.as_ref())));
        }
        let responder = self.responder.read().await.clone();
        let ca = self.ca.clone();
        let nonce = query.nonce.clone();
        let next = now + OCSP_LIFETIME_SECS;
        let der = tokio::task::spawn_blocking(move || {
            responder.sign_response(&ca, &answers, now, now, next, nonce.as_deref())
        })
        .await??;
        Ok(OcspAnswer {
            der: Arc::new(der),
            max_age: if query.nonce.is_some() {
                0
            } else {
                OCSP_MAX_AGE_SECS
            },
        })
    }

    /// The response for a serial from memory, else from the database (then kept in
    /// memory); `None` for a serial with no fresh response (unknown, or not signed yet).
    async fn cached(&self, serial: &str, now: UnixTime) -> Result<Option<Cached>, PublishError> {
        if let Some(c) = self.cache.read().await.get(serial) {
            if c.next_update > now {
                return Ok(Some(c.clone()));
            }
        }
        let Some((der, _, next_update)) = self.store.ocsp_response(serial).await? else {
            return Ok(None);
        };
        if next_update <= now {
            return Ok(None);
        }
        let c = Cached {
            der: Arc::new(der),
            next_update,
        };
        let mut cache = self.cache.write().await;
        if cache.len() >= CACHE_MAX {
            cache.clear();
        }
        cache.insert(serial.to_string(), c.clone());
        Ok(Some(c))
    }

    async fn renew_responder(&self, now: UnixTime) -> Result<(), PublishError> {
        if self.responder.read().await.not_after() - RESPONDER_RENEW_SECS > now {
            return Ok(());
        }
        let fresh = issue_responder(&self.ca, &self.store, now).await?;
        *self.responder.write().await = Arc::new(fresh);
        Ok(())
    }

    /// The responder certificate this process signs with.
    pub async fn responder_certificate(&self) -> Vec<u8> {
        self.responder.read().await.cert_der().to_vec()
    }
}

async fn issue_responder(
    ca: &Arc<Ca>,
    store: &Store,
    now: UnixTime,
) -> Result<OcspResponder, PublishError> {
    let signer = ca.clone();
    let responder = tokio::task::spawn_blocking(move || {
        signer.issue_ocsp_responder(now, RESPONDER_LIFETIME_SECS)
    })
    .await??;
    // The responder certificate is the CA's own; its issue is on the audit record.
    store
        .audit(
            &AuditEntry {
                actor: crate::domain::Actor {
                    name: "system".into(),
                    source: "local".into(),
                    ..Default::default()
                },
                action: "ocsp-responder.issued".into(),
                object: format!("ocsp-responder {}", hex::encode_upper(responder.serial())),
                detail: format!("not_after={}", responder.not_after()),
                ..Default::default()
            },
            now,
        )
        .await?;
    Ok(responder)
}

fn error_answer(status: OcspErrorStatus) -> OcspAnswer {
    OcspAnswer {
        der: Arc::new(ocsp::error_response(status)),
        max_age: 0,
    }
}

fn single_status(record: Option<&CertificateRecord>) -> SingleStatus {
    match record {
        None => SingleStatus::Unknown,
        Some(c) => match (&c.status, &c.revocation) {
            (CertStatus::Revoked, Some(r)) => SingleStatus::Revoked {
                at: r.at,
                reason: r.reason,
            },
            (CertStatus::Revoked, None) => SingleStatus::Revoked {
                at: c.not_before,
                reason: crate::domain::RevocationReason::Unspecified,
            },
            (CertStatus::Valid, _) => SingleStatus::Good,
        },
    }
}

fn serial_bytes(hex_serial: &str) -> Result<Vec<u8>, PublishError> {
    hex::decode(hex_serial).map_err(|_| PublishError::Serial(hex_serial.to_string()))
}

fn revoked_entry(c: &CertificateRecord) -> Option<Result<RevokedEntry, PublishError>> {
    let r = c.revocation.as_ref()?;
    Some(serial_bytes(&c.serial).map(|serial| RevokedEntry {
        serial,
        revoked_at: r.at,
        reason: r.reason,
    }))
}
