//! How a request proves who it is. Today: a bearer token (the
//! `Authorization: Bearer …` header, or the `openptl_token` cookie the
//! dashboard's sign-in sets, which holds a session token; a write with the
//! cookie must come from the service's own pages: [`same_site`]). The extractor turns either into a
//! [`Principal`]; handlers never see how. OpenID Connect (NHS CIS2) would be
//! a second branch here that validates an ID token and maps its claims (role,
//! organisation codes) to the same `Principal` — no handler changes.
//!
//! Each token is rate limited (a token bucket per token id, sign-ins
//! included): a runaway script gets `429 rate_limited`, not the service.
//! Failed sign-ins and failed bearer tokens are limited per client address
//! ([`FailedAuth`]): a client presenting unknown secrets gets `429
//! rate_limited` with `Retry-After` once its allowance is spent. A valid
//! secret is never refused by that limit (the limit bounds what failures
//! cost; it must not let one client lock out everyone behind its address),
//! and a real token that has ended (expired, revoked) is not counted.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use openptl_app::access::Principal;
use openptl_app::App;

pub use openptl_app::auth::{
    authenticate, check_secret, rate_limit, ClientKey, FailedAuth, DEFAULT_FAILURE_BURST,
    DEFAULT_FAILURE_REFILL_SECONDS, FAILURE_TABLE_LIMIT,
};

use crate::{ApiError, HttpError};

/// The client key of a request: its peer address from `ConnectInfo` (or,
/// from a trusted proxy, the client it names in `X-Forwarded-For`), else
/// [`ClientKey::UNKNOWN`].
pub fn client_key(failures: &FailedAuth, parts: &Parts) -> ClientKey {
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let forwarded: Vec<&str> = parts
        .headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let forwarded = (!forwarded.is_empty()).then(|| forwarded.join(","));
    failures.client_key(peer, forwarded.as_deref())
}

/// The cookie the dashboard's sign-in sets.
pub const COOKIE: &str = "openptl_token";

/// The principal of an authenticated request.
pub struct Auth(pub Principal);

/// The secret a request presents, if any.
pub fn presented(parts: &Parts) -> Option<String> {
    presented_how(parts).map(|(secret, _)| secret)
}

/// The secret a request presents, and whether it came in the dashboard's
/// cookie (rather than an `Authorization` header).
pub fn presented_how(parts: &Parts) -> Option<(String, bool)> {
    if let Some(value) = parts.headers.get(axum::http::header::AUTHORIZATION) {
        let value = value.to_str().ok()?;
        let (scheme, token) = value.split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| (token.trim().to_string(), false));
    }
    session_cookie(parts).map(|secret| (secret, true))
}

/// The dashboard's session cookie, if the request carries one.
pub fn session_cookie(parts: &Parts) -> Option<String> {
    parts
        .headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_string())
        .filter(|value| !value.is_empty())
}

/// Whether a request that changes something may use the session cookie: a
/// browser says where it comes from (`Sec-Fetch-Site`, else `Origin`), and
/// only the service's own pages (or the user typing the address) may. A
/// client that sends neither header is no browser, so no cross-site forgery.
/// Reads (GET, HEAD, OPTIONS) are not checked: they change nothing, and
/// SameSite=Strict already keeps the cookie off other sites' requests.
pub fn same_site(parts: &Parts) -> Result<(), ApiError> {
    use axum::http::Method;
    if matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .map(|v| v.to_str().unwrap_or("").trim().to_ascii_lowercase())
    };
    if let Some(site) = header("sec-fetch-site") {
        return match site.as_str() {
            "same-origin" | "none" => Ok(()),
            _ => Err(ApiError::CrossSite),
        };
    }
    let Some(origin) = header("origin") else {
        return Ok(());
    };
    // `scheme://host[:port]` against the Host the request was sent to (the
    // reverse proxy's `X-Forwarded-Host` when there is one).
    let host = header("x-forwarded-host")
        .or_else(|| header("host"))
        .unwrap_or_default();
    let origin_host = origin
        .split_once("://")
        .map(|(_, rest)| rest.trim_end_matches('/'))
        .unwrap_or("");
    if !host.is_empty() && origin_host == host {
        Ok(())
    } else {
        Err(ApiError::CrossSite)
    }
}

/// The failure table of a request's router (a default one if the router
/// has none, which only happens in tests that build handlers by hand).
fn failures_of(parts: &Parts) -> Arc<FailedAuth> {
    parts
        .extensions
        .get::<Arc<FailedAuth>>()
        .cloned()
        .unwrap_or_default()
}

/// The failure table of a request's router and the client's address key
/// (for handlers that check a secret themselves: sign-in).
pub struct Client(pub Arc<FailedAuth>, pub ClientKey);

impl<S: Send + Sync> FromRequestParts<S> for Client {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let (failures, client) = client_of(parts);
        Ok(Client(failures, client))
    }
}

/// The failure table and client key of a request.
pub fn client_of(parts: &Parts) -> (Arc<FailedAuth>, ClientKey) {
    let failures = failures_of(parts);
    let client = client_key(&failures, parts);
    (failures, client)
}

impl FromRequestParts<Arc<App>> for Auth {
    type Rejection = HttpError;

    async fn from_request_parts(
        parts: &mut Parts,
        app: &Arc<App>,
    ) -> Result<Self, Self::Rejection> {
        let (failures, client) = client_of(parts);
        let presented = presented_how(parts);
        if presented.as_ref().is_some_and(|(_, cookie)| *cookie) {
            same_site(parts)?;
        }
        authenticate(
            app,
            &failures,
            client,
            presented.as_ref().map(|(s, _)| s.as_str()),
        )
        .map(Auth)
        .map_err(HttpError)
    }
}
