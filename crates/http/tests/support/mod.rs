//! Shared by the in-process API tests (one module, `mod support;` in each
//! test file): the app at a fixed moment, tokens, the router of an app that
//! accepts a test admin token (sent on every request that does not set its
//! own), requests, and what the router answered.
#![allow(dead_code)]

pub mod alliance;

use std::sync::Arc;

use axum::Router;
use openptl_app::App;

/// The admin token the test app accepts; every request carries it unless it
/// sets its own `authorization`.
pub const TEST_TOKEN: &str = "openptl-test-admin-token-0001";

pub fn authorised(app: App) -> Router {
    authorised_shared(Arc::new(app))
}

/// As [`authorised`], keeping a handle on the app.
pub fn authorised_shared(app: Arc<App>) -> Router {
    app.tokens()
        .create_with_secret(
            openptl_app::tokens::NewToken {
                role: openptl_app::access::Role::Admin,
                trusts: Vec::new(),
                alliance: None,
                label: Some("test-admin".into()),
                expires_at: None,
            },
            chrono::Utc::now(),
            Some(TEST_TOKEN),
        )
        .unwrap();
    openptl_http::router(app).layer(axum::middleware::map_request(
        |mut request: axum::extract::Request| async move {
            if !request.headers().contains_key("authorization") {
                request.headers_mut().insert(
                    "authorization",
                    format!("Bearer {TEST_TOKEN}").parse().unwrap(),
                );
            }
            request
        },
    ))
}

/// The app every in-process test builds: the rules' defaults, `log`, and a
/// clock fixed at `now` (RFC 3339).
pub fn app_at(now: &str, log: Arc<dyn openptl_log::EventLog>) -> App {
    let now = now.parse().expect("an RFC 3339 time");
    App::new(
        log,
        openptl_rules::RulesConfig::defaults(),
        Arc::new(openptl_app::FixedClock(now)),
    )
}

/// A token for `role` over `trusts` (or an alliance), valid until 2030.
pub fn token(
    app: &App,
    role: openptl_app::access::Role,
    trusts: &[&str],
    alliance: Option<&str>,
    label: &str,
) -> String {
    let (_, secret) = app
        .tokens()
        .create(
            openptl_app::tokens::NewToken {
                role,
                trusts: trusts.iter().map(|t| t.to_string()).collect(),
                alliance: alliance.map(str::to_string),
                label: Some(label.into()),
                expires_at: Some("2030-01-01T00:00:00Z".parse().unwrap()),
            },
            app.clock().now(),
        )
        .unwrap();
    secret
}

/// What the router answered.
pub struct Reply {
    pub status: axum::http::StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    /// The body as JSON (`Null` when empty); panics if it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        if self.body.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(&self.body).expect("the body is JSON")
        }
    }

    /// The body as JSON, or as a JSON string when it is not JSON (for
    /// answers a test only inspects when they are errors).
    pub fn json_or_text(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|_| {
            serde_json::Value::String(String::from_utf8_lossy(&self.body).into())
        })
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("the body is UTF-8")
    }

    /// The `content-type` header, or "".
    pub fn content_type(&self) -> String {
        self.headers
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    }
}

/// A request with an optional bearer token and JSON body.
pub fn request(
    method: &str,
    uri: &str,
    bearer: Option<&str>,
    body: Option<&serde_json::Value>,
) -> axum::http::Request<axum::body::Body> {
    let mut r = axum::http::Request::builder().method(method).uri(uri);
    if let Some(t) = bearer {
        r = r.header("authorization", format!("Bearer {t}"));
    }
    match body {
        Some(b) => r
            .header("content-type", "application/json")
            .body(axum::body::Body::from(b.to_string())),
        None => r.body(axum::body::Body::empty()),
    }
    .unwrap()
}

/// One event of a `POST /v1/events` body.
pub fn event(
    pathway: &str,
    event_type: &str,
    on: &str,
    data: serde_json::Value,
) -> serde_json::Value {
    serde_json::json!({ "pathway_id": pathway, "type": event_type, "occurred_on": on, "data": data })
}

/// The lower GI (or any) pathway's diagnosis: cancer ruled out.
pub fn ruled_out(pathway: &str, on: &str) -> serde_json::Value {
    event(
        pathway,
        "diagnosis_communicated",
        on,
        serde_json::json!({ "outcome": "cancer_ruled_out" }),
    )
}

/// Appends `events` as one batch (with `bearer`, else the test admin's
/// token), which must be stored.
pub async fn post_events(router: &Router, bearer: Option<&str>, events: Vec<serde_json::Value>) {
    let body = serde_json::json!({ "events": events });
    let reply = send(router, request("POST", "/v1/events", bearer, Some(&body))).await;
    assert_eq!(
        reply.status,
        axum::http::StatusCode::CREATED,
        "{}",
        reply.text()
    );
}

/// Sends one request through the router, in process.
pub async fn send(router: &Router, request: axum::http::Request<axum::body::Body>) -> Reply {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    Reply {
        status,
        headers,
        body,
    }
}

/// A `GET` with `bearer` (else the test admin's token): the status and the
/// body as JSON (or a JSON string when it is not JSON).
pub async fn get_json(
    router: &Router,
    bearer: Option<&str>,
    uri: &str,
) -> (axum::http::StatusCode, serde_json::Value) {
    let reply = send(router, request("GET", uri, bearer, None)).await;
    (reply.status, reply.json_or_text())
}
