//! Shared by the in-process API tests: the router of an app that accepts a
//! test admin token, sent on every request that does not set its own.
#![allow(dead_code)]

use std::sync::Arc;

use axum::Router;
use openptl_app::App;

/// The admin token the test app accepts; every request carries it unless it
/// sets its own `authorization`.
pub const TEST_TOKEN: &str = "openptl-test-admin-token-0001";

pub fn authorised(app: App) -> Router {
    app.tokens
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
    openptl_http::router(Arc::new(app)).layer(axum::middleware::map_request(
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
