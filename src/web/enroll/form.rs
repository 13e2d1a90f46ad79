//! The certificate request form. Each showing carries a one-time token (its hash is in the
//! session), so one form issues at most once: a double click, a reload of the result page or
//! a resubmission from the browser's history gets a page saying it was already sent.

use askama::Template;
use axum::extract::{Form, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use base64::Engine;
use rustls_pki_types::pem::PemObject;
use serde::Deserialize;
use zeroize::Zeroizing;

use super::context::{accepted, Chrome, Ctx};
use crate::domain::{KeyType, Pkcs12Encryption, Secret, WebSession};
use crate::error::{Error, ErrorKind};
use crate::ra::{FieldErrors, FormError, FormOutcome, FormRequest};
use crate::web::{observe, AppState};

csrf_field!(EnrollFields);

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/enroll/{ext}/form", get(form_page).post(form_submit))
}

#[derive(Template)]
#[template(path = "form.html")]
struct FormPage {
    c: Chrome,
    /// This showing's one-time token (the session keeps only its hash).
    form_token: Secret,
    account_name: String,
    org_name: String,
    department: Option<String>,
    email: String,
    profiles: Vec<(i64, String, bool)>,
    terms: Vec<(u32, bool)>,
    key_types: Vec<(&'static str, &'static str, bool)>,
    first_name: String,
    middle_name: String,
    last_name: String,
    /// The person is on record: their names are shown, not asked for (the RA ignores
    /// names sent for them).
    names_on_record: bool,
    server_key: bool,
    client_csr: bool,
    allow_empty_password: bool,
    legacy: bool,
    csr_value: String,
    eula_text: String,
    eula_checked: bool,
    errors: FieldErrors,
}

#[derive(Template)]
#[template(path = "issued_p12.html")]
struct IssuedP12Page {
    c: Chrome,
    serial: String,
    filename: String,
    legacy: bool,
    file_base64: String,
}

#[derive(Template)]
#[template(path = "issued_pem.html")]
struct IssuedPemPage {
    c: Chrome,
    serial: String,
    filename: String,
    pem: String,
    pem_base64: String,
}

#[derive(Template)]
#[template(path = "pending.html")]
struct PendingPage {
    c: Chrome,
    order_id: i64,
    email: String,
}

const RSA_2048: KeyType = KeyType::Rsa { bits: 2048 };

fn key_label(k: KeyType) -> &'static str {
    match k {
        KeyType::Rsa { bits: 2048 } => "RSA 2048-bit",
        KeyType::Rsa { bits: 3072 } => "RSA 3072-bit",
        KeyType::Rsa { bits: 4096 } => "RSA 4096-bit",
        KeyType::Rsa { .. } => "RSA",
        KeyType::EcP256 => "EC P-256",
        KeyType::EcP384 => "EC P-384",
    }
}

#[derive(Deserialize, Default)]
pub(crate) struct EnrollFields {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    form_token: String,
    #[serde(default)]
    profile: String,
    #[serde(default)]
    term: String,
    #[serde(default)]
    key_type: String,
    #[serde(default)]
    first_name: String,
    #[serde(default)]
    middle_name: String,
    #[serde(default)]
    last_name: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    password_confirmation: String,
    #[serde(default)]
    encryption: String,
    #[serde(default)]
    csr: String,
    #[serde(default)]
    eula: String,
}

impl Drop for EnrollFields {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.password);
        zeroize::Zeroize::zeroize(&mut self.password_confirmation);
        zeroize::Zeroize::zeroize(&mut self.form_token);
    }
}

/// The form page, filled from the record (GET) or from what was typed (after an error;
/// never the passwords), with a new one-time token: a form shown again after a field error
/// can be sent again, the earlier copy no longer.
async fn form_template(
    state: &AppState,
    ctx: &Ctx,
    session: &WebSession,
    typed: Option<&EnrollFields>,
    errors: FieldErrors,
) -> Result<FormPage, Error> {
    let f = state.ra.enrollment_form(session).await?;
    let form_token = state.ra.open_form(session).await?;
    let chosen_profile = typed
        .and_then(|t| t.profile.parse::<i64>().ok())
        .and_then(|id| f.profiles.iter().find(|p| p.id == id))
        .or(f.profiles.first());
    let profile_id = chosen_profile.map(|p| p.id).unwrap_or_default();
    let profiles = f
        .profiles
        .iter()
        .map(|p| (p.id, p.name.clone(), p.id == profile_id))
        .collect();
    // The chosen profile's terms and key types (after a change of profile, the page shown
    // again with a field error offers the new profile's).
    let terms: Vec<u32> = chosen_profile
        .map(|p| {
            let mut t = p.terms_years.clone();
            t.sort_unstable();
            t
        })
        .unwrap_or_default();
    let keys: Vec<KeyType> = chosen_profile
        .map(|p| p.key_types.clone())
        .unwrap_or_default();
    let default_term = chosen_profile.map(|p| p.default_term_years).unwrap_or(1);
    let term = typed
        .and_then(|t| t.term.parse::<u32>().ok())
        .unwrap_or(default_term);
    // RSA-2048 first when offered: it imports everywhere.
    let default_key = chosen_profile
        .map(|p| {
            if p.key_types.contains(&RSA_2048) {
                RSA_2048
            } else {
                p.default_key_type
            }
        })
        .unwrap_or(RSA_2048);
    let key = typed
        .and_then(|t| KeyType::parse(&t.key_type))
        .unwrap_or(default_key);
    let person = f.person.as_ref();
    let name = |typed_value: Option<&String>, recorded: Option<&String>| {
        recorded
            .or(typed_value)
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    };
    Ok(FormPage {
        c: ctx.chrome(),
        form_token,
        account_name: f.account.name.clone(),
        org_name: f.organisation.name.clone(),
        department: f.department.as_ref().map(|d| d.name.clone()),
        email: f.email.to_string(),
        profiles,
        terms: terms.into_iter().map(|t| (t, t == term)).collect(),
        key_types: keys
            .into_iter()
            .map(|k| (k.as_str(), key_label(k), k == key))
            .collect(),
        first_name: name(typed.map(|t| &t.first_name), person.map(|p| &p.first_name)),
        middle_name: name(
            typed.map(|t| &t.middle_name),
            person.map(|p| &p.middle_name),
        ),
        last_name: name(typed.map(|t| &t.last_name), person.map(|p| &p.last_name)),
        names_on_record: person.is_some(),
        server_key: f.account.csr_method.allows_server(),
        client_csr: f.account.csr_method.allows_client(),
        allow_empty_password: f.account.allow_empty_pkcs12_password,
        legacy: match typed {
            Some(t) => t.encryption == "legacy",
            None => f.account.pkcs12_encryption == Pkcs12Encryption::Legacy,
        },
        csr_value: typed.map(|t| t.csr.clone()).unwrap_or_default(),
        eula_text: f.endpoint.eula_text.clone(),
        eula_checked: typed.is_some_and(|t| t.eula == "accepted"),
        errors,
    })
}

async fn form_page(State(state): State<AppState>, ctx: Ctx) -> Response {
    let Some(session) = ctx.signed_in() else {
        return ctx.redirect("");
    };
    if session.account_id.is_none() {
        return ctx.redirect("/account");
    }
    match form_template(&state, &ctx, &session, None, FieldErrors::default()).await {
        Ok(t) => ctx.page(StatusCode::OK, &t),
        Err(e) => ctx.error(&e),
    }
}

/// A pasted PEM CSR (or bare base64 of its DER).
pub(crate) fn csr_der(text: &str) -> Result<Vec<u8>, String> {
    let text = text.trim();
    if text.starts_with("-----BEGIN") {
        // Some tools write "NEW CERTIFICATE REQUEST"; both are PKCS#10.
        let normalised = text.replace("NEW CERTIFICATE REQUEST", "CERTIFICATE REQUEST");
        rustls_pki_types::CertificateSigningRequestDer::from_pem_slice(normalised.as_bytes())
            .map(|c| c.as_ref().to_vec())
            .map_err(|_| "this is not a PEM certificate signing request".to_string())
    } else {
        estgate_protocol::transfer::decode_base64(text.as_bytes())
            .map_err(|_| "paste the CSR in PEM form (-----BEGIN CERTIFICATE REQUEST-----)".into())
    }
}

async fn form_submit(
    State(state): State<AppState>,
    ctx: Ctx,
    headers: HeaderMap,
    form: Result<Form<EnrollFields>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Some(session) = ctx.signed_in() else {
        return ctx.redirect("");
    };
    let fields = match accepted(&ctx, &headers, form) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    let show_errors = |errors: FieldErrors| async {
        // The access line names the fields at fault, not their sentences or values.
        let reason = format!(
            "the form has errors in: {}",
            errors
                .0
                .iter()
                .map(|(f, _)| *f)
                .collect::<Vec<_>>()
                .join(", ")
        );
        match form_template(&state, &ctx, &session, Some(&fields), errors).await {
            Ok(mut t) => {
                t.c.reference = crate::error::request_id()
                    .map(|id| id.to_string())
                    .unwrap_or_default();
                observe::with_reason(ctx.page(StatusCode::BAD_REQUEST, &t), reason)
            }
            Err(e) => ctx.error(&e),
        }
    };
    // Whether the account takes a CSR is the RA's decision (a field error when it does not).
    let csr = if fields.csr.trim().is_empty() {
        None
    } else {
        match csr_der(&fields.csr) {
            Ok(der) => Some(der),
            Err(m) => {
                let mut errors = FieldErrors::default();
                errors.0.push(("csr", m));
                return show_errors(errors).await;
            }
        }
    };
    let req = FormRequest {
        profile_id: fields.profile.parse().ok(),
        term_years: fields.term.parse().ok(),
        key_type: KeyType::parse(&fields.key_type),
        first_name: fields.first_name.clone(),
        middle_name: fields.middle_name.clone(),
        last_name: fields.last_name.clone(),
        password: Secret::new(fields.password.as_str()),
        password_confirmation: Secret::new(fields.password_confirmation.as_str()),
        encryption: if fields.encryption == "legacy" {
            Pkcs12Encryption::Legacy
        } else {
            Pkcs12Encryption::Modern
        },
        csr_der: csr,
        eula_accepted: fields.eula == "accepted",
    };
    let token = Secret::new(fields.form_token.trim());
    match state
        .ra
        .enroll_from_form_once(&session, &token, req, &ctx.source)
        .await
    {
        Err(FormError::Fields(errors)) => show_errors(errors).await,
        // A second submit of one form (a double click, a reload of the result page).
        Err(FormError::Other(e)) if e.kind == ErrorKind::AlreadyUsed => ctx.error_page(
            "This form was already submitted",
            &e,
            ("/certificates", "See My certificates"),
        ),
        Err(FormError::Other(e)) => ctx.error_page(
            "No certificate was issued",
            &e,
            ("/form", "Open the certificate request form again"),
        ),
        Ok(FormOutcome::Pkcs12 {
            file,
            filename,
            serial,
            encryption,
        }) => {
            let page = IssuedP12Page {
                c: ctx.chrome(),
                serial,
                filename,
                legacy: encryption == Pkcs12Encryption::Legacy,
                file_base64: base64::engine::general_purpose::STANDARD.encode(file.as_slice()),
            };
            let rendered = page.render();
            let mut page = page;
            zeroize::Zeroize::zeroize(&mut page.file_base64);
            match rendered {
                // The page carries the (encrypted) key: its buffer is wiped when sent.
                Ok(html) => ctx.with_cookies(crate::web::est::secret_response(
                    HeaderValue::from_static("text/html; charset=utf-8"),
                    Zeroizing::new(html.into_bytes()),
                    false,
                )),
                Err(e) => ctx.error(&Error::internal(format!("template: {e}"))),
            }
        }
        Ok(FormOutcome::Certificate {
            pem,
            filename,
            serial,
        }) => ctx.page(
            StatusCode::OK,
            &IssuedPemPage {
                c: ctx.chrome(),
                serial,
                filename,
                pem_base64: base64::engine::general_purpose::STANDARD.encode(pem.as_bytes()),
                pem,
            },
        ),
        Ok(FormOutcome::PendingApproval { order_id }) => ctx.page(
            StatusCode::ACCEPTED,
            &PendingPage {
                c: ctx.chrome(),
                order_id,
                email: session.email.to_string(),
            },
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pasted_csrs_in_pem_and_base64() {
        let der = include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/protocol/testdata/csr-ec-p256.der"
        ))
        .to_vec();
        let b64 = base64::engine::general_purpose::STANDARD.encode(&der);
        let pem = format!(
            "-----BEGIN CERTIFICATE REQUEST-----\n{b64}\n-----END CERTIFICATE REQUEST-----\n"
        );
        assert_eq!(csr_der(&pem).unwrap(), der);
        let new_pem = pem.replace("CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST");
        assert_eq!(csr_der(&new_pem).unwrap(), der);
        assert_eq!(csr_der(&b64).unwrap(), der);
        assert!(csr_der(
            "-----BEGIN CERTIFICATE REQUEST-----\n!!\n-----END CERTIFICATE REQUEST-----"
        )
        .is_err());
    }
}
