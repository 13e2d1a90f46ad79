//! Signing in (an emailed link or a secret ID), signing out, and choosing the enrollment
//! account ("Enroll with Access Code" or "Select Enrollment Account").

use askama::Template;
use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;

use super::context::{
    accepted, expired_session_cookie, reference, session_cookie, Chrome, CsrfOnly, Ctx,
};
use super::date_time;
use crate::domain::{AuthType, Secret, WebSession};
use crate::error::{Error, ErrorKind};
use crate::ra::SignInOutcome;
use crate::web::AppState;

csrf_field!(EmailForm, SecretIdForm, ConfirmForm, CodeForm, SelectForm);

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/enroll/{ext}", get(sign_in_page))
        .route("/enroll/{ext}/email", post(email_submit))
        .route("/enroll/{ext}/secret-id", post(secret_id_submit))
        .route(
            "/enroll/{ext}/confirm",
            get(confirm_page).post(confirm_submit),
        )
        .route("/enroll/{ext}/account", get(account_page))
        .route("/enroll/{ext}/account/code", post(code_submit))
        .route("/enroll/{ext}/account/select", post(select_submit))
        .route("/enroll/{ext}/sign-out", post(sign_out))
}

#[derive(Template)]
#[template(path = "sign_in.html")]
struct SignInPage {
    c: Chrome,
    email_confirmation: bool,
    secret_id: bool,
    email_value: String,
    email_error: Option<String>,
    secret_email_value: String,
    secret_error: Option<String>,
}

#[derive(Template)]
#[template(path = "check_email.html")]
struct CheckEmailPage {
    c: Chrome,
    email: String,
    ttl_minutes: i64,
}

#[derive(Template)]
#[template(path = "confirm.html")]
struct ConfirmPage {
    c: Chrome,
    token: String,
    est: bool,
    email: String,
    account: String,
    source: String,
    requested_at: String,
}

#[derive(Template)]
#[template(path = "est_confirmed.html")]
struct EstConfirmedPage {
    c: Chrome,
    account: String,
}

#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage {
    c: Chrome,
    accounts: Vec<(i64, String)>,
    code_error: Option<String>,
    select_error: Option<String>,
}

fn sign_in_template(ctx: &Ctx) -> SignInPage {
    SignInPage {
        c: ctx.chrome(),
        email_confirmation: ctx
            .endpoint
            .auth_types
            .contains(&AuthType::EmailConfirmation),
        secret_id: ctx.endpoint.auth_types.contains(&AuthType::SecretId),
        email_value: String::new(),
        email_error: None,
        secret_email_value: String::new(),
        secret_error: None,
    }
}

async fn sign_in_page(ctx: Ctx) -> Response {
    if ctx.session.is_some() {
        return ctx.redirect("/account");
    }
    ctx.page(StatusCode::OK, &sign_in_template(&ctx))
}

#[derive(Deserialize)]
struct EmailForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    email: String,
}

async fn email_submit(
    State(state): State<AppState>,
    ctx: Ctx,
    headers: HeaderMap,
    form: Result<Form<EmailForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let form = match accepted(&ctx, &headers, form) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    match state
        .ra
        .start_email_confirmation(&ctx.endpoint, &form.email, &ctx.source)
        .await
    {
        Ok(email) => ctx.page(
            StatusCode::OK,
            &CheckEmailPage {
                c: ctx.chrome(),
                email: email.to_string(),
                ttl_minutes: state.ra.email_link_ttl_secs() / 60,
            },
        ),
        Err(e) if e.kind == ErrorKind::Internal => ctx.error(&e),
        Err(e) => {
            let mut t = sign_in_template(&ctx);
            t.email_value = form.email.trim().to_string();
            t.email_error = Some(e.message.clone());
            t.c.reference = reference(&e);
            ctx.refused(&e, &t)
        }
    }
}

#[derive(Deserialize)]
struct SecretIdForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    secret_id: String,
}

impl Drop for SecretIdForm {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.secret_id);
    }
}

async fn secret_id_submit(
    State(state): State<AppState>,
    mut ctx: Ctx,
    headers: HeaderMap,
    form: Result<Form<SecretIdForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let form = match accepted(&ctx, &headers, form) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    let secret = Secret::new(form.secret_id.trim());
    match state
        .ra
        .sign_in_with_secret_id(&ctx.endpoint, &form.email, &secret, &ctx.source)
        .await
    {
        Ok(session) => {
            // A new session secret at every sign-in: whatever cookie came in is replaced.
            ctx.set_cookies.push(session_cookie(&session));
            ctx.redirect("/account")
        }
        Err(e) if e.kind == ErrorKind::Internal => ctx.error(&e),
        Err(e) => {
            let mut t = sign_in_template(&ctx);
            t.secret_email_value = form.email.trim().to_string();
            t.secret_error = Some(e.message.clone());
            t.c.reference = reference(&e);
            ctx.refused(&e, &t)
        }
    }
}

#[derive(Deserialize)]
struct TokenQuery {
    #[serde(default)]
    token: String,
}

/// The link opens a page with a button instead of signing in on GET: mail scanners that
/// fetch every link would otherwise use up the one-time link before the person does.
async fn confirm_page(
    State(state): State<AppState>,
    ctx: Ctx,
    query: Result<Query<TokenQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let token = query.map(|Query(q)| q.token).unwrap_or_default();
    if token.is_empty() || token.len() > 128 || !token.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return ctx.error(&Error::unauthorized(
            "this link is not valid: request a new one from the sign-in page",
        ));
    }
    let link = match state
        .ra
        .describe_email_link(&ctx.endpoint, &Secret::new(token.as_str()))
        .await
    {
        Ok(l) => l,
        Err(e) => return ctx.error(&e),
    };
    ctx.page(
        StatusCode::OK,
        &ConfirmPage {
            c: ctx.chrome(),
            token,
            est: link.purpose == crate::domain::EmailPurpose::Est,
            email: link.email.to_string(),
            account: link.account.unwrap_or_default(),
            source: link.source,
            requested_at: date_time(link.requested_at),
        },
    )
}

#[derive(Deserialize)]
struct ConfirmForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    token: String,
}

impl Drop for ConfirmForm {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.token);
    }
}

async fn confirm_submit(
    State(state): State<AppState>,
    mut ctx: Ctx,
    headers: HeaderMap,
    form: Result<Form<ConfirmForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let form = match accepted(&ctx, &headers, form) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    let token = Secret::new(form.token.trim());
    match state
        .ra
        .follow_email_link(&ctx.endpoint, &token, &ctx.source)
        .await
    {
        Ok(SignInOutcome::Session(session)) => {
            ctx.set_cookies.push(session_cookie(&session));
            ctx.session = None;
            ctx.redirect("/account")
        }
        Ok(SignInOutcome::EstConfirmed { account }) => ctx.page(
            StatusCode::OK,
            &EstConfirmedPage {
                c: ctx.chrome(),
                account,
            },
        ),
        Err(e) => ctx.error(&e),
    }
}

async fn sign_out(
    State(state): State<AppState>,
    mut ctx: Ctx,
    headers: HeaderMap,
    form: Result<Form<CsrfOnly>, axum::extract::rejection::FormRejection>,
) -> Response {
    if let Err(r) = accepted(&ctx, &headers, form) {
        return *r;
    }
    if let Some((_, secret)) = ctx.session.take() {
        if let Err(e) = state.ra.sign_out(&secret).await {
            return ctx.error(&e);
        }
    }
    ctx.set_cookies.push(expired_session_cookie());
    ctx.redirect("")
}

// ---- account choice -----------------------------------------------------------------------

async fn account_template(
    state: &AppState,
    ctx: &Ctx,
    session: &WebSession,
) -> Result<AccountPage, Error> {
    let accounts = state
        .ra
        .listed_accounts(session)
        .await?
        .into_iter()
        .map(|a| (a.id, a.name))
        .collect();
    Ok(AccountPage {
        c: ctx.chrome(),
        accounts,
        code_error: None,
        select_error: None,
    })
}

async fn account_page(State(state): State<AppState>, ctx: Ctx) -> Response {
    let Some(session) = ctx.signed_in() else {
        return ctx.redirect("");
    };
    match account_template(&state, &ctx, &session).await {
        Ok(t) => ctx.page(StatusCode::OK, &t),
        Err(e) => ctx.error(&e),
    }
}

#[derive(Deserialize)]
struct CodeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    access_code: String,
}

impl Drop for CodeForm {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.access_code);
    }
}

async fn code_submit(
    State(state): State<AppState>,
    ctx: Ctx,
    headers: HeaderMap,
    form: Result<Form<CodeForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Some(session) = ctx.signed_in() else {
        return ctx.redirect("");
    };
    let form = match accepted(&ctx, &headers, form) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    let code = Secret::new(form.access_code.as_str());
    match state
        .ra
        .choose_account_with_code(&session, &code, &ctx.source)
        .await
    {
        Ok(_) => ctx.redirect("/form"),
        Err(e) if e.kind == ErrorKind::Internal => ctx.error(&e),
        Err(e) => match account_template(&state, &ctx, &session).await {
            Ok(mut t) => {
                t.code_error = Some(e.message.clone());
                t.c.reference = reference(&e);
                ctx.refused(&e, &t)
            }
            Err(e) => ctx.error(&e),
        },
    }
}

#[derive(Deserialize)]
struct SelectForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    account: String,
}

async fn select_submit(
    State(state): State<AppState>,
    ctx: Ctx,
    headers: HeaderMap,
    form: Result<Form<SelectForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Some(session) = ctx.signed_in() else {
        return ctx.redirect("");
    };
    let form = match accepted(&ctx, &headers, form) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    let result = match form.account.trim().parse::<i64>() {
        Ok(id) => state.ra.choose_listed_account(&session, id).await,
        Err(_) => Err(Error::malformed("choose one of the listed accounts")),
    };
    match result {
        Ok(_) => ctx.redirect("/form"),
        Err(e) if e.kind == ErrorKind::Internal => ctx.error(&e),
        Err(e) => match account_template(&state, &ctx, &session).await {
            Ok(mut t) => {
                t.select_error = Some(e.message.clone());
                t.c.reference = reference(&e);
                ctx.refused(&e, &t)
            }
            Err(e) => ctx.error(&e),
        },
    }
}
