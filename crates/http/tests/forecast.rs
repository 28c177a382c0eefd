//! `GET /v1/forecast/{standard}` (issue 24) through the real router: what
//! has stopped so far, the running clocks it projects, scoping by trust, a
//! past `as_of` seeing only what was known then, and that a forecast leaves
//! the standards exactly as they were.
//!
//! Today is Monday 2025-04-07. Lower GI, urgent suspected cancer:
//! - P1 RXH referred 03-10, ruled out 04-02: FDS 23 days, met in April.
//! - P2 RXH referred 02-01, ruled out 04-03: FDS 61 days, breached in April.
//! - P3 RXH referred 04-01: running, day 6.
//! - P4 RHM referred 03-01, ruled out 03-20: FDS 19 days, met in March.

mod support;

use std::sync::Arc;

use axum::http::StatusCode;
use axum::Router;
use openptl_app::access::Role;
use openptl_log::MemoryLog;
use serde_json::{json, Value};
use support::{app_at, authorised, event, request, send, token};

const NOW: &str = "2025-04-07T12:00:00Z";

fn referral(pathway: &str, on: &str, trust: &str) -> Value {
    event(
        pathway,
        "referral_received",
        on,
        json!({ "nhs_number": "943 476 5919", "trust": trust, "tumour_site": "lower_gi", "route": "urgent_suspected_cancer" }),
    )
}

fn ruled_out(pathway: &str, on: &str) -> Value {
    event(
        pathway,
        "diagnosis_communicated",
        on,
        json!({ "outcome": "cancer_ruled_out" }),
    )
}

/// The router and a token that sees RHM only.
async fn loaded() -> (Router, String) {
    let app = app_at(NOW, Arc::new(MemoryLog::new()));
    let rhm = token(&app, Role::Manager, &["RHM"], None, "rhm manager");
    let router = authorised(app);
    let events = vec![
        referral("P1", "2025-03-10", "RXH"),
        ruled_out("P1", "2025-04-02"),
        referral("P2", "2025-02-01", "RXH"),
        ruled_out("P2", "2025-04-03"),
        referral("P3", "2025-04-01", "RXH"),
        referral("P4", "2025-03-01", "RHM"),
        ruled_out("P4", "2025-03-20"),
    ];
    let reply = send(
        &router,
        request(
            "POST",
            "/v1/events",
            None,
            Some(&json!({ "events": events })),
        ),
    )
    .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
    (router, rhm)
}

async fn get(router: &Router, uri: &str, bearer: Option<&str>) -> (StatusCode, Value) {
    let reply = send(router, request("GET", uri, bearer, None)).await;
    (reply.status, reply.json())
}

#[tokio::test]
async fn the_month_end_is_what_stopped_plus_what_is_running() {
    let (router, _) = loaded().await;
    let standards_before = get(&router, "/v1/standards/fds?period=2025-04", None).await;
    let (status, r) = get(&router, "/v1/forecast/fds?period=2025-04", None).await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(
        (
            r["standard"].clone(),
            r["period"].clone(),
            r["as_of"].clone()
        ),
        (json!("fds"), json!("2025-04"), json!("2025-04-07"))
    );
    assert_eq!(
        r["thresholds"],
        json!({ "standard": 75.0, "operational": 80.0 })
    );
    // P1 met and P2 breached so far; P3 still running on day 6.
    assert_eq!(
        (
            r["stopped"].clone(),
            r["stopped_within_target"].clone(),
            r["percent_so_far"].clone(),
            r["running"].clone()
        ),
        (json!(2.0), json!(1.0), json!(50.0), json!(1))
    );
    let percent = r["percent"].as_f64().unwrap();
    let (low, high) = (r["low"].as_f64().unwrap(), r["high"].as_f64().unwrap());
    assert!(low <= percent && percent <= high, "{r}");
    assert!((0.0..=100.0).contains(&low) && (0.0..=100.0).contains(&high));
    assert_eq!(r["by_trust"][0]["trust"], "RXH");
    assert_eq!(r["by_tumour_site"][0]["tumour_site"], "lower_gi");
    // A forecast changes nothing: the standard reads exactly as before.
    assert_eq!(
        get(&router, "/v1/standards/fds?period=2025-04", None).await,
        standards_before
    );
}

#[tokio::test]
async fn a_past_forecast_knows_only_what_was_known_then() {
    let (router, _) = loaded().await;
    let (status, r) = get(
        &router,
        "/v1/forecast/fds?period=2025-04&as_of=2025-04-02",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{r}");
    // On 04-02 only P1 had stopped; P2 (day 60) and P3 (day 1) were running.
    assert_eq!(
        (
            r["stopped"].clone(),
            r["percent_so_far"].clone(),
            r["running"].clone()
        ),
        (json!(1.0), json!(100.0), json!(2))
    );
    // P2 is past its target: whatever it does in April is a breach.
    assert!(r["expected_breaches"].as_f64().unwrap() > 0.0, "{r}");
}

#[tokio::test]
async fn a_forecast_covers_only_the_callers_trusts() {
    let (router, rhm) = loaded().await;
    let (status, r) = get(&router, "/v1/forecast/fds?period=2025-03", Some(&rhm)).await;
    assert_eq!(status, StatusCode::OK, "{r}");
    let trusts: Vec<&str> = r["by_trust"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["trust"].as_str().unwrap())
        .collect();
    assert_eq!(trusts, ["RHM"]);
    assert_eq!(
        (r["stopped"].clone(), r["percent"].clone()),
        (json!(1.0), json!(100.0))
    );
    let (_, april) = get(&router, "/v1/forecast/fds?period=2025-04", Some(&rhm)).await;
    assert_eq!(
        (april["stopped"].clone(), april["running"].clone()),
        (json!(0.0), json!(0))
    );
    assert_eq!(april["by_trust"], json!([]));
}

#[tokio::test]
async fn a_forecast_refuses_what_it_cannot_read() {
    let (router, _) = loaded().await;
    let (status, _) = get(&router, "/v1/forecast/d99", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = get(&router, "/v1/forecast/fds?colour=red", None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["details"]["field"], "colour");
    let (status, body) = get(&router, "/v1/forecast/d62?period=2025-13", None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["details"]["field"], "period");
    let (status, _) = get(&router, "/v1/forecast/fds", Some("not-a-token")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

/// The projected gauge: bounded labels (standard, trust), the figures of
/// the all-trust projection refreshed for today, nothing before a refresh.
#[tokio::test]
async fn the_projected_gauge_follows_the_refreshed_forecast() {
    let app = Arc::new(app_at(NOW, Arc::new(MemoryLog::new())));
    let admin = token(&app, Role::Admin, &[], None, "admin");
    let router = openptl_http::router(app.clone());
    let events = vec![
        referral("P1", "2025-03-10", "RXH"),
        ruled_out("P1", "2025-04-02"),
        referral("P2", "2025-02-01", "RXH"),
        ruled_out("P2", "2025-04-03"),
        referral("P3", "2025-04-01", "RXH"),
    ];
    let reply = send(
        &router,
        request(
            "POST",
            "/v1/events",
            Some(&admin),
            Some(&json!({ "events": events })),
        ),
    )
    .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
    let metrics = |text: String| -> Vec<String> {
        text.lines()
            .filter(|l| l.starts_with("openptl_projected_performance_percent{"))
            .map(str::to_string)
            .collect()
    };
    let before = send(&router, request("GET", "/metrics", Some(&admin), None)).await;
    assert_eq!(metrics(before.text()), Vec::<String>::new());
    app.refresh_forecasts().await.unwrap();
    let (_, fds) = get(&router, "/v1/forecast/fds", Some(&admin)).await;
    let rxh = fds["by_trust"][0]["percent"].as_f64().unwrap();
    let after = send(&router, request("GET", "/metrics", Some(&admin), None)).await;
    assert_eq!(
        metrics(after.text()),
        [format!(
            r#"openptl_projected_performance_percent{{clock="fds",trust="RXH"}} {rxh}"#
        )]
    );
}
