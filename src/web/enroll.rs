//! The browser self-enrollment form at `/enroll/<uri-extension>`: server-rendered pages
//! (askama templates compiled into the binary), working without JavaScript. Every decision
//! is the RA's; this module handles cookies, CSRF, form decoding and rendering.
//!
//! Cookies: `__Host-estgate-session` (HttpOnly, Secure, SameSite=Lax, the session secret;
//! the database keeps its hash) and `__Host-estgate-csrf` (a random value every form echoes
//! back: double-submit CSRF protection that needs no server state, so several processes can
//! serve one person).

use askama::Template;
use axum::body::Body;
use axum::extract::{Form, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::Engine;
use rustls_pki_types::pem::PemObject;
use serde::Deserialize;
use zeroize::Zeroizing;

use super::{problem, AppState, ConnInfo};
use crate::domain::{
    generate_secret, AuthType, Endpoint, KeyType, Organisation, Pkcs12Encryption, Secret,
    WebSession,
};
use crate::error::{Error, ErrorKind};
use crate::ra::{FieldErrors, FormError, FormOutcome, FormRequest, SignInOutcome};

const SESSION_COOKIE: &str = "__Host-estgate-session";
const CSRF_COOKIE: &str = "__Host-estgate-csrf";

/// Form bodies are a few fields and at most a CSR: 64 KiB, like EST.
const MAX_FORM: usize = 64 * 1024;

pub fn routes() -> Router<AppState> {
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
        .route("/enroll/{ext}/form", get(form_page).post(form_submit))
        .route("/enroll/{ext}/certificates", get(certificates_page))
        .route("/enroll/{ext}/sign-out", post(sign_out))
        .route("/enroll/{ext}/help/{topic}", get(help_page))
        .route("/static/estgate.css", get(stylesheet))
        .route("/static/estgate.js", get(script))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_FORM))
        .layer(axum::middleware::map_response(security_headers))
}

/// Headers on every page of the form: no inline script or style, no framing, no referrer
/// (the confirmation link carries a token), HTTPS only, nothing cached.
async fn security_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    let set = |h: &mut HeaderMap, name: &'static str, value: &'static str| {
        h.insert(
            header::HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    };
    set(
        h,
        "content-security-policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
         form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    );
    set(h, "strict-transport-security", "max-age=31536000");
    set(h, "x-frame-options", "DENY");
    set(h, "referrer-policy", "no-referrer");
    set(h, "x-content-type-options", "nosniff");
    if !h.contains_key(header::CACHE_CONTROL) {
        set(h, "cache-control", "no-store");
    }
    resp
}

async fn stylesheet() -> Response {
    static_file(
        "text/css; charset=utf-8",
        include_str!("static/estgate.css"),
    )
}

async fn script() -> Response {
    static_file(
        "text/javascript; charset=utf-8",
        include_str!("static/estgate.js"),
    )
}

fn static_file(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

// ---- cookies and CSRF ---------------------------------------------------------------------

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

fn session_cookie(secret: &Secret) -> String {
    format!(
        "{SESSION_COOKIE}={}; Path=/; Max-Age={}; Secure; HttpOnly; SameSite=Lax",
        secret.expose(),
        crate::ra::SESSION_TTL_SECS
    )
}

fn expired_session_cookie() -> String {
    format!("{SESSION_COOKIE}=; Path=/; Max-Age=0; Secure; HttpOnly; SameSite=Lax")
}

/// The request's CSRF value, or a new one to set. Strict: it never travels cross-site.
fn csrf(headers: &HeaderMap) -> (String, Option<String>) {
    match cookie(headers, CSRF_COOKIE).filter(|v| v.len() == 32) {
        Some(v) => (v, None),
        None => {
            let v = generate_secret(32).expose().to_string();
            let set = format!("{CSRF_COOKIE}={v}; Path=/; Secure; HttpOnly; SameSite=Strict");
            (v, Some(set))
        }
    }
}

/// Every POST must echo the CSRF cookie and, when the browser says where it comes from,
/// come from this site.
fn check_csrf(headers: &HeaderMap, submitted: &str) -> Result<(), Error> {
    let refused = || {
        Error::forbidden(
            "this form has expired or was not sent from this site: reload the page and try again",
        )
    };
    if headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == "cross-site")
    {
        return Err(refused());
    }
    let expected = cookie(headers, CSRF_COOKIE).ok_or_else(refused)?;
    let same = expected.len() == submitted.len()
        && bool::from(subtle::ConstantTimeEq::ct_eq(
            expected.as_bytes(),
            submitted.as_bytes(),
        ));
    if same {
        Ok(())
    } else {
        Err(refused())
    }
}

// ---- page context -------------------------------------------------------------------------

/// What the layout shows on every page.
pub struct Chrome {
    pub base: String,
    pub endpoint_name: String,
    pub org_name: String,
    pub csrf: String,
    pub signed_in_as: Option<String>,
    pub help_link_text: String,
    pub help_link_target: String,
    pub help_text: String,
}

/// The endpoint, its organisation, the CSRF value and, when signed in, the session.
struct Ctx {
    endpoint: Endpoint,
    org: Organisation,
    csrf: String,
    set_cookies: Vec<String>,
    session: Option<(WebSession, Secret)>,
    source: String,
}

/// Every page handler starts from the endpoint its URL names: an extractor, so an unknown
/// endpoint is answered (404) before any handler runs.
impl axum::extract::FromRequestParts<AppState> for Ctx {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Ctx, Response> {
        let params =
            Path::<std::collections::HashMap<String, String>>::from_request_parts(parts, state)
                .await
                .map_err(|e| e.into_response())?;
        let ext = params.get("ext").cloned().unwrap_or_default();
        let conn = parts
            .extensions
            .get::<ConnInfo>()
            .cloned()
            .ok_or_else(|| bare_error(&Error::internal("no connection info")))?;
        Ctx::load(state, &ext, &parts.headers, &conn).await
    }
}

impl Ctx {
    async fn load(
        state: &AppState,
        ext: &str,
        headers: &HeaderMap,
        conn: &ConnInfo,
    ) -> Result<Ctx, Response> {
        let endpoint = match state.ra.endpoint(ext).await {
            Ok(e) => e,
            Err(e) => return Err(bare_error(&e)),
        };
        let org = state
            .ra
            .organisation_of(&endpoint)
            .await
            .map_err(|e| bare_error(&e))?;
        let (csrf, set) = csrf(headers);
        let mut session = None;
        if let Some(v) = cookie(headers, SESSION_COOKIE) {
            let secret = Secret::new(v);
            if let Some(s) = state
                .ra
                .web_session(&endpoint, &secret)
                .await
                .map_err(|e| bare_error(&e))?
            {
                session = Some((s, secret));
            }
        }
        Ok(Ctx {
            endpoint,
            org,
            csrf,
            set_cookies: set.into_iter().collect(),
            session,
            source: conn.peer.to_string(),
        })
    }

    fn base(&self) -> String {
        format!("/enroll/{}", self.endpoint.uri_extension)
    }

    fn chrome(&self) -> Chrome {
        Chrome {
            base: self.base(),
            endpoint_name: self.endpoint.name.clone(),
            org_name: self.org.name.clone(),
            csrf: self.csrf.clone(),
            signed_in_as: self.session.as_ref().map(|(s, _)| s.email.to_string()),
            help_link_text: self.endpoint.help_link_text.clone(),
            help_link_target: self.endpoint.help_link_target.clone(),
            help_text: self.endpoint.help_text.clone(),
        }
    }

    /// The session, when signed in; pages that need one redirect to the sign-in page.
    fn signed_in(&self) -> Option<WebSession> {
        self.session.as_ref().map(|(s, _)| s.clone())
    }

    fn redirect(&self, to: &str) -> Response {
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::SEE_OTHER;
        if let Ok(v) = HeaderValue::from_str(&format!("{}{to}", self.base())) {
            r.headers_mut().insert(header::LOCATION, v);
        }
        self.with_cookies(r)
    }

    fn with_cookies(&self, mut r: Response) -> Response {
        for c in &self.set_cookies {
            if let Ok(v) = HeaderValue::from_str(c) {
                r.headers_mut().append(header::SET_COOKIE, v);
            }
        }
        r
    }

    fn page(&self, status: StatusCode, t: &impl Template) -> Response {
        match t.render() {
            Ok(html) => self.with_cookies(
                (
                    status,
                    [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                    html,
                )
                    .into_response(),
            ),
            Err(e) => bare_error(&Error::internal(format!("template: {e}"))),
        }
    }

    /// A whole-page error in the site's layout, with the status for its kind.
    fn error(&self, err: &Error) -> Response {
        let heading = match err.kind {
            ErrorKind::Expired => "Link expired",
            ErrorKind::AlreadyUsed => "Link already used",
            ErrorKind::RateLimited { .. } => "Please wait",
            ErrorKind::Unauthorized => "Not signed in",
            ErrorKind::NotFound => "Not found",
            ErrorKind::Forbidden => "Not allowed",
            _ => "Something went wrong",
        };
        self.refused(
            err.kind,
            &MessagePage {
                c: self.chrome(),
                heading,
                message: err.message.clone(),
            },
        )
    }

    /// A page answering a refusal: the status for its kind, and `Retry-After` when it has one.
    fn refused(&self, kind: ErrorKind, t: &impl Template) -> Response {
        let mut r = self.page(problem::status(kind), t);
        problem::retry_after(&mut r, kind);
        r
    }
}

/// An error before there is a layout to show it in (unknown endpoint, database down).
fn bare_error(err: &Error) -> Response {
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>estgate</title>\
         <link rel=\"stylesheet\" href=\"/static/estgate.css\"></head><body><main><h1>{}</h1>\
         </main></body></html>",
        crate::domain::escape_html(&err.message)
    );
    (
        problem::status(err.kind),
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response()
}

// ---- templates ----------------------------------------------------------------------------

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

#[derive(Template)]
#[template(path = "form.html")]
struct FormPage {
    c: Chrome,
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

struct CertRow {
    serial: String,
    profile: String,
    not_before: String,
    not_after: String,
    status: String,
}

#[derive(Template)]
#[template(path = "certificates.html")]
struct CertificatesPage {
    c: Chrome,
    email: String,
    rows: Vec<CertRow>,
}

#[derive(Template)]
#[template(path = "message.html")]
struct MessagePage {
    c: Chrome,
    heading: &'static str,
    message: String,
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

fn date_time(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .map(|d| format!("{} at {:02}:{:02} UTC", date(t), d.hour(), d.minute()))
        .unwrap_or_default()
}

fn date(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .map(|d| format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day()))
        .unwrap_or_default()
}

// ---- sign-in ------------------------------------------------------------------------------

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
            ctx.refused(e.kind, &t)
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
            ctx.refused(e.kind, &t)
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

/// Forms that carry the CSRF value.
trait CsrfField {
    fn csrf(&self) -> &str;
}

macro_rules! csrf_field {
    ($($form:ty),+) => {
        $(impl CsrfField for $form {
            fn csrf(&self) -> &str {
                &self.csrf
            }
        })+
    };
}

csrf_field!(
    EmailForm,
    SecretIdForm,
    ConfirmForm,
    CsrfOnly,
    CodeForm,
    SelectForm,
    EnrollFields
);

/// The decoded form once its CSRF value checked out, or the error page to answer with.
fn accepted<T: CsrfField>(
    ctx: &Ctx,
    headers: &HeaderMap,
    form: Result<Form<T>, axum::extract::rejection::FormRejection>,
) -> Result<T, Box<Response>> {
    let form = match form {
        Ok(Form(f)) => f,
        Err(r) => return Err(Box::new(ctx.error(&form_rejected(&r)))),
    };
    check_csrf(headers, form.csrf()).map_err(|e| Box::new(ctx.error(&e)))?;
    Ok(form)
}

fn form_rejected(r: &axum::extract::rejection::FormRejection) -> Error {
    if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
        Error::new(
            ErrorKind::PayloadTooLarge,
            format!("the form is larger than {} KiB", MAX_FORM / 1024),
        )
    } else {
        Error::malformed("the form could not be read")
    }
}

#[derive(Deserialize)]
struct CsrfOnly {
    #[serde(default)]
    csrf: String,
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
                ctx.refused(e.kind, &t)
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
                ctx.refused(e.kind, &t)
            }
            Err(e) => ctx.error(&e),
        },
    }
}

// ---- the form -----------------------------------------------------------------------------

#[derive(Deserialize, Default)]
struct EnrollFields {
    #[serde(default)]
    csrf: String,
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
    }
}

/// The form page, filled from the record (GET) or from what was typed (after an error;
/// never the passwords).
async fn form_template(
    state: &AppState,
    ctx: &Ctx,
    session: &WebSession,
    typed: Option<&EnrollFields>,
    errors: FieldErrors,
) -> Result<FormPage, Error> {
    let f = state.ra.enrollment_form(session).await?;
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
        typed_value
            .or(recorded)
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    };
    Ok(FormPage {
        c: ctx.chrome(),
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
fn csr_der(text: &str) -> Result<Vec<u8>, String> {
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
        match form_template(&state, &ctx, &session, Some(&fields), errors).await {
            Ok(t) => ctx.page(StatusCode::BAD_REQUEST, &t),
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
    match state.ra.enroll_from_form(&session, req, &ctx.source).await {
        Err(FormError::Fields(errors)) => show_errors(errors).await,
        Err(FormError::Other(e)) => ctx.error(&e),
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
                Ok(html) => ctx.with_cookies(super::est::secret_response(
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

// ---- my certificates, help ----------------------------------------------------------------

async fn certificates_page(State(state): State<AppState>, ctx: Ctx) -> Response {
    let Some(session) = ctx.signed_in() else {
        return ctx.redirect("");
    };
    match state.ra.my_certificates(&session).await {
        Ok(certs) => ctx.page(
            StatusCode::OK,
            &CertificatesPage {
                c: ctx.chrome(),
                email: session.email.to_string(),
                rows: certs
                    .into_iter()
                    .map(|(c, profile)| CertRow {
                        serial: c.serial,
                        profile,
                        not_before: date(c.not_before),
                        not_after: date(c.not_after),
                        status: c.status.as_str().to_string(),
                    })
                    .collect(),
            },
        ),
        Err(e) => ctx.error(&e),
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
    fn cookies_are_found_by_exact_name() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; __Host-estgate-csrf=abc; x__Host-estgate-csrf=no"),
        );
        assert_eq!(cookie(&h, CSRF_COOKIE).as_deref(), Some("abc"));
        assert_eq!(cookie(&h, SESSION_COOKIE), None);
    }

    #[test]
    fn csrf_needs_the_cookie_value_and_same_site() {
        let value = "A".repeat(32);
        let mut h = HeaderMap::new();
        assert!(check_csrf(&h, &value).is_err(), "no cookie");
        h.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("{CSRF_COOKIE}={value}")).unwrap(),
        );
        assert!(check_csrf(&h, &value).is_ok());
        assert!(check_csrf(&h, &"B".repeat(32)).is_err(), "other value");
        assert!(check_csrf(&h, "").is_err(), "empty");
        h.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(check_csrf(&h, &value).is_err(), "cross-site");
    }

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
