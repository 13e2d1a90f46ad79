//! Store verbs of self-enrollment and email: one-time email tokens (queued with their email
//! in one transaction), web sessions, the outbox the mail worker drains, and rate counters.

use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseBackend, EntityTrait, QueryFilter,
    QueryOrder, Set, Statement, TransactionTrait,
};

use super::entities::*;
use super::{corrupt, Result, Store, StoreError};
use crate::domain::{
    Account, AuthType, CertificateRecord, EmailAddress, EmailPurpose, EmailToken, Endpoint, Id,
    UnixTime, WebSession,
};

/// A link about to be mailed.
#[derive(Debug, Clone)]
pub struct NewEmailToken {
    pub endpoint_id: Id,
    pub email: EmailAddress,
    pub purpose: EmailPurpose,
    pub account_id: Option<Id>,
    pub csr_sha256: Option<String>,
    pub source: String,
    pub expires_at: UnixTime,
}

#[derive(Debug, Clone)]
pub struct NewWebSession {
    pub token_hash: String,
    pub endpoint_id: Id,
    pub email: EmailAddress,
    pub person_id: Option<Id>,
    pub auth_type: AuthType,
    pub expires_at: UnixTime,
}

/// One outbox row claimed by a mail worker.
#[derive(Debug, Clone)]
pub struct OutboxItem {
    pub id: Id,
    pub kind: String,
    pub recipient: String,
    pub email_token_id: Option<Id>,
    pub attempts: u32,
    /// Notices about an order or a certificate name it (lifecycle.rs).
    pub order_id: Option<Id>,
    pub certificate_id: Option<Id>,
    pub dedupe_key: Option<String>,
}

/// Why a link could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRefusal {
    Unknown,
    AlreadyUsed,
    Expired,
}

/// The outbox kind of an email-confirmation message (sign-in or EST).
pub const OUTBOX_EMAIL_CONFIRMATION: &str = "email-confirmation";

fn token_from(m: email_token::Model) -> Result<EmailToken> {
    Ok(EmailToken {
        id: m.id,
        endpoint_id: m.endpoint_id,
        email: EmailAddress::parse(&m.email).ok_or_else(|| corrupt("email", &m.email))?,
        purpose: EmailPurpose::parse(&m.purpose)
            .ok_or_else(|| corrupt("email token purpose", &m.purpose))?,
        account_id: m.account_id,
        csr_sha256: m.csr_sha256,
        source: m.source_addr,
        created_at: m.created_at,
        expires_at: m.expires_at,
        confirmed_at: m.confirmed_at,
        consumed_at: m.consumed_at,
    })
}

fn session_from(m: web_session::Model) -> Result<WebSession> {
    Ok(WebSession {
        id: m.id,
        endpoint_id: m.endpoint_id,
        email: EmailAddress::parse(&m.email).ok_or_else(|| corrupt("email", &m.email))?,
        person_id: m.person_id,
        account_id: m.account_id,
        auth_type: AuthType::parse(&m.auth_type)
            .ok_or_else(|| corrupt("authentication type", &m.auth_type))?,
        created_at: m.created_at,
        expires_at: m.expires_at,
    })
}

impl Store {
    // ---- email tokens -------------------------------------------------------------------

    /// Records a new link and queues its email in one transaction. Earlier unused links of
    /// the same owner (endpoint, email, purpose — and, for EST, account and CSR) stop
    /// working: a second request invalidates the first.
    pub async fn create_email_token(&self, t: &NewEmailToken, now: UnixTime) -> Result<Id> {
        let txn = self.db.begin().await?;
        let mut older = email_token::Entity::update_many()
            .col_expr(email_token::Column::ConsumedAt, Expr::value(now))
            .filter(email_token::Column::EndpointId.eq(t.endpoint_id))
            .filter(email_token::Column::Email.eq(t.email.as_str()))
            .filter(email_token::Column::Purpose.eq(t.purpose.as_str()))
            .filter(email_token::Column::ConsumedAt.is_null());
        if let Some(a) = t.account_id {
            older = older.filter(email_token::Column::AccountId.eq(a));
        }
        if let Some(h) = &t.csr_sha256 {
            older = older.filter(email_token::Column::CsrSha256.eq(h.as_str()));
        }
        older.exec(&txn).await?;
        let token = email_token::ActiveModel {
            token_hash: Set(None),
            endpoint_id: Set(t.endpoint_id),
            email: Set(t.email.to_string()),
            purpose: Set(t.purpose.as_str().to_string()),
            account_id: Set(t.account_id),
            csr_sha256: Set(t.csr_sha256.clone()),
            source_addr: Set(t.source.clone()),
            created_at: Set(now),
            expires_at: Set(t.expires_at),
            confirmed_at: Set(None),
            consumed_at: Set(None),
            ..Default::default()
        }
        .insert(&txn)
        .await?;
        outbox::ActiveModel {
            kind: Set(OUTBOX_EMAIL_CONFIRMATION.to_string()),
            recipient: Set(t.email.to_string()),
            email_token_id: Set(Some(token.id)),
            created_at: Set(now),
            attempts: Set(0),
            next_attempt_at: Set(now),
            locked_until: Set(None),
            sent_at: Set(None),
            last_error: Set(None),
            ..Default::default()
        }
        .insert(&txn)
        .await?;
        txn.commit().await?;
        Ok(token.id)
    }

    pub async fn email_token(&self, id: Id) -> Result<EmailToken> {
        let m = email_token::Entity::find_by_id(id)
            .one(&self.db)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("email token {id}")))?;
        token_from(m)
    }

    /// Sets the hash of the secret the mail worker is about to send, while the link is still
    /// usable. Returns false when it no longer is (used, superseded or expired): then the
    /// email is not worth sending.
    pub async fn mint_email_token(&self, id: Id, hash: &str, now: UnixTime) -> Result<bool> {
        let r = email_token::Entity::update_many()
            .col_expr(email_token::Column::TokenHash, Expr::value(hash))
            .filter(email_token::Column::Id.eq(id))
            .filter(email_token::Column::ConsumedAt.is_null())
            .filter(email_token::Column::ConfirmedAt.is_null())
            .filter(email_token::Column::ExpiresAt.gt(now))
            .exec(&self.db)
            .await?;
        Ok(r.rows_affected == 1)
    }

    /// The link with this hash at this endpoint, used or not; nothing changes.
    pub async fn email_token_by_hash(
        &self,
        hash: &str,
        endpoint_id: Id,
    ) -> Result<Option<EmailToken>> {
        email_token::Entity::find()
            .filter(email_token::Column::TokenHash.eq(hash))
            .filter(email_token::Column::EndpointId.eq(endpoint_id))
            .one(&self.db)
            .await?
            .map(token_from)
            .transpose()
    }

    /// Why the link with this hash cannot be used, when it cannot.
    async fn token_refusal(&self, hash: &str, now: UnixTime) -> Result<TokenRefusal> {
        let m = email_token::Entity::find()
            .filter(email_token::Column::TokenHash.eq(hash))
            .one(&self.db)
            .await?;
        Ok(match m {
            None => TokenRefusal::Unknown,
            Some(m) if m.consumed_at.is_some() || m.confirmed_at.is_some() => {
                TokenRefusal::AlreadyUsed
            }
            Some(m) if m.expires_at <= now => TokenRefusal::Expired,
            Some(_) => TokenRefusal::AlreadyUsed,
        })
    }

    /// Uses a link once, by compare-and-swap: of two concurrent uses exactly one wins.
    /// A sign-in link is consumed; an EST link is marked confirmed (the certificate request
    /// it confirms consumes it later).
    pub async fn use_email_token(
        &self,
        hash: &str,
        endpoint_id: Id,
        now: UnixTime,
    ) -> Result<std::result::Result<EmailToken, TokenRefusal>> {
        let Some(m) = email_token::Entity::find()
            .filter(email_token::Column::TokenHash.eq(hash))
            .filter(email_token::Column::EndpointId.eq(endpoint_id))
            .one(&self.db)
            .await?
        else {
            return Ok(Err(TokenRefusal::Unknown));
        };
        let column = match EmailPurpose::parse(&m.purpose) {
            Some(EmailPurpose::SignIn) => email_token::Column::ConsumedAt,
            Some(EmailPurpose::Est) => email_token::Column::ConfirmedAt,
            None => return Err(corrupt("email token purpose", &m.purpose)),
        };
        let r = email_token::Entity::update_many()
            .col_expr(column, Expr::value(now))
            .filter(email_token::Column::Id.eq(m.id))
            .filter(email_token::Column::TokenHash.eq(hash))
            .filter(email_token::Column::ConsumedAt.is_null())
            .filter(email_token::Column::ConfirmedAt.is_null())
            .filter(email_token::Column::ExpiresAt.gt(now))
            .exec(&self.db)
            .await?;
        if r.rows_affected != 1 {
            return Ok(Err(self.token_refusal(hash, now).await?));
        }
        Ok(Ok(self.email_token(m.id).await?))
    }

    /// The newest EST link for this request (account, email, CSR) that has not been
    /// consumed, confirmed or not.
    pub async fn est_confirmation(
        &self,
        account_id: Id,
        email: &EmailAddress,
        csr_sha256: &str,
    ) -> Result<Option<EmailToken>> {
        email_token::Entity::find()
            .filter(email_token::Column::Purpose.eq(EmailPurpose::Est.as_str()))
            .filter(email_token::Column::AccountId.eq(account_id))
            .filter(email_token::Column::Email.eq(email.as_str()))
            .filter(email_token::Column::CsrSha256.eq(csr_sha256))
            .filter(email_token::Column::ConsumedAt.is_null())
            .order_by_desc(email_token::Column::Id)
            .one(&self.db)
            .await?
            .map(token_from)
            .transpose()
    }

    /// Consumes a confirmed EST link for the issuance it allows; false if another request
    /// consumed it first.
    pub async fn consume_est_confirmation(&self, id: Id, now: UnixTime) -> Result<bool> {
        let r = email_token::Entity::update_many()
            .col_expr(email_token::Column::ConsumedAt, Expr::value(now))
            .filter(email_token::Column::Id.eq(id))
            .filter(email_token::Column::ConfirmedAt.is_not_null())
            .filter(email_token::Column::ConsumedAt.is_null())
            .exec(&self.db)
            .await?;
        Ok(r.rows_affected == 1)
    }

    // ---- web sessions -------------------------------------------------------------------

    pub async fn create_web_session(&self, s: &NewWebSession, now: UnixTime) -> Result<Id> {
        let m = web_session::ActiveModel {
            token_hash: Set(s.token_hash.clone()),
            endpoint_id: Set(s.endpoint_id),
            email: Set(s.email.to_string()),
            person_id: Set(s.person_id),
            account_id: Set(None),
            auth_type: Set(s.auth_type.as_str().to_string()),
            created_at: Set(now),
            expires_at: Set(s.expires_at),
            ..Default::default()
        }
        .insert(&self.db)
        .await?;
        Ok(m.id)
    }

    /// The live session with this secret's hash; expired ones are deleted on sight.
    pub async fn web_session(&self, hash: &str, now: UnixTime) -> Result<Option<WebSession>> {
        let Some(m) = web_session::Entity::find()
            .filter(web_session::Column::TokenHash.eq(hash))
            .one(&self.db)
            .await?
        else {
            return Ok(None);
        };
        if m.expires_at <= now {
            web_session::Entity::delete_by_id(m.id)
                .exec(&self.db)
                .await?;
            return Ok(None);
        }
        Ok(Some(session_from(m)?))
    }

    pub async fn set_session_account(&self, id: Id, account_id: Option<Id>) -> Result<()> {
        web_session::Entity::update_many()
            .col_expr(web_session::Column::AccountId, Expr::value(account_id))
            .filter(web_session::Column::Id.eq(id))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    pub async fn set_session_person(&self, id: Id, person_id: Id) -> Result<()> {
        web_session::Entity::update_many()
            .col_expr(web_session::Column::PersonId, Expr::value(person_id))
            .filter(web_session::Column::Id.eq(id))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// Records the hash of the one-time token of the form just shown to this session; an
    /// earlier form's token stops working (one open form per session).
    pub async fn set_form_token(&self, session_id: Id, hash: &str) -> Result<()> {
        web_session::Entity::update_many()
            .col_expr(web_session::Column::FormTokenHash, Expr::value(hash))
            .filter(web_session::Column::Id.eq(session_id))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// Uses the form's token once, by compare-and-swap: of two submits of one form (a double
    /// click, a reload of the result) exactly one finds the hash still there.
    pub async fn consume_form_token(&self, session_id: Id, hash: &str) -> Result<bool> {
        let r = web_session::Entity::update_many()
            .col_expr(
                web_session::Column::FormTokenHash,
                Expr::value(Option::<String>::None),
            )
            .filter(web_session::Column::Id.eq(session_id))
            .filter(web_session::Column::FormTokenHash.eq(hash))
            .exec(&self.db)
            .await?;
        Ok(r.rows_affected == 1)
    }

    pub async fn delete_web_session(&self, hash: &str) -> Result<()> {
        web_session::Entity::delete_many()
            .filter(web_session::Column::TokenHash.eq(hash))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    // ---- outbox -------------------------------------------------------------------------

    /// Claims up to `limit` due messages for `lease` seconds. On PostgreSQL several workers
    /// claim disjoint rows (`FOR UPDATE SKIP LOCKED`); SQLite has one writer, so the single
    /// statement is already exclusive. A worker that dies leaves its rows to be claimed
    /// again when the lease ends.
    pub async fn claim_outbox(
        &self,
        now: UnixTime,
        lease: i64,
        limit: u32,
    ) -> Result<Vec<OutboxItem>> {
        let backend = self.db.get_database_backend();
        let lock = if backend == DatabaseBackend::Postgres {
            " FOR UPDATE SKIP LOCKED"
        } else {
            ""
        };
        let sql = format!(
            "UPDATE outbox SET locked_until = $1 WHERE id IN (SELECT id FROM outbox \
             WHERE sent_at IS NULL AND next_attempt_at <= $2 \
             AND (locked_until IS NULL OR locked_until < $3) ORDER BY id LIMIT $4{lock}) \
             RETURNING id, kind, recipient, email_token_id, attempts, order_id, certificate_id, dedupe_key"
        );
        let rows = self
            .db
            .query_all(Statement::from_sql_and_values(
                backend,
                sql,
                [
                    (now + lease).into(),
                    now.into(),
                    now.into(),
                    i64::from(limit).into(),
                ],
            ))
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let attempts: i32 = r.try_get("", "attempts")?;
            out.push(OutboxItem {
                id: r.try_get("", "id")?,
                kind: r.try_get("", "kind")?,
                recipient: r.try_get("", "recipient")?,
                email_token_id: r.try_get("", "email_token_id")?,
                attempts: attempts.max(0) as u32,
                order_id: r.try_get("", "order_id")?,
                certificate_id: r.try_get("", "certificate_id")?,
                dedupe_key: r.try_get("", "dedupe_key")?,
            });
        }
        out.sort_by_key(|i| i.id);
        Ok(out)
    }

    pub async fn outbox_sent(&self, id: Id, now: UnixTime) -> Result<()> {
        outbox::Entity::update_many()
            .col_expr(outbox::Column::SentAt, Expr::value(now))
            .col_expr(
                outbox::Column::LockedUntil,
                Expr::value(Option::<i64>::None),
            )
            .col_expr(
                outbox::Column::LastError,
                Expr::value(Option::<String>::None),
            )
            .filter(outbox::Column::Id.eq(id))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// A failed attempt: kept for a retry at `next_attempt_at`, with the error text (which
    /// never contains the message body).
    pub async fn outbox_failed(
        &self,
        id: Id,
        attempts: u32,
        next_attempt_at: UnixTime,
        error: &str,
    ) -> Result<()> {
        outbox::Entity::update_many()
            .col_expr(outbox::Column::Attempts, Expr::value(attempts as i32))
            .col_expr(outbox::Column::NextAttemptAt, Expr::value(next_attempt_at))
            .col_expr(
                outbox::Column::LockedUntil,
                Expr::value(Option::<i64>::None),
            )
            .col_expr(outbox::Column::LastError, Expr::value(error))
            .filter(outbox::Column::Id.eq(id))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// A message that needs no sending any more (its link was used or superseded first).
    pub async fn outbox_dropped(&self, id: Id, now: UnixTime, why: &str) -> Result<()> {
        outbox::Entity::update_many()
            .col_expr(outbox::Column::SentAt, Expr::value(now))
            .col_expr(
                outbox::Column::LockedUntil,
                Expr::value(Option::<i64>::None),
            )
            .col_expr(outbox::Column::LastError, Expr::value(why))
            .filter(outbox::Column::Id.eq(id))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// Messages not yet sent (for tests and the admin's view of a stuck queue).
    pub async fn outbox_pending(&self) -> Result<u64> {
        use sea_orm::PaginatorTrait;
        Ok(outbox::Entity::find()
            .filter(outbox::Column::SentAt.is_null())
            .count(&self.db)
            .await?)
    }

    /// Messages not yet sent whose last attempt failed (each waits for its retry).
    pub async fn outbox_failing(&self) -> Result<u64> {
        use sea_orm::PaginatorTrait;
        Ok(outbox::Entity::find()
            .filter(outbox::Column::SentAt.is_null())
            .filter(outbox::Column::Attempts.gt(0))
            .count(&self.db)
            .await?)
    }

    // ---- housekeeping -------------------------------------------------------------------

    /// Deletes what has no use any more: ended sessions, messages sent (or dropped) before
    /// `cutoff`, and links expired before `cutoff` that no unsent message refers to.
    /// Returns how many rows went.
    pub async fn sweep_expired(&self, now: UnixTime, cutoff: UnixTime) -> Result<u64> {
        let mut n = web_session::Entity::delete_many()
            .filter(web_session::Column::ExpiresAt.lte(now))
            .exec(&self.db)
            .await?
            .rows_affected;
        // Notices sent at most once keep their row (the dedupe key) while their certificate
        // is unexpired, or an expiry reminder would be queued again.
        n += outbox::Entity::delete_many()
            .filter(outbox::Column::SentAt.lt(cutoff))
            .filter(outbox::Column::DedupeKey.is_null())
            .exec(&self.db)
            .await?
            .rows_affected;
        let backend = self.db.get_database_backend();
        n += self
            .db
            .execute(Statement::from_sql_and_values(
                backend,
                "DELETE FROM outbox WHERE dedupe_key IS NOT NULL AND sent_at < $1 AND \
                 certificate_id IN (SELECT id FROM certificate WHERE not_after < $2)",
                [cutoff.into(), now.into()],
            ))
            .await?
            .rows_affected();
        n += self
            .db
            .execute(Statement::from_sql_and_values(
                backend,
                "DELETE FROM email_token WHERE expires_at < $1 AND id NOT IN \
                 (SELECT email_token_id FROM outbox WHERE email_token_id IS NOT NULL)",
                [cutoff.into()],
            ))
            .await?
            .rows_affected();
        Ok(n)
    }

    // ---- rate counters ------------------------------------------------------------------

    /// Events under `key` since `since`: their count and the oldest one's time.
    /// Like `recent_failures`: with `upto`, only events recorded no later than that one.
    pub async fn rate_events(
        &self,
        key: &str,
        since: UnixTime,
        upto: Option<Id>,
    ) -> Result<(u64, Option<UnixTime>)> {
        let mut q = rate_event::Entity::find()
            .filter(rate_event::Column::Key.eq(key))
            .filter(rate_event::Column::At.gte(since));
        if let Some(id) = upto {
            q = q.filter(rate_event::Column::Id.lte(id));
        }
        let rows = q.order_by_asc(rate_event::Column::At).all(&self.db).await?;
        Ok((rows.len() as u64, rows.first().map(|r| r.at)))
    }

    pub async fn record_rate_event(&self, key: &str, now: UnixTime) -> Result<Id> {
        let m = rate_event::ActiveModel {
            key: Set(key.to_string()),
            at: Set(now),
            ..Default::default()
        }
        .insert(&self.db)
        .await?;
        Ok(m.id)
    }

    pub async fn delete_rate_event(&self, id: Id) -> Result<()> {
        rate_event::Entity::delete_by_id(id).exec(&self.db).await?;
        Ok(())
    }

    pub async fn sweep_rate_events(&self, before: UnixTime) -> Result<()> {
        rate_event::Entity::delete_many()
            .filter(rate_event::Column::At.lt(before))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    // ---- endpoints, accounts and persons as the form sees them ----------------------------

    pub async fn endpoint_by_uri_extension(&self, ext: &str) -> Result<Option<Endpoint>> {
        endpoint::Entity::find()
            .filter(endpoint::Column::UriExtension.eq(ext))
            // A deleted endpoint no longer serves its form.
            .filter(endpoint::Column::DeletedAt.is_null())
            .one(&self.db)
            .await?
            .map(super::endpoint_from)
            .transpose()
    }

    pub async fn endpoint(&self, id: Id) -> Result<Endpoint> {
        let m = endpoint::Entity::find_by_id(id)
            .one(self.reader())
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("endpoint {id}")))?;
        super::endpoint_from(m)
    }

    pub async fn accounts_of_endpoint(&self, endpoint_id: Id) -> Result<Vec<Account>> {
        let mut out = Vec::new();
        for m in account::Entity::find()
            .filter(account::Column::EndpointId.eq(endpoint_id))
            .filter(account::Column::DeletedAt.is_null())
            .order_by_asc(account::Column::Name)
            .all(&self.db)
            .await?
        {
            out.push(self.account_from(m).await?);
        }
        Ok(out)
    }

    /// The names a person typed in the form replace those on record.
    pub async fn set_person_names(
        &self,
        person_id: Id,
        first: &str,
        middle: &str,
        last: &str,
    ) -> Result<()> {
        person::Entity::update_many()
            .col_expr(person::Column::FirstName, Expr::value(first))
            .col_expr(person::Column::MiddleName, Expr::value(middle))
            .col_expr(person::Column::LastName, Expr::value(last))
            .filter(person::Column::Id.eq(person_id))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    // ---- a person's certificates --------------------------------------------------------

    /// Certificates of orders made for this person, newest first, with the profile name.
    pub async fn certificates_of_person(
        &self,
        person_id: Id,
    ) -> Result<Vec<(CertificateRecord, String)>> {
        let orders = cert_order::Entity::find()
            .filter(cert_order::Column::PersonId.eq(person_id))
            .all(&self.db)
            .await?;
        let mut out = Vec::new();
        for o in orders {
            let profile = self.profile(o.profile_id).await?.name;
            for c in certificate::Entity::find()
                .filter(certificate::Column::OrderId.eq(o.id))
                .all(&self.db)
                .await?
            {
                out.push((super::certificate_from(c)?, profile.clone()));
            }
        }
        out.sort_by_key(|c| std::cmp::Reverse(c.0.id));
        Ok(out)
    }
}
