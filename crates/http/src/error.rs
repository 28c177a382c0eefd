//! The one error→HTTP table: every error the API can return, its status and
//! its stable code, in one exhaustive match. Bodies always have the shape
//! `{ "error": { "code", "message", "details" } }` (SPEC 4.3).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use openptl_app::AppError;
use openptl_rules::RuleError;
use serde_json::{json, Value};

#[derive(Debug)]
pub enum ApiError {
    /// The body is not JSON at all.
    InvalidJson(String),
    App(AppError),
    /// No such route.
    NotFound,
    /// No valid token (401).
    Unauthenticated,
    /// The role may not use this endpoint (403).
    Forbidden(String),
    /// Too many requests (429), for the reason `why`; try again in
    /// `retry_after` seconds.
    RateLimited {
        retry_after: u64,
        why: Limited,
    },
    /// The body is larger than this endpoint takes (413).
    TooLarge {
        limit: usize,
    },
    /// A cookie-authenticated write from another site, or a sign-in from
    /// another site (403).
    CrossSite,
    /// The body is not of the type this endpoint takes (415): sign-in
    /// takes `application/json` only.
    UnsupportedMediaType,
    /// The request took longer than the service allows (503).
    Timeout,
}

/// Why a request was refused with 429.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limited {
    /// The token's own request rate (`--rate-limit`): `rate_limited`.
    Token,
    /// Too many failed sign-ins or invalid tokens from the client's address:
    /// `rate_limited`.
    FailedSignIns,
    /// Too many past-date views (`as_of`/`known_at`) waiting already: `busy`.
    Busy,
}

impl From<AppError> for ApiError {
    fn from(e: AppError) -> Self {
        match e {
            AppError::Busy { retry_after } => ApiError::RateLimited {
                retry_after,
                why: Limited::Busy,
            },
            e => ApiError::App(e),
        }
    }
}

fn rule_status(e: &RuleError) -> StatusCode {
    match e {
        RuleError::PathwayExists
        | RuleError::PathwayClosed
        | RuleError::TreatmentAlreadyStarted { .. } => StatusCode::CONFLICT,
        RuleError::InvalidField { .. }
        | RuleError::InvalidNhsNumber { .. }
        | RuleError::InvalidOdsCode { .. }
        | RuleError::UnknownTumourSite { .. }
        | RuleError::UnknownEventType { .. }
        | RuleError::OccurredInFuture { .. }
        | RuleError::OccurredBeforeReferral { .. }
        | RuleError::PathwayNotStarted
        | RuleError::UpgradeNotAllowed { .. }
        | RuleError::AlreadyUpgraded
        | RuleError::TreatmentWithoutDecision
        | RuleError::SubsequentBeforeFirstTreatment { .. }
        | RuleError::UnknownPlan { .. }
        | RuleError::UnknownEvent { .. }
        | RuleError::CannotVoidReferral
        | RuleError::CorrectionBreaksPathway { .. } => StatusCode::UNPROCESSABLE_ENTITY,
    }
}

/// Adds the failing batch index to the message and details.
fn at_index(index: Option<usize>, message: String, mut details: Value) -> (String, Value) {
    match index {
        Some(i) => {
            details["index"] = json!(i);
            (
                format!("Event {i} of the batch: {message} Nothing in the batch was recorded."),
                details,
            )
        }
        None => (message, details),
    }
}

impl ApiError {
    /// The stable code of this error.
    pub fn code(&self) -> &'static str {
        self.parts().1
    }

    /// (HTTP status, stable code, body) for every error: what other ways in
    /// (gRPC) report, so both APIs say the same thing.
    pub fn describe(&self) -> (StatusCode, &'static str, Value) {
        let (status, code, message, details) = self.parts();
        (
            status,
            code,
            json!({ "error": { "code": code, "message": message, "details": details } }),
        )
    }

    /// (status, code, message, details) for every error.
    fn parts(&self) -> (StatusCode, &'static str, String, Value) {
        match self {
            ApiError::InvalidJson(reason) => (
                StatusCode::BAD_REQUEST,
                "invalid_json",
                format!("The request body is not valid JSON ({reason}). Send one event object, or {{\"events\": [...]}}."),
                json!({}),
            ),
            ApiError::NotFound => {
                (StatusCode::NOT_FOUND, "not_found", "There is nothing at this address.".into(), json!({}))
            }
            ApiError::Unauthenticated => (
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "Sign in: send a valid, unexpired access token as `Authorization: Bearer <token>`.".into(),
                json!({}),
            ),
            ApiError::Forbidden(reason) => (
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("Your access does not allow this ({reason}). Ask your OpenPTL administrator if you need it."),
                json!({}),
            ),
            ApiError::RateLimited { retry_after, why: Limited::Token } => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("Too many requests with this token; try again in {retry_after} s."),
                json!({ "retry_after": retry_after }),
            ),
            ApiError::RateLimited { retry_after, why: Limited::FailedSignIns } => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("Too many failed sign-ins or invalid tokens from your address; try again in {retry_after} s with a valid token."),
                json!({ "retry_after": retry_after }),
            ),
            ApiError::RateLimited { retry_after, why: Limited::Busy } => (
                StatusCode::TOO_MANY_REQUESTS,
                "busy",
                format!("The service is busy with other expensive work (views of a past date with `as_of` or `known_at`, or a backup); try again in {retry_after} s. Today's views are not affected."),
                json!({ "retry_after": retry_after }),
            ),
            ApiError::TooLarge { limit } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("The request body is larger than this endpoint accepts ({limit} bytes); send less (at most 1,000 events per batch)."),
                json!({ "limit": limit }),
            ),
            ApiError::CrossSite => (
                StatusCode::FORBIDDEN,
                "cross_site_request",
                "This request came from another web site, so it was refused: sign in and make changes from the OpenPTL dashboard itself, or send an `Authorization: Bearer` token.".into(),
                json!({}),
            ),
            ApiError::UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "Send this request's body as JSON, with `Content-Type: application/json`.".into(),
                json!({}),
            ),
            ApiError::Timeout => (
                StatusCode::SERVICE_UNAVAILABLE,
                "timeout",
                "The request took too long and was stopped. If it was an append, post it again with the same event_id: it is recorded at most once.".into(),
                json!({}),
            ),
            ApiError::App(e) => match e {
                AppError::Rejected { index, error } => {
                    let (message, details) = at_index(*index, error.to_string(), error.details());
                    (rule_status(error), error.code(), message, details)
                }
                AppError::VersionConflict { index, expected, current } => {
                    let (message, details) = at_index(
                        *index,
                        format!(
                            "The pathway has {current} events, not the {expected} this event expected: someone else updated it. Reload the pathway and try again."
                        ),
                        json!({ "current_version": current, "expected_version": expected }),
                    );
                    (StatusCode::CONFLICT, "version_conflict", message, details)
                }
                AppError::DuplicateEventId { index } => {
                    let (message, details) = at_index(
                        *index,
                        "This event_id was already used for a different event. Use a new event_id for a new event.".into(),
                        json!({}),
                    );
                    (StatusCode::CONFLICT, "duplicate_event_id", message, details)
                }
                AppError::PathwayNotFound => (
                    StatusCode::NOT_FOUND,
                    "pathway_not_found",
                    "No pathway with this id (or none referred by the date asked for).".into(),
                    json!({}),
                ),
                AppError::InvalidQuery { field, problem } => (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_field",
                    format!("`{field}` {problem}."),
                    json!({ "field": field }),
                ),
                AppError::Forbidden { index, reason } => {
                    let (message, details) = at_index(
                        *index,
                        format!("Your access does not allow this: {reason}."),
                        json!({}),
                    );
                    (StatusCode::FORBIDDEN, "forbidden", message, details)
                }
                AppError::Busy { retry_after } => ApiError::RateLimited {
                    retry_after: *retry_after,
                    why: Limited::Busy,
                }
                .parts(),
                AppError::Storage(_) => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "The event log is not available; nothing was recorded. Try again shortly.".into(),
                    json!({}),
                ),
                AppError::NotConfigured(why) => (
                    StatusCode::CONFLICT,
                    "not_configured",
                    format!("{why}."),
                    json!({}),
                ),
                AppError::OutcomeUnknown(_) => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "The event log failed while recording this and cannot tell whether it was kept. Send the same events again with the same event ids: each is recorded once.".into(),
                    json!({ "outcome": "unknown" }),
                ),
                AppError::Internal(_) => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "Something went wrong on our side; it has been logged.".into(),
                    json!({}),
                ),
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message, details) = self.parts();
        if status.is_server_error() {
            // The cause goes to the log (it holds no personal data); the body stays opaque.
            tracing::error!(code, cause = ?self, "request failed");
        }
        let body = json!({ "error": { "code": code, "message": message, "details": details } });
        let mut response = (status, Json(body)).into_response();
        match &self {
            ApiError::Unauthenticated => {
                response.headers_mut().insert(
                    axum::http::header::WWW_AUTHENTICATE,
                    axum::http::HeaderValue::from_static("Bearer realm=\"openptl\""),
                );
            }
            ApiError::RateLimited { retry_after, .. }
            | ApiError::App(AppError::Busy { retry_after }) => {
                if let Ok(v) = axum::http::HeaderValue::from_str(&retry_after.to_string()) {
                    response
                        .headers_mut()
                        .insert(axum::http::header::RETRY_AFTER, v);
                }
            }
            _ => {}
        }
        response
    }
}
