//! Errors as HTTP responses. The table of every error (kind, stable code,
//! message, details) is `openptl_app::problem`, shared with gRPC; here the
//! kind becomes a status, and `WWW-Authenticate` and `Retry-After` are set
//! where they belong. Bodies always have the shape
//! `{ "error": { "code", "message", "details" } }` (SPEC 4.3).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
pub use openptl_app::problem::{ApiError, Limited};

/// An [`ApiError`] as an HTTP response: what every handler returns.
#[derive(Debug)]
pub struct HttpError(pub ApiError);

impl<E: Into<ApiError>> From<E> for HttpError {
    fn from(e: E) -> Self {
        HttpError(e.into())
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let problem = self.0.problem();
        let status = StatusCode::from_u16(problem.kind.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status.is_server_error() {
            // The cause goes to the log (it holds no personal data); the body stays opaque.
            tracing::error!(code = problem.code, cause = ?self.0, "request failed");
        }
        let mut response = (status, Json(problem.body())).into_response();
        if matches!(self.0, ApiError::Unauthenticated) {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer realm=\"openptl\""),
            );
        }
        if let Some(retry_after) = problem.retry_after {
            if let Ok(v) = axum::http::HeaderValue::from_str(&retry_after.to_string()) {
                response
                    .headers_mut()
                    .insert(axum::http::header::RETRY_AFTER, v);
            }
        }
        response
    }
}
