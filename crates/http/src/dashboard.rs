//! The web dashboard (issue 6): one HTML shell, a stylesheet and a script,
//! all compiled into the binary (hospital networks have no internet, so no
//! CDN). The pages call the same JSON API as every other client.
//!
//! Every dashboard response carries security headers: a Content Security
//! Policy that allows only this origin's own files (no inline script, no
//! framing), `nosniff`, and no referrer.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use openptl_app::{App, PtlSort, Worklist};
use openptl_rules::{Rag, Route, TumourSite, WaitBand};
use serde_json::json;

use crate::auth::Auth;

const INDEX_HTML: &str = include_str!("../assets/index.html");
const APP_JS: &str = include_str!("../assets/app.js");
const APP_CSS: &str = include_str!("../assets/app.css");
/// The FIT page (issue 25), drawn with `app.js`'s helpers.
const FIT_JS: &str = include_str!("../assets/fit.js");
/// The breach forecasts (issue 24): the likely-to-breach page, the pathway
/// page's risks, the standards page's projections.
const FORECAST_JS: &str = include_str!("../assets/forecast.js");
/// The clocks behind a standards figure (decision 187).
const CLOCKS_JS: &str = include_str!("../assets/clocks.js");
/// The national returns: the weekly CANPTL return, the monthly CWT
/// submission to download (decision 199).
const RETURNS_JS: &str = include_str!("../assets/returns.js");

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

fn with_headers(body: &'static str, content_type: &'static str, cache: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// Every dashboard page: the shell; the script draws the page the URL names.
pub async fn page() -> Response {
    with_headers(INDEX_HTML, "text/html; charset=utf-8", "no-cache")
}

pub async fn script() -> Response {
    with_headers(
        APP_JS,
        "text/javascript; charset=utf-8",
        "public, max-age=300",
    )
}

pub async fn fit_script() -> Response {
    with_headers(
        FIT_JS,
        "text/javascript; charset=utf-8",
        "public, max-age=300",
    )
}

pub async fn forecast_script() -> Response {
    with_headers(
        FORECAST_JS,
        "text/javascript; charset=utf-8",
        "public, max-age=300",
    )
}

pub async fn returns_script() -> Response {
    with_headers(
        RETURNS_JS,
        "text/javascript; charset=utf-8",
        "public, max-age=300",
    )
}

pub async fn clocks_script() -> Response {
    with_headers(
        CLOCKS_JS,
        "text/javascript; charset=utf-8",
        "public, max-age=300",
    )
}

pub async fn stylesheet() -> Response {
    with_headers(APP_CSS, "text/css; charset=utf-8", "public, max-age=300")
}

/// `GET /v1/meta`: the vocabularies a client needs to build filters (trusts
/// of the configured alliances and of the PTL, codes, worklists, sorts).
pub async fn meta(State(app): State<Arc<App>>, Auth(principal): Auth) -> Response {
    let mut trusts: Vec<String> = app
        .config()
        .alliances
        .values()
        .flatten()
        .map(|t| t.as_str().to_string())
        .collect();
    trusts.extend(app.projection().ptl_trusts());
    trusts.retain(|t| principal.trusts.covers(t));
    trusts.sort();
    trusts.dedup();
    Json(json!({
        "actor": principal.actor,
        "role": principal.role.as_str(),
        "trusts": trusts,
        "alliances": app.config().alliances.keys().collect::<Vec<_>>(),
        "tumour_sites": TumourSite::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        "routes": Route::ALL.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
        "bands": WaitBand::ALL.iter().map(|b| b.as_str()).collect::<Vec<_>>(),
        "rags": Rag::ALL.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
        "worklists": Worklist::ALL.iter().map(|(c, _)| *c).collect::<Vec<_>>(),
        "sorts": PtlSort::ALL.iter().map(|(c, _)| *c).collect::<Vec<_>>(),
    }))
    .into_response()
}
