//! The one error table of the service: every error any way in (HTTP,
//! gRPC) can return, as a [`Problem`]: its kind, a stable code, a message a
//! person can act on and details, in one exhaustive match. HTTP maps the
//! kind to a status and gRPC to a status code; the bodies are the same
//! (`{ "error": { "code", "message", "details" } }`, SPEC 4.3). Nothing here
//! knows HTTP.

use openptl_rules::RuleError;
use serde_json::{json, Value};

use crate::AppError;

/// How a front end reports a [`Problem`]: a class of outcome, named for
/// what it means to the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The request could not be read (400).
    BadRequest,
    /// No valid credentials (401).
    Unauthenticated,
    /// The caller may not do this (403).
    Forbidden,
    /// Nothing there (404).
    NotFound,
    /// The address is there, not for this method (405).
    MethodNotAllowed,
    /// It conflicts with what is stored (409).
    Conflict,
    /// The body is too large (413).
    TooLarge,
    /// The body is of the wrong type (415).
    UnsupportedMediaType,
    /// Well formed, but a rule refuses it (422).
    Invalid,
    /// Too many requests, or too much expensive work waiting (429).
    TooManyRequests,
    /// The service cannot do it now: the log, a timeout (503).
    Unavailable,
    /// A fault of ours (500).
    Internal,
}

impl Kind {
    /// The HTTP status of this kind.
    pub fn http_status(self) -> u16 {
        match self {
            Kind::BadRequest => 400,
            Kind::Unauthenticated => 401,
            Kind::Forbidden => 403,
            Kind::NotFound => 404,
            Kind::MethodNotAllowed => 405,
            Kind::Conflict => 409,
            Kind::TooLarge => 413,
            Kind::UnsupportedMediaType => 415,
            Kind::Invalid => 422,
            Kind::TooManyRequests => 429,
            Kind::Unavailable => 503,
            Kind::Internal => 500,
        }
    }
}

/// What an error means to the caller, whatever the way in.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub kind: Kind,
    /// Stable: clients branch on it (SPEC 4.3).
    pub code: &'static str,
    pub message: String,
    pub details: Value,
    /// Seconds to wait before trying again, where that is the answer.
    pub retry_after: Option<u64>,
}

impl Problem {
    /// The error body of SPEC 4.3.
    pub fn body(&self) -> Value {
        json!({ "error": { "code": self.code, "message": self.message, "details": self.details } })
    }
}

/// Every error a way in can return: the application's own ([`AppError`])
/// and those of the ways in themselves (authentication, limits, bodies).
#[derive(Debug)]
pub enum ApiError {
    /// The body is not JSON at all.
    InvalidJson(String),
    App(AppError),
    /// No such route.
    NotFound,
    /// The route is there, not for this method.
    MethodNotAllowed,
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

fn rule_kind(e: &RuleError) -> Kind {
    match e {
        RuleError::PathwayExists
        | RuleError::PathwayClosed
        | RuleError::TreatmentAlreadyStarted { .. } => Kind::Conflict,
        RuleError::InvalidField { .. }
        | RuleError::InvalidNhsNumber { .. }
        | RuleError::InvalidOdsCode { .. }
        | RuleError::UnknownTumourSite { .. }
        | RuleError::UnknownEventType { .. }
        | RuleError::OccurredInFuture { .. }
        | RuleError::OccurredBeforeReferral { .. }
        | RuleError::PathwayNotStarted
        | RuleError::UpgradeNotAllowed { .. }
        | RuleError::UpgradeAfterStop { .. }
        | RuleError::ClosedBeforeEvent { .. }
        | RuleError::AlreadyUpgraded
        | RuleError::TreatmentWithoutDecision
        | RuleError::SubsequentBeforeFirstTreatment { .. }
        | RuleError::UnknownPlan { .. }
        | RuleError::UnknownEvent { .. }
        | RuleError::CannotVoidReferral
        | RuleError::CorrectionBreaksPathway { .. } => Kind::Invalid,
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

    /// What this error means to the caller, for every front end: its kind,
    /// stable code, message, details and when to try again.
    pub fn problem(&self) -> Problem {
        let (kind, code, message, details) = self.parts();
        Problem {
            kind,
            code,
            message,
            details,
            retry_after: self.retry_after(),
        }
    }

    /// Seconds to wait before trying again, for a refusal that says so.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            ApiError::RateLimited { retry_after, .. }
            | ApiError::App(AppError::Busy { retry_after }) => Some(*retry_after),
            _ => None,
        }
    }

    /// (kind, code, message, details) for every error: the one table.
    pub fn parts(&self) -> (Kind, &'static str, String, Value) {
        match self {
            ApiError::InvalidJson(reason) => (
                Kind::BadRequest,
                "invalid_json",
                format!("The request body is not valid JSON ({reason}). Send one event object, or {{\"events\": [...]}}."),
                json!({}),
            ),
            ApiError::NotFound => {
                (Kind::NotFound, "not_found", "There is nothing at this address.".into(), json!({}))
            }
            ApiError::MethodNotAllowed => (
                Kind::MethodNotAllowed,
                "method_not_allowed",
                "This address does not take this method: see /v1/openapi.json for what each address takes.".into(),
                json!({}),
            ),
            ApiError::Unauthenticated => (
                Kind::Unauthenticated,
                "unauthenticated",
                "Sign in: send a valid, unexpired access token as `Authorization: Bearer <token>`.".into(),
                json!({}),
            ),
            ApiError::Forbidden(reason) => (
                Kind::Forbidden,
                "forbidden",
                format!("Your access does not allow this ({reason}). Ask your OpenPTL administrator if you need it."),
                json!({}),
            ),
            ApiError::RateLimited { retry_after, why: Limited::Token } => (
                Kind::TooManyRequests,
                "rate_limited",
                format!("Too many requests with this token; try again in {retry_after} s."),
                json!({ "retry_after": retry_after }),
            ),
            ApiError::RateLimited { retry_after, why: Limited::FailedSignIns } => (
                Kind::TooManyRequests,
                "rate_limited",
                format!("Too many failed sign-ins or invalid tokens from your address; try again in {retry_after} s with a valid token."),
                json!({ "retry_after": retry_after }),
            ),
            ApiError::RateLimited { retry_after, why: Limited::Busy } => (
                Kind::TooManyRequests,
                "busy",
                format!("The service is busy with other expensive work (views of a past date with `as_of` or `known_at`, or a backup); try again in {retry_after} s. Today's views are not affected."),
                json!({ "retry_after": retry_after }),
            ),
            ApiError::TooLarge { limit } => (
                Kind::TooLarge,
                "payload_too_large",
                format!("The request body is larger than this endpoint accepts ({limit} bytes); send less (at most 1,000 events per batch)."),
                json!({ "limit": limit }),
            ),
            ApiError::CrossSite => (
                Kind::Forbidden,
                "cross_site_request",
                "This request came from another web site, so it was refused: sign in and make changes from the OpenPTL dashboard itself, or send an `Authorization: Bearer` token.".into(),
                json!({}),
            ),
            ApiError::UnsupportedMediaType => (
                Kind::UnsupportedMediaType,
                "unsupported_media_type",
                "Send this request's body as JSON, with `Content-Type: application/json`.".into(),
                json!({}),
            ),
            ApiError::Timeout => (
                Kind::Unavailable,
                "timeout",
                "The request took too long and was stopped. If it was an append, post it again with the same event_id: it is recorded at most once.".into(),
                json!({}),
            ),
            ApiError::App(e) => match e {
                AppError::Rejected { index, error } => {
                    let (message, details) = at_index(*index, error.to_string(), error.details());
                    (rule_kind(error), error.code(), message, details)
                }
                AppError::VersionConflict { index, expected, current } => {
                    let (message, details) = at_index(
                        *index,
                        format!(
                            "The pathway has {current} events, not the {expected} this event expected: someone else updated it. Reload the pathway and try again."
                        ),
                        json!({ "current_version": current, "expected_version": expected }),
                    );
                    (Kind::Conflict, "version_conflict", message, details)
                }
                AppError::DuplicateEventId { index } => {
                    let (message, details) = at_index(
                        *index,
                        "This event_id was already used for a different event. Use a new event_id for a new event.".into(),
                        json!({}),
                    );
                    (Kind::Conflict, "duplicate_event_id", message, details)
                }
                AppError::PathwayNotFound => (
                    Kind::NotFound,
                    "pathway_not_found",
                    "No pathway with this id (or none referred by the date asked for).".into(),
                    json!({}),
                ),
                AppError::InvalidQuery { field, problem } => (
                    Kind::Invalid,
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
                    (Kind::Forbidden, "forbidden", message, details)
                }
                AppError::Busy { retry_after } => ApiError::RateLimited {
                    retry_after: *retry_after,
                    why: Limited::Busy,
                }
                .parts(),
                AppError::Storage(_) => (
                    Kind::Unavailable,
                    "unavailable",
                    "The event log is not available; nothing was recorded. Try again shortly.".into(),
                    json!({}),
                ),
                AppError::TokenStore(_) => (
                    Kind::Unavailable,
                    "token_store_unavailable",
                    "The token store could not be written, so nothing changed; the service's log says why (a full disk, or tokens.json owned by another user). Try again once IT has fixed it.".into(),
                    json!({}),
                ),
                AppError::AuditUnavailable(_) => (
                    Kind::Unavailable,
                    "audit_unavailable",
                    "Patient data is not shown while the access log cannot record who reads it (the service's disk may be full); nothing was shown. Try again shortly, or ask IT to free space.".into(),
                    json!({}),
                ),
                AppError::BackupFailed(why) => (
                    Kind::Unavailable,
                    "backup_failed",
                    format!(
                        "The backup did not finish; the log is as it was ({why})."
                    ),
                    json!({}),
                ),
                AppError::NotConfigured(why) => (
                    Kind::Conflict,
                    "not_configured",
                    format!("{why}."),
                    json!({}),
                ),
                AppError::OutcomeUnknown(_) => (
                    Kind::Unavailable,
                    "unavailable",
                    "The event log failed while recording this and cannot tell whether it was kept. Send the same events again with the same event ids: each is recorded once.".into(),
                    json!({ "outcome": "unknown" }),
                ),
                AppError::Internal(_) => (
                    Kind::Internal,
                    "internal",
                    "Something went wrong on our side; it has been logged.".into(),
                    json!({}),
                ),
            },
        }
    }
}
