//! The HTTP API of SPEC 4 (axum). Handlers translate between HTTP and the
//! application layer; they hold no rules. `router(app)` is the whole API, so
//! tests drive it in-process and the binary serves it.

mod admin;
pub mod auth;
mod clocks;
mod csv;
mod dashboard;
mod error;
mod fit;
mod forecast;
mod json_rows;
mod milestone_list;
pub mod openapi;
pub mod serve;
mod views;

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use openptl_app::{App, AppError, PathwayQuery, MAX_BATCH};
use serde_json::{json, Value};

pub use auth::FailedAuth;
pub use clocks::list_json;
pub use error::{ApiError, HttpError, Limited};
pub use fit::fit_csv;
pub use serve::{serve, ServeLimits};
pub use views::{cwt_csv, cwt_json};

/// Largest request body accepted (a full batch of large events fits easily).
const BODY_LIMIT: usize = 16 * 1024 * 1024;

/// Largest body of the one unauthenticated route that takes a body
/// (`POST /v1/session`, `{"token": "…"}`): a token is under 100 bytes.
pub const SESSION_BODY_LIMIT: usize = 16 * 1024;

/// Reads a request body of at most `limit` bytes (`413 payload_too_large`
/// beyond it, without buffering the rest).
pub(crate) async fn read_body(body: axum::body::Body, limit: usize) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        if e.into_inner().is::<http_body_util::LengthLimitError>() {
            ApiError::TooLarge { limit }
        } else {
            ApiError::InvalidJson("the body could not be read".into())
        }
    })
}

use auth::Auth;

/// The one parameter of a route's path (`{pathway_id}`, `{standard}`,
/// `{id}`), as text: one that is not UTF-8 once percent-decoded is a JSON
/// `422 invalid_field` naming it, not axum's plain-text 400.
pub(crate) struct PathText(pub String);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for PathText {
    type Rejection = HttpError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        use axum::extract::path::ErrorKind;
        use axum::extract::rejection::PathRejection;
        match Path::<String>::from_request_parts(parts, state).await {
            Ok(Path(text)) => Ok(PathText(text)),
            Err(rejection) => {
                let field = match &rejection {
                    PathRejection::FailedToDeserializePathParams(e) => match e.kind() {
                        ErrorKind::InvalidUtf8InPathParam { key } => key.clone(),
                        _ => "path".to_string(),
                    },
                    _ => "path".to_string(),
                };
                Err(invalid(&field, "must be text (UTF-8 once percent-decoded)").into())
            }
        }
    }
}

/// The whole API, with the default limit on failed authentications per
/// client address.
pub fn router(app: Arc<App>) -> Router {
    router_with(app, Arc::new(FailedAuth::default()))
}

/// The whole API, counting failed sign-ins and bearer tokens in `failures`.
pub fn router_with(app: Arc<App>, failures: Arc<FailedAuth>) -> Router {
    Router::new()
        .route("/v1/events", post(post_events))
        .route("/v1/pathways/{pathway_id}", get(get_pathway))
        .route("/v1/pathways/{pathway_id}/events", get(get_pathway_events))
        .route("/v1/ptl", get(views::get_ptl))
        .route("/v1/meta", get(dashboard::meta))
        .route("/", get(dashboard::page))
        .route("/pathways/{pathway_id}", get(dashboard::page))
        .route("/standards", get(dashboard::page))
        .route("/standards/clocks", get(dashboard::page))
        .route("/milestones", get(dashboard::page))
        .route("/milestones/pathways", get(dashboard::page))
        .route("/assets/app.js", get(dashboard::script))
        .route("/assets/app.css", get(dashboard::stylesheet))
        .route("/v1/standards/{standard}", get(views::get_standards))
        .route(
            "/v1/standards/{standard}/clocks",
            get(clocks::get_standard_clocks),
        )
        .route("/v1/milestones", get(views::get_milestones))
        .route(
            "/v1/milestones/pathways",
            get(milestone_list::get_milestone_pathways),
        )
        .route("/v1/fit", get(fit::get_fit))
        .route("/v1/forecast/{standard}", get(forecast::get_forecast))
        .route("/v1/breach-risks", get(forecast::get_breach_risks))
        .route("/fit", get(dashboard::page))
        .route("/assets/fit.js", get(dashboard::fit_script))
        .route("/risks", get(dashboard::page))
        .route("/assets/forecast.js", get(dashboard::forecast_script))
        .route("/assets/clocks.js", get(dashboard::clocks_script))
        .route("/returns", get(dashboard::page))
        .route("/assets/returns.js", get(dashboard::returns_script))
        .route("/v1/returns/canptl", get(views::get_canptl))
        .route("/v1/returns/cwt", get(views::get_cwt))
        .route(
            "/v1/tokens",
            post(admin::create_token).get(admin::list_tokens),
        )
        .route(
            "/v1/tokens/{id}",
            axum::routing::delete(admin::revoke_token),
        )
        .route("/v1/audit", get(admin::audit))
        .route("/v1/backup", post(admin::backup))
        .route(
            "/v1/session",
            post(admin::sign_in)
                .delete(admin::sign_out)
                .get(admin::whoami),
        )
        .route(
            "/healthz",
            get(|| async { Json(json!({ "status": "ok" })) }),
        )
        .route("/readyz", get(readyz))
        .route("/metrics", get(get_metrics))
        .route(
            "/v1/openapi.json",
            get(|| async { Json(openapi::document()) }),
        )
        .route_layer(axum::middleware::from_fn_with_state(app.clone(), observe))
        .fallback(|| async { HttpError(ApiError::NotFound) })
        .method_not_allowed_fallback(|| async { HttpError(ApiError::MethodNotAllowed) })
        .layer(axum::middleware::from_fn(time_limit))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::Extension(failures))
        .with_state(app)
}

/// `GET /readyz`: 200 when the log is open and the projection has caught up
/// with it, 503 while it is still folding (start-up) or stuck, while the log
/// cannot take appends (a full disk, PostgreSQL unreachable; it recovers by
/// itself), or once the log found damage in stored history (the service
/// then stops). Not ready for the log's reasons, it says why (`reason`: a
/// full disk that heals by itself, or an index write that needs a restart),
/// so an operator need not read the service's log to know what to do.
async fn readyz(State(app): State<Arc<App>>) -> Response {
    let ready = app.ready();
    let (status, reason) = if ready {
        ("ready", None)
    } else if let Some(damage) = app.log().damage() {
        ("log_damaged", Some(damage.to_string()))
    } else if let Some(why) = app.log().unavailable() {
        ("log_unavailable", Some(why))
    } else {
        ("catching_up", None)
    };
    let mut body = json!({
        "status": status,
        "log_position": app.log().head(),
        "projected_position": app.projection().position(),
    });
    if let Some(reason) = reason {
        body["reason"] = json!(reason);
    }
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// The longest any request may take. Appends finish well within it; a read
/// waiting for `min_position` gives up after 5 s.
const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Stops a request that runs longer than [`REQUEST_TIMEOUT`] (503 `timeout`).
async fn time_limit(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(request)).await {
        Ok(response) => response,
        Err(_) => HttpError(ApiError::Timeout).into_response(),
    }
}

/// `GET /metrics`: Prometheus text format (SPEC 6).
async fn get_metrics(State(app): State<Arc<App>>, Auth(principal): Auth) -> Response {
    let text = match app.metrics_text().await {
        Ok(text) => text,
        Err(e) => return HttpError(e.into()).into_response(),
    };
    let text = admin::scope_metrics(&text, &principal);
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// Counts, times and logs every request by its route template (never the
/// raw path or query, which hold pathway ids) and status, under a request id
/// (the caller's `x-request-id` if it is a plain token, else a new one) that
/// is echoed in the response.
async fn observe(
    State(app): State<Arc<App>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    use tracing::Instrument;
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_string);
    let method = request.method().clone();
    let span = tracing::info_span!("request", id = %request_id, method = %method, route = %route);
    let started = std::time::Instant::now();
    let mut response = next.run(request).instrument(span.clone()).await;
    let elapsed = started.elapsed();
    let m = &app.metrics();
    m.http_duration
        .with_label_values(&[&route])
        .observe(elapsed.as_secs_f64());
    m.http_requests
        .with_label_values(&[&route, response.status().as_str()])
        .inc();
    // One line per request at debug level (OPENPTL_LOG=debug); failures are
    // logged at error level by the error table, under the same request id.
    span.in_scope(|| {
        tracing::debug!(
            status = response.status().as_u16(),
            millis = elapsed.as_secs_f64() * 1e3,
            "answered"
        )
    });
    if let Ok(value) = axum::http::HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

fn invalid(field: &str, problem: impl Into<String>) -> ApiError {
    ApiError::App(AppError::InvalidQuery {
        field: field.into(),
        problem: problem.into(),
    })
}

/// `POST /v1/events`: one envelope, or `{ "events": [...] }` (SPEC 4.1).
async fn post_events(
    State(app): State<Arc<App>>,
    auth: Result<Auth, HttpError>,
    body: axum::body::Body,
) -> Result<Response, HttpError> {
    // The body is read only once the caller is known.
    let result = match auth {
        Ok(Auth(principal)) => match read_body(body, BODY_LIMIT).await {
            Ok(body) => append_events(&app, &principal, body).await,
            Err(e) => Err(e.into()),
        },
        Err(e) => Err(e),
    };
    if let Err(e) = &result {
        app.metrics()
            .append_errors
            .with_label_values(&[e.0.code()])
            .inc();
    }
    result
}

async fn append_events(
    app: &Arc<App>,
    principal: &openptl_app::access::Principal,
    body: Bytes,
) -> Result<Response, HttpError> {
    if json_values_over(&body, MAX_JSON_VALUES) {
        return Err(invalid(
            "body",
            format!(
                "holds more than {MAX_JSON_VALUES} JSON values: send at most {MAX_BATCH} events \
                 per request, each with only the fields of its type"
            ),
        )
        .into());
    }
    let value: Value =
        serde_json::from_slice(&body).map_err(|e| ApiError::InvalidJson(e.to_string()))?;
    let (envelopes, batch) = match value {
        Value::Object(mut map) if map.contains_key("events") && !map.contains_key("type") => {
            if map.len() > 1 {
                let extra = map
                    .keys()
                    .find(|k| *k != "events")
                    .cloned()
                    .unwrap_or_default();
                return Err(invalid(&extra, "is not expected beside `events`").into());
            }
            match map.remove("events") {
                Some(Value::Array(events)) if events.is_empty() => {
                    return Err(invalid("events", "must hold at least one event").into())
                }
                Some(Value::Array(events)) if events.len() > MAX_BATCH => {
                    return Err(invalid(
                        "events",
                        format!(
                            "holds {} events; send at most {MAX_BATCH} per request",
                            events.len()
                        ),
                    )
                    .into())
                }
                Some(Value::Array(events)) => (events, true),
                _ => return Err(invalid("events", "must be a list of events").into()),
            }
        }
        single @ Value::Object(_) => (vec![single], false),
        _ => return Err(invalid("body", "must be an event object or {\"events\": [...]}").into()),
    };
    let outcome = app.append(envelopes, principal, batch).await?;
    let status = if outcome.all_replayed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((
        status,
        Json(json!({ "appended": outcome.appended })).into_response(),
    )
        .into_response())
}

/// The most JSON values (objects, arrays, keys and scalars) an append's
/// body may hold: a full batch of the largest events holds some 50 each.
/// Parsed, each costs tens of bytes however short its text, so a body of
/// `[0,0,0,…]` would take some 30 times its size in memory before its
/// events could be counted (an unauthenticated body is never read).
const MAX_JSON_VALUES: usize = 200 * MAX_BATCH;

/// Whether the JSON text `body` holds more than `max` values, counted
/// without parsing it: every `[`, `{`, `,` and `:` outside a string
/// starts one (the first value of each container and of the text aside,
/// which only makes the count lower). Whether the text is valid JSON at
/// all is the parser's to say.
fn json_values_over(body: &[u8], max: usize) -> bool {
    let mut count = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &byte in body {
        if in_string {
            match (escaped, byte) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
        } else {
            match byte {
                b'"' => in_string = true,
                b'[' | b'{' | b',' | b':' => {
                    count += 1;
                    if count > max {
                        return true;
                    }
                }
                _ => {}
            }
        }
    }
    false
}

fn pathway_query(params: &HashMap<String, String>) -> Result<PathwayQuery, ApiError> {
    let as_of = params
        .get("as_of")
        .map(|v| {
            openptl_rules::date::parse(v)
                .ok_or_else(|| invalid("as_of", "must be a date written YYYY-MM-DD"))
        })
        .transpose()?;
    let known_at = params
        .get("known_at")
        .map(|v| {
            chrono::DateTime::parse_from_rfc3339(v)
                .map(|t| t.with_timezone(&chrono::Utc))
                .map_err(|_| {
                    invalid(
                        "known_at",
                        "must be an RFC 3339 timestamp such as 2025-03-03T12:00:00Z",
                    )
                })
        })
        .transpose()?;
    Ok(PathwayQuery {
        as_of,
        known_at,
        min_position: min_position(params)?,
    })
}

fn min_position(params: &HashMap<String, String>) -> Result<Option<u64>, ApiError> {
    params
        .get("min_position")
        .map(|v| {
            v.parse::<u64>()
                .map_err(|_| invalid("min_position", "must be a whole number"))
        })
        .transpose()
}

/// `GET /v1/pathways/{id}` (SPEC 4.2).
async fn get_pathway(
    State(app): State<Arc<App>>,
    Auth(principal): Auth,
    PathText(pathway_id): PathText,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, HttpError> {
    let query = pathway_query(&params)?;
    let view = app.pathway(&pathway_id, &query, &principal).await?;
    Ok(Json(view).into_response())
}

/// `GET /v1/pathways/{id}/events`: the stored history with metadata.
async fn get_pathway_events(
    State(app): State<Arc<App>>,
    Auth(principal): Auth,
    PathText(pathway_id): PathText,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, HttpError> {
    let events = app
        .pathway_events(&pathway_id, min_position(&params)?, &principal)
        .await?;
    Ok(Json(json!({ "pathway_id": pathway_id, "events": events })).into_response())
}

#[cfg(test)]
mod tests {
    use super::json_values_over;

    #[test]
    fn json_values_are_counted_outside_strings_only() {
        assert!(!json_values_over(br#"{"a":[1,2,3]}"#, 5));
        assert!(json_values_over(br#"{"a":[1,2,3]}"#, 4));
        // Commas, colons and brackets in a string, an escaped quote and an
        // escaped backslash before the closing quote are text.
        let text = br#"{"a":"x,y:[{\"z,\\","b":1}"#;
        assert!(!json_values_over(text, 4));
        assert!(json_values_over(text, 3));
    }
}
