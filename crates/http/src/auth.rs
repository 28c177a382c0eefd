//! How a request proves who it is. Today: a bearer token (the
//! `Authorization: Bearer …` header, or the `openptl_token` cookie the
//! dashboard's sign-in sets). The extractor turns either into a
//! [`Principal`]; handlers never see how. OpenID Connect (NHS CIS2) would be
//! a second branch here that validates an ID token and maps its claims (role,
//! organisation codes) to the same `Principal` — no handler changes.
//!
//! Each token is rate limited (a token bucket per token id): a runaway
//! script gets `429 rate_limited`, not the service.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use openptl_app::access::Principal;
use openptl_app::App;

use crate::ApiError;

/// The cookie the dashboard's sign-in sets.
pub const COOKIE: &str = "openptl_token";

/// The principal of an authenticated request.
pub struct Auth(pub Principal);

fn buckets() -> &'static Mutex<HashMap<String, (f64, Instant)>> {
    static BUCKETS: OnceLock<Mutex<HashMap<String, (f64, Instant)>>> = OnceLock::new();
    BUCKETS.get_or_init(Default::default)
}

/// Takes one request from the token's bucket (`rate` per second, bursts of
/// twice that); the seconds to wait if empty.
fn take(token_id: &str, rate: f64) -> Result<(), u64> {
    if rate <= 0.0 {
        return Ok(());
    }
    let burst = rate * 2.0;
    let mut buckets = buckets().lock().unwrap_or_else(|e| e.into_inner());
    let now = Instant::now();
    let (tokens, last) = buckets.entry(token_id.to_string()).or_insert((burst, now));
    *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * rate).min(burst);
    *last = now;
    if *tokens >= 1.0 {
        *tokens -= 1.0;
        Ok(())
    } else {
        Err(((1.0 - *tokens) / rate).ceil().max(1.0) as u64)
    }
}

/// The secret a request presents, if any.
pub fn presented(parts: &Parts) -> Option<String> {
    if let Some(value) = parts.headers.get(axum::http::header::AUTHORIZATION) {
        let value = value.to_str().ok()?;
        let (scheme, token) = value.split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim().to_string());
    }
    parts
        .headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_string())
}

/// Who presents `secret` (a bearer token), after its rate limit: the one
/// check every way in (HTTP, gRPC) makes.
pub fn authenticate(app: &App, secret: Option<&str>) -> Result<Principal, ApiError> {
    let secret = secret.ok_or(ApiError::Unauthenticated)?;
    let record = app
        .tokens
        .authenticate(secret, app.clock.now())
        .ok_or(ApiError::Unauthenticated)?;
    take(&record.id, app.rate_limit)
        .map_err(|retry_after| ApiError::RateLimited { retry_after })?;
    Ok(record.principal(&app.config.alliances))
}

impl FromRequestParts<Arc<App>> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        app: &Arc<App>,
    ) -> Result<Self, Self::Rejection> {
        authenticate(app, presented(parts).as_deref()).map(Auth)
    }
}
