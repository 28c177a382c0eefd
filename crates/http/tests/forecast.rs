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
use support::{
    app_at, authorised, authorised_shared, event, post_events, request, ruled_out, send, token,
};

const NOW: &str = "2025-04-07T12:00:00Z";

fn referral(pathway: &str, on: &str, trust: &str) -> Value {
    event(
        pathway,
        "referral_received",
        on,
        json!({ "nhs_number": "943 476 5919", "trust": trust, "tumour_site": "lower_gi", "route": "urgent_suspected_cancer" }),
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
    post_events(&router, None, events).await;
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
    // A month-end forecast's cost grows with the square of its days ahead:
    // a far month is refused rather than left to hold a core for minutes.
    let (status, body) = get(&router, "/v1/forecast/fds?period=9999-12", None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["details"]["field"], "period");
    let (status, body) = get(&router, "/v1/forecast/fds?period=2026-05", None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    // A year ahead, the bound itself, is answered.
    let (status, body) = get(&router, "/v1/forecast/fds?period=2026-04", None).await;
    assert_eq!(status, StatusCode::OK, "a year ahead is allowed: {body}");
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
    post_events(&router, Some(&admin), events).await;
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

#[tokio::test]
async fn the_likely_to_breach_worklist_lists_risky_clocks_first() {
    let (router, rhm) = loaded().await;
    // On 04-02, P2 had waited 60 days on its FDS clock: already breached,
    // so not on the worklist unless asked for.
    let (status, r) = get(
        &router,
        "/v1/breach-risks?as_of=2025-04-02&min_risk=0",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(
        (r["as_of"].clone(), r["min_risk"].clone()),
        (json!("2025-04-02"), json!(0.0))
    );
    let rows = r["rows"].as_array().unwrap();
    assert!(
        rows.iter()
            .all(|row| row["days"].as_i64() <= row["target_days"].as_i64()),
        "{r}"
    );
    assert!(rows.iter().any(|row| row["pathway_id"] == "P3"), "{r}");
    assert!(
        !rows
            .iter()
            .any(|row| row["pathway_id"] == "P2" && row["clock"] == "fds"),
        "{r}"
    );
    let risks: Vec<f64> = rows
        .iter()
        .map(|row| row["breach_risk"].as_f64().unwrap())
        .collect();
    assert!(
        risks.windows(2).all(|w| w[0] >= w[1]),
        "riskiest first: {r}"
    );
    assert_eq!(r["total"].as_u64().unwrap() as usize, risks.len());
    let (_, all) = get(
        &router,
        "/v1/breach-risks?as_of=2025-04-02&include_breached=true",
        None,
    )
    .await;
    assert_eq!(all["min_risk"], 50.0);
    let first = &all["rows"][0];
    assert_eq!(
        (
            first["pathway_id"].clone(),
            first["clock"].clone(),
            first["days"].clone(),
            first["breach_risk"].clone(),
            first["reason"].clone()
        ),
        (
            json!("P2"),
            json!("fds"),
            json!(60),
            json!(100.0),
            json!("already past its 28-day target on day 60")
        )
    );
    assert!(all["rows"]
        .as_array()
        .unwrap()
        .iter()
        .all(|row| row["breach_risk"].as_f64().unwrap() >= 50.0));
    // Another trust's manager sees none of RXH's patients.
    let (_, theirs) = get(
        &router,
        "/v1/breach-risks?as_of=2025-04-02&min_risk=0",
        Some(&rhm),
    )
    .await;
    assert_eq!(theirs["rows"], json!([]));
}

#[tokio::test]
async fn a_pathway_shows_each_running_clock_with_its_reason() {
    let (router, _) = loaded().await;
    let (status, r) = get(&router, "/v1/breach-risks?pathway_id=P3", None).await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(r["min_risk"], 0.0);
    let rows = r["rows"].as_array().unwrap();
    let clocks: Vec<&str> = rows
        .iter()
        .map(|row| row["clock"].as_str().unwrap())
        .collect();
    let mut sorted = clocks.clone();
    sorted.sort();
    assert_eq!(sorted, ["d62", "fds"], "{r}");
    let fds = rows.iter().find(|row| row["clock"] == "fds").unwrap();
    assert_eq!(
        (fds["days"].clone(), fds["target_days"].clone()),
        (json!(6), json!(28))
    );
    let risk = fds["breach_risk"].as_f64().unwrap();
    assert!((0.0..=100.0).contains(&risk));
    let reason = fds["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("day 6 of 28; about ") && reason.contains("lower GI pathways"),
        "{reason}"
    );
    // Several pathways at once (a PTL page's rows).
    let (_, both) = get(&router, "/v1/breach-risks?pathway_id=P3,P1,P2", None).await;
    let ids: Vec<&str> = both["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["pathway_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["P3", "P3"], "{both}");
    // Stopped pathways have no running clock to show.
    let (_, p1) = get(&router, "/v1/breach-risks?pathway_id=P1", None).await;
    assert_eq!(p1["rows"], json!([]));
}

#[tokio::test]
async fn breach_risks_are_patient_level_and_checked() {
    let app = app_at(NOW, Arc::new(MemoryLog::new()));
    let analyst = token(&app, Role::Analyst, &["*"], None, "analyst");
    let router = authorised(app);
    let (status, body) = get(&router, "/v1/breach-risks", Some(&analyst)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    for (uri, field) in [
        ("/v1/breach-risks?min_risk=101", "min_risk"),
        ("/v1/breach-risks?limit=0", "limit"),
        ("/v1/breach-risks?clock=d99", "clock"),
        ("/v1/breach-risks?pathway_id=a%20b", "pathway_id"),
        ("/v1/breach-risks?sort=risk", "sort"),
        ("/v1/breach-risks?include_breached=yes", "include_breached"),
    ] {
        let (status, body) = get(&router, uri, None).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{uri}: {body}");
        assert_eq!(body["error"]["details"]["field"], field, "{uri}");
    }
}

#[tokio::test]
async fn the_likely_to_breach_page_and_its_script_are_served_with_security_headers() {
    let (router, _) = loaded().await;
    for (path, content_type) in [
        ("/risks", "text/html"),
        ("/assets/forecast.js", "text/javascript"),
    ] {
        let reply = send(&router, request("GET", path, None, None)).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}");
        assert!(reply.content_type().starts_with(content_type), "{path}");
        let csp = reply.headers["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("script-src 'self'"), "{path}");
    }
    let shell = send(&router, request("GET", "/risks", None, None))
        .await
        .text();
    assert!(shell.contains(r#"<script src="/assets/forecast.js" defer></script>"#));
    assert!(shell.contains(r#"href="/risks""#));
}

/// A PTL page asks for its rows' risks on every redraw: with today's model
/// learnt, only those pathways are read, and the answer is the same as the
/// same clocks in the list read from every pathway.
#[tokio::test]
async fn a_pages_risks_read_only_its_pathways_and_equal_the_full_list() {
    let app = Arc::new(app_at(NOW, Arc::new(MemoryLog::new())));
    let router = authorised_shared(app.clone());
    let mut events = Vec::new();
    for (i, trust) in ["RXH", "RHM", "RXH", "RTH", "RXH", "RHM"]
        .iter()
        .enumerate()
    {
        let id = format!("Q{i}");
        events.push(referral(&id, &format!("2025-03-{:02}", 5 + 4 * i), trust));
        if i % 3 == 0 {
            events.push(ruled_out(&id, "2025-04-01"));
        }
    }
    post_events(&router, None, events).await;
    // Today as known now (the log stamps records with the wall clock):
    // the model learnt afresh from every pathway's clocks.
    // (A second on, as the moment is given to the second.)
    let known_now = (chrono::Utc::now() + chrono::Duration::seconds(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let (slow_status, slow) = get(
        &router,
        &format!(
            "/v1/breach-risks?pathway_id=Q1,Q2,Q4&as_of={}&known_at={known_now}",
            &NOW[..10]
        ),
        None,
    )
    .await;
    assert_eq!(slow_status, StatusCode::OK, "{slow}");
    // The first page of the day learns today's model (decision 220).
    let (first_status, first) = get(&router, "/v1/breach-risks?pathway_id=Q1,Q2,Q4", None).await;
    assert_eq!(first_status, StatusCode::OK, "{first}");
    app.refresh_forecasts().await.unwrap();
    let (_, all) = get(
        &router,
        "/v1/breach-risks?min_risk=0&include_breached=true",
        None,
    )
    .await;
    let (_, page) = get(&router, "/v1/breach-risks?pathway_id=Q1,Q2,Q4", None).await;
    let rows = page["rows"].as_array().unwrap();
    assert!(!rows.is_empty(), "{page}");
    let from_all: Vec<&Value> = all["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| ["Q1", "Q2", "Q4"].contains(&r["pathway_id"].as_str().unwrap()))
        .collect();
    assert_eq!(rows.iter().collect::<Vec<_>>(), from_all, "{page} {all}");
    assert_eq!(page["position"], all["position"]);
    // The first page, which learnt today's model, and the same pathways
    // read from every pathway with a model learnt for the view: the same
    // rows (the later page uses the model the first kept).
    assert_eq!(first["rows"], slow["rows"]);
    assert_eq!(slow["rows"], page["rows"]);
}
