//! Administration and sign-in: access tokens (`/v1/tokens`, admin only), the
//! access log (`/v1/audit`, admin only), the dashboard's session cookie
//! (`/v1/session`), and scoping of `/metrics` to the caller's trusts.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Duration;
use openptl_app::access::{Principal, TrustScope};
use openptl_app::tokens::{NewToken, TokenError};
use openptl_app::{App, AppError};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::{check_secret, Auth, Client, COOKIE};
use crate::{invalid, ApiError, HttpError};

/// Tokens created through the API without `expires_at` last this long.
const DEFAULT_EXPIRY_DAYS: i64 = 90;

/// The dashboard session cookie lives this long (seconds).
const SESSION_SECONDS: u32 = 12 * 3600;

/// Refuses anyone but an admin, saying what they may not do.
fn admin_only(principal: &Principal, what: &str) -> Result<(), ApiError> {
    if principal.is_admin() {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!(
            "only an admin may {what}; you are a {}",
            principal.role.as_str()
        )))
    }
}

fn token_error(e: TokenError) -> ApiError {
    match e {
        TokenError::Invalid(problem) => invalid("token", problem),
        TokenError::NotFound(_) => ApiError::NotFound,
        TokenError::Storage(f) => {
            tracing::error!(error = %f, "the token store could not be written");
            ApiError::App(AppError::TokenStore(f))
        }
    }
}

fn describe(principal: &Principal) -> Value {
    json!({
        "actor": principal.actor,
        "role": principal.role.as_str(),
        "trusts": match &principal.trusts {
            TrustScope::All => json!("*"),
            TrustScope::Only(set) => json!(set),
        },
    })
}

/// Largest body of a token request: a role, a label, a few trusts.
const TOKEN_BODY_LIMIT: usize = 64 * 1024;

/// `POST /v1/tokens` (admin): `{ "role", "trusts", "alliance", "label", "expires_at" }`.
/// Answers the secret once.
pub async fn create_token(
    State(app): State<Arc<App>>,
    Auth(principal): Auth,
    body: axum::body::Body,
) -> Result<Response, HttpError> {
    admin_only(&principal, "issue tokens")?;
    let body = crate::read_body(body, TOKEN_BODY_LIMIT).await?;
    let value: Value =
        serde_json::from_slice(&body).map_err(|e| ApiError::InvalidJson(e.to_string()))?;
    // The field at fault by its name (`role`, `expires_at`…), not the
    // whole request's.
    let mut new: NewToken = serde_path_to_error::deserialize(value).map_err(|e| {
        let field = match e.path().to_string() {
            path if path == "." => "body".to_string(),
            path => path,
        };
        invalid(&field, format!("is not valid here: {}", e.inner()))
    })?;
    let now = app.clock().now();
    if new.expires_at.is_none() {
        new.expires_at = Some(now + Duration::days(DEFAULT_EXPIRY_DAYS));
    }
    let (record, secret) = app.tokens().create(new, now).map_err(token_error)?;
    tracing::info!(by = %principal.actor, token = %record.id, "token created through the API");
    Ok((
        StatusCode::CREATED,
        Json(json!({ "token": secret, "record": record })),
    )
        .into_response())
}

/// `GET /v1/tokens` (admin): every token, without secrets.
pub async fn list_tokens(
    State(app): State<Arc<App>>,
    Auth(principal): Auth,
) -> Result<Response, HttpError> {
    admin_only(&principal, "list tokens")?;
    Ok(Json(json!({ "tokens": app.tokens().list() })).into_response())
}

/// `DELETE /v1/tokens/{id}` (admin): revokes at once.
pub async fn revoke_token(
    State(app): State<Arc<App>>,
    Auth(principal): Auth,
    crate::PathText(id): crate::PathText,
) -> Result<Response, HttpError> {
    admin_only(&principal, "revoke tokens")?;
    let record = app
        .tokens()
        .revoke(&id, app.clock().now())
        .map_err(token_error)?;
    tracing::info!(by = %principal.actor, token = %id, "token revoked through the API");
    Ok(Json(json!({ "record": record })).into_response())
}

/// `POST /v1/backup` (admin): backs the log up into the directory the
/// service was started with (`--backup-to`; never a path from the request)
/// while appends go on, and answers with the position and head hash the
/// backup holds (docs/operations.md).
pub async fn backup(
    State(app): State<Arc<App>>,
    Auth(principal): Auth,
) -> Result<Response, HttpError> {
    admin_only(&principal, "start a backup")?;
    let report = app.backup().await?;
    let head_hash: String = report
        .head_hash
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    tracing::info!(by = %principal.actor, position = report.position, "backup through the API");
    Ok(Json(json!({
        "position": report.position,
        "head_hash": head_hash,
        "segments": report.segments,
        "segments_copied": report.segments_copied,
        "bytes_copied": report.bytes_copied,
        "files": report.files,
    }))
    .into_response())
}

/// `GET /v1/audit?actor=&pathway_id=&limit=` (admin): recent reads of
/// patient-level data, newest first.
pub async fn audit(
    State(app): State<Arc<App>>,
    Auth(principal): Auth,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, HttpError> {
    admin_only(&principal, "read the access log")?;
    let limit = match params.get("limit") {
        None => 100,
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=10_000).contains(n))
            .ok_or_else(|| invalid("limit", "must be a whole number from 1 to 10000"))?,
    };
    let entries = app.access_log().recent(
        params.get("actor").map(String::as_str),
        params.get("pathway_id").map(String::as_str),
        limit,
    );
    Ok(Json(json!({ "entries": entries })).into_response())
}

/// The body of `POST /v1/session`.
#[derive(Deserialize)]
struct SignIn {
    token: String,
}

/// `POST /v1/session` `{ "token": "…" }`: checks the token, opens a session
/// token for it and sets that as an HttpOnly, SameSite=Strict cookie for the
/// dashboard. Only from the service's own pages or a client that is no
/// browser ([`crate::auth::same_site`]; another site's page could otherwise
/// sign a user in as someone else, or spend its address's allowance of
/// failures), and only with `Content-Type: application/json` (which a page
/// on another site cannot send without the browser asking first).
/// Unauthenticated, so bounded: a body of at most
/// [`crate::SESSION_BODY_LIMIT`] bytes read into a one-field struct, the
/// client's unknown secrets limited, and the token's rate limit applies.
pub async fn sign_in(
    State(app): State<Arc<App>>,
    Client(failures, client): Client,
    parts: axum::http::request::Parts,
    body: axum::body::Body,
) -> Result<Response, HttpError> {
    // Refused before anything is counted: a cross-site request is no
    // failure of the address it comes from.
    crate::auth::same_site(&parts)?;
    let json = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Err(ApiError::UnsupportedMediaType.into());
    }
    let headers = &parts.headers;
    let body = crate::read_body(body, crate::SESSION_BODY_LIMIT).await?;
    let SignIn { token: secret } = serde_json::from_slice(&body).map_err(|e| {
        if e.classify() == serde_json::error::Category::Data {
            invalid("token", "is required: the access token you were given")
        } else {
            ApiError::InvalidJson(e.to_string())
        }
    })?;
    let secret = secret.as_str();
    let record = check_secret(&app, &failures, client, secret)?;
    // Each sign-in rewrites (and fsyncs) tokens.json: bounded by the
    // token's rate limit, as every other request with it is.
    crate::auth::rate_limit(&app, &record.id)?;
    let principal = record.principal(&app.config().alliances);
    // The cookie holds a session token of its own (12 hours, ended at
    // sign-out), never the token the user was given.
    let (session, secret) = app
        .tokens()
        .create_session(
            &record,
            app.clock().now(),
            Duration::seconds(i64::from(SESSION_SECONDS)),
        )
        .map_err(token_error)?;
    tracing::info!(token = %record.id, session = %session.id, "signed in");
    let secret = secret.as_str();
    let secure = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"));
    let cookie = format!(
        "{COOKIE}={secret}; Path=/; HttpOnly; SameSite=Strict; Max-Age={SESSION_SECONDS}{}",
        if secure { "; Secure" } else { "" }
    );
    let mut response = Json(describe(&principal)).into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(response)
}

/// `DELETE /v1/session`: ends the session server-side (its token stops
/// working at once, wherever it was copied to) and clears the cookie.
pub async fn sign_out(
    State(app): State<Arc<App>>,
    Client(failures, client): Client,
    parts: axum::http::request::Parts,
) -> Result<Response, HttpError> {
    if let Some(secret) = crate::auth::session_cookie(&parts) {
        crate::auth::same_site(&parts)?;
        // A cookie that no longer works is simply cleared.
        if let Ok(record) = check_secret(&app, &failures, client, &secret) {
            if app.tokens().end_session(&record.id).map_err(token_error)? {
                tracing::info!(session = %record.id, "signed out");
            }
        }
    }
    Ok(cleared_cookie())
}

fn cleared_cookie() -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("openptl_token=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    response
}

/// `GET /v1/session`: who the caller is.
pub async fn whoami(Auth(principal): Auth) -> Response {
    Json(describe(&principal)).into_response()
}

/// Drops every metric line labelled with a trust the caller does not cover.
pub fn scope_metrics(text: &str, principal: &Principal) -> String {
    if principal.trusts == TrustScope::All {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let hidden = line
            .split_once("trust=\"")
            .and_then(|(_, rest)| rest.split_once('"'))
            .is_some_and(|(trust, _)| !principal.trusts.covers(trust));
        if !hidden {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}
