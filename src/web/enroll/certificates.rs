//! "My certificates": the person's certificates with their status, self-service revocation
//! in two steps (choose a reason and confirm, then the result), and the help pages.

use askama::Template;
use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;

use super::context::{accepted, Chrome, Ctx};
use super::{date, date_time};
use crate::domain::{CertStatus, CertificateRecord, Id, RevocationReason, WebSession};
use crate::error::Error;
use crate::web::AppState;

csrf_field!(RevokeFields);

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/enroll/{ext}/certificates", get(certificates_page))
        .route("/enroll/{ext}/certificates/revoke", post(revoke_start))
        .route(
            "/enroll/{ext}/certificates/revoke/confirm",
            post(revoke_confirm),
        )
        .route("/enroll/{ext}/help/{topic}", get(help_page))
}

/// Where the pages of this module send a person after a refusal.
const CERTIFICATES_LINK: (&str, &str) = ("/certificates", "Back to My certificates");

struct CertRow {
    id: Id,
    serial: String,
    profile: String,
    not_before: String,
    not_after: String,
    status: &'static str,
    /// For a revoked certificate: why, when and by whom, in words.
    revocation: Option<String>,
    revocable: bool,
}

#[derive(Template)]
#[template(path = "certificates.html")]
struct CertificatesPage {
    c: Chrome,
    email: String,
    rows: Vec<CertRow>,
}

#[derive(Template)]
#[template(path = "revoke_confirm.html")]
struct RevokeConfirmPage {
    c: Chrome,
    certificate_id: Id,
    serial: String,
    subject: String,
    profile: String,
    not_before: String,
    not_after: String,
    /// (value, label, checked) in the order shown.
    reasons: Vec<(&'static str, &'static str, bool)>,
    reason_error: Option<String>,
}

#[derive(Template)]
#[template(path = "revoked.html")]
struct RevokedPage {
    c: Chrome,
    serial: String,
    reason: &'static str,
    at: String,
}

#[derive(Template)]
#[template(path = "help_why.html")]
struct HelpWhy {
    c: Chrome,
}

#[derive(Template)]
#[template(path = "help_passphrase.html")]
struct HelpPassphrase {
    c: Chrome,
}

#[derive(Template)]
#[template(path = "help_revoke.html")]
struct HelpRevoke {
    c: Chrome,
}

/// What a reason means to the person choosing it (RFC 5280 §5.3.1 names them for machines).
fn reason_label(r: RevocationReason) -> &'static str {
    match r {
        RevocationReason::KeyCompromise => {
            "My private key was lost or may be known to someone else"
        }
        RevocationReason::AffiliationChanged => {
            "My name, email address or place in the organization changed"
        }
        RevocationReason::Superseded => "I have a new certificate that replaces this one",
        RevocationReason::CessationOfOperation => "I no longer need this certificate",
        RevocationReason::Unspecified => "None of these, or I would rather not say",
        RevocationReason::CertificateHold => "Suspended by an administrator",
        RevocationReason::PrivilegeWithdrawn => "Withdrawn by an administrator",
    }
}

/// The reasons a person may pick (the RA's list), the catch-all last.
fn offered_reasons() -> Vec<RevocationReason> {
    let mut reasons = RevocationReason::SELF_SERVICE.to_vec();
    reasons.sort_by_key(|r| *r == RevocationReason::Unspecified);
    reasons
}

async fn certificates_page(State(state): State<AppState>, ctx: Ctx) -> Response {
    let Some(session) = ctx.signed_in() else {
        return ctx.redirect("");
    };
    let certs = match state.ra.my_certificates(&session).await {
        Ok(c) => c,
        Err(e) => return ctx.error(&e),
    };
    let rows = certs
        .into_iter()
        .map(|(c, profile)| {
            let revocable = state.ra.check_revocable(&c).is_ok();
            let status = match c.status {
                CertStatus::Revoked => "Revoked",
                CertStatus::Valid if revocable => "Valid",
                CertStatus::Valid => "Expired",
            };
            let revocation = c.revocation.as_ref().map(|r| {
                let by = if r.by == session.email.as_str() {
                    "by you"
                } else {
                    "by an administrator"
                };
                format!("{} ({by}, {})", reason_label(r.reason), date(r.at))
            });
            CertRow {
                id: c.id,
                serial: c.serial,
                profile,
                not_before: date(c.not_before),
                not_after: date(c.not_after),
                status,
                revocation,
                revocable,
            }
        })
        .collect();
    ctx.page(
        StatusCode::OK,
        &CertificatesPage {
            c: ctx.chrome(),
            email: session.email.to_string(),
            rows,
        },
    )
}

#[derive(Deserialize)]
struct RevokeFields {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    certificate: String,
    #[serde(default)]
    reason: String,
}

/// The certificate a form names, when the name is a number at all; anything else is as
/// unknown as a number nobody has.
fn certificate_id(fields: &RevokeFields) -> Result<Id, Error> {
    fields
        .certificate
        .trim()
        .parse()
        .map_err(|_| Error::not_found("no such certificate of yours"))
}

async fn confirm_template(
    state: &AppState,
    ctx: &Ctx,
    session: &WebSession,
    id: Id,
    chosen: Option<RevocationReason>,
) -> Result<RevokeConfirmPage, Error> {
    let (cert, profile): (CertificateRecord, String) =
        state.ra.revocable_certificate(session, id).await?;
    Ok(RevokeConfirmPage {
        c: ctx.chrome(),
        certificate_id: cert.id,
        serial: cert.serial,
        subject: cert.subject,
        profile,
        not_before: date(cert.not_before),
        not_after: date(cert.not_after),
        reasons: offered_reasons()
            .into_iter()
            .map(|r| (r.as_str(), reason_label(r), Some(r) == chosen))
            .collect(),
        reason_error: None,
    })
}

/// Step one ("Revoke…" in the list): which certificate, why, and a warning; nothing changes.
async fn revoke_start(
    State(state): State<AppState>,
    ctx: Ctx,
    headers: HeaderMap,
    form: Result<Form<RevokeFields>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Some(session) = ctx.signed_in() else {
        return ctx.redirect("");
    };
    let fields = match accepted(&ctx, &headers, form) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    let page = match certificate_id(&fields) {
        Ok(id) => confirm_template(&state, &ctx, &session, id, None).await,
        Err(e) => Err(e),
    };
    match page {
        Ok(t) => ctx.page(StatusCode::OK, &t),
        Err(e) => ctx.error_page("Cannot revoke this certificate", &e, CERTIFICATES_LINK),
    }
}

/// Step two: the RA revokes (and publishes a new CRL and OCSP response), or refuses and
/// nothing changes.
async fn revoke_confirm(
    State(state): State<AppState>,
    ctx: Ctx,
    headers: HeaderMap,
    form: Result<Form<RevokeFields>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Some(session) = ctx.signed_in() else {
        return ctx.redirect("");
    };
    let fields = match accepted(&ctx, &headers, form) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    let refused = |e: &Error| ctx.error_page("Not revoked", e, CERTIFICATES_LINK);
    let id = match certificate_id(&fields) {
        Ok(id) => id,
        Err(e) => return refused(&e),
    };
    let reason = RevocationReason::parse(fields.reason.trim())
        .filter(|r| RevocationReason::SELF_SERVICE.contains(r));
    let Some(reason) = reason else {
        // The same page again, so the person can pick one of the offered reasons.
        return match confirm_template(&state, &ctx, &session, id, None).await {
            Ok(mut t) => {
                let e = Error::malformed("choose one of the reasons below");
                t.reason_error = Some(e.message.clone());
                t.c = ctx.refusal_chrome(&e);
                ctx.refused(&e, &t)
            }
            Err(e) => refused(&e),
        };
    };
    match state
        .ra
        .revoke_mine(&session, id, reason, &ctx.source)
        .await
    {
        Ok(cert) => {
            let at = cert
                .revocation
                .as_ref()
                .map(|r| date_time(r.at))
                .unwrap_or_default();
            ctx.page(
                StatusCode::OK,
                &RevokedPage {
                    c: ctx.chrome(),
                    serial: cert.serial,
                    reason: reason_label(reason),
                    at,
                },
            )
        }
        Err(e) => refused(&e),
    }
}

async fn help_page(ctx: Ctx, Path((_, topic)): Path<(String, String)>) -> Response {
    let c = ctx.chrome();
    match topic.as_str() {
        "why-authenticate" => ctx.page(StatusCode::OK, &HelpWhy { c }),
        "passphrase" => ctx.page(StatusCode::OK, &HelpPassphrase { c }),
        "revoke" => ctx.page(StatusCode::OK, &HelpRevoke { c }),
        _ => ctx.error(&Error::not_found("there is no such help page")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_person_is_offered_the_ras_reasons_with_the_catch_all_last() {
        let offered = offered_reasons();
        assert_eq!(offered.len(), RevocationReason::SELF_SERVICE.len());
        assert!(offered
            .iter()
            .all(|r| RevocationReason::SELF_SERVICE.contains(r)));
        assert_eq!(offered.last(), Some(&RevocationReason::Unspecified));
        assert_eq!(offered.first(), Some(&RevocationReason::KeyCompromise));
    }
}
