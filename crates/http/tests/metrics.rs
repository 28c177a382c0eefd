//! `/metrics` through the real router: the gauges move with the PTL, the
//! counters with requests, and no label ever carries personal data.

mod support;

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use openptl_log::MemoryLog;
use serde_json::{json, Value};
use support::{app_at, authorised};

fn spawn_app() -> Router {
    authorised(app_at("2025-04-07T12:00:00Z", Arc::new(MemoryLog::new())))
}

async fn call(app: &Router, request: Request<Body>) -> (StatusCode, String) {
    let reply = support::send(app, request).await;
    (reply.status, reply.text())
}

async fn post(app: &Router, body: Value) -> StatusCode {
    let request = Request::post("/v1/events")
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    call(app, request).await.0
}

/// Metric samples: `name{labels}` → value.
async fn scrape(app: &Router) -> (String, HashMap<String, f64>) {
    let (status, text) = call(app, Request::get("/metrics").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    let samples = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            Some((key.to_string(), value.parse().ok()?))
        })
        .collect();
    (text, samples)
}

fn referral(id: &str, on: &str, trust: &str, site: &str) -> Value {
    json!({
        "pathway_id": id, "type": "referral_received", "occurred_on": on,
        "data": { "nhs_number": "943 476 5919", "trust": trust, "tumour_site": site, "route": "urgent_suspected_cancer" }
    })
}

#[tokio::test]
async fn gauges_follow_the_ptl_and_counters_follow_requests() {
    let app = spawn_app();
    let (_, before) = scrape(&app).await;
    assert_eq!(before.get("openptl_log_head_position"), Some(&0.0));

    // Referred 2025-02-01: 65 days by 04-07 (63-104, FDS and 62-day breached).
    // Referred 2025-04-01: 6 days; FDS breaches on 04-30, 62-day on 06-03.
    // Referred 2025-03-12: FDS target 04-09, breach 04-10: within 7 days.
    assert_eq!(
        post(
            &app,
            json!({ "events": [
                referral("PW-OLD", "2025-02-01", "RXH", "lower_gi"),
                referral("PW-NEW", "2025-04-01", "RXH", "lower_gi"),
                referral("PW-SOON", "2025-03-12", "RHM", "skin"),
            ]})
        )
        .await,
        StatusCode::CREATED
    );
    let bad = json!({
        "pathway_id": "PW-BAD", "type": "referral_received", "occurred_on": "2025-04-01",
        "data": { "nhs_number": "9434765918", "trust": "RXH", "tumour_site": "skin", "route": "urgent_suspected_cancer" }
    });
    assert_eq!(post(&app, bad).await, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = call(
        &app,
        Request::get("/v1/pathways/PW-OLD")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    let (text, m) = scrape(&app).await;
    let get = |key: &str| {
        m.get(key)
            .copied()
            .unwrap_or_else(|| panic!("{key} missing:\n{text}"))
    };
    assert_eq!(
        get(r#"openptl_events_appended_total{type="referral_received"}"#),
        3.0
    );
    assert_eq!(
        get(r#"openptl_append_errors_total{status="invalid_nhs_number"}"#),
        1.0
    );
    // The errors the alert watches are there before the first one.
    assert_eq!(
        get(r#"openptl_append_errors_total{status="unavailable"}"#),
        0.0
    );
    assert_eq!(
        get(r#"openptl_append_errors_total{status="internal"}"#),
        0.0
    );
    assert_eq!(
        get(r#"openptl_http_requests_total{route="/v1/events",status="201"}"#),
        1.0
    );
    assert_eq!(
        get(r#"openptl_http_requests_total{route="/v1/events",status="422"}"#),
        1.0
    );
    assert_eq!(
        get(r#"openptl_http_requests_total{route="/v1/pathways/{pathway_id}",status="200"}"#),
        1.0
    );
    assert_eq!(
        get(r#"openptl_open_pathways{band="63-104",trust="RXH",tumour_site="lower_gi"}"#),
        1.0
    );
    assert_eq!(
        get(r#"openptl_open_pathways{band="0-28",trust="RXH",tumour_site="lower_gi"}"#),
        1.0
    );
    assert_eq!(
        get(r#"openptl_open_pathways{band="0-28",trust="RHM",tumour_site="skin"}"#),
        1.0
    );
    assert_eq!(
        get(r#"openptl_open_breached_clocks{clock="fds",trust="RXH",tumour_site="lower_gi"}"#),
        1.0
    );
    assert_eq!(
        get(r#"openptl_open_breached_clocks{clock="d62",trust="RXH",tumour_site="lower_gi"}"#),
        1.0
    );
    assert_eq!(
        get(
            r#"openptl_clocks_due_to_breach_within_7_days{clock="fds",trust="RHM",tumour_site="skin"}"#
        ),
        1.0
    );
    assert!(!m.contains_key(
        r#"openptl_clocks_due_to_breach_within_7_days{clock="fds",trust="RXH",tumour_site="lower_gi"}"#
    ));
    assert_eq!(get(r#"openptl_standard_target_percent{clock="fds"}"#), 80.0);
    assert_eq!(get("openptl_log_head_position"), 3.0);
    assert_eq!(get("openptl_projection_position"), 3.0);
    assert_eq!(get("openptl_projection_lag_events"), 0.0);
    assert!(get(r#"openptl_append_duration_seconds_count{status="ok"}"#) >= 1.0);

    // Treatment on PW-OLD this month: the 62-day clock stops breached (65
    // days) and leaves the open gauges; this month's performance appears.
    assert_eq!(
        post(&app, json!({ "events": [
            { "pathway_id": "PW-OLD", "type": "decision_to_treat", "occurred_on": "2025-04-02", "data": { "modality": "surgery" } },
            { "pathway_id": "PW-OLD", "type": "treatment_started", "occurred_on": "2025-04-07", "data": { "modality": "surgery" } },
        ]}))
        .await,
        StatusCode::CREATED
    );
    let (text, m) = scrape(&app).await;
    assert!(
        !m.contains_key(
            r#"openptl_open_pathways{band="63-104",trust="RXH",tumour_site="lower_gi"}"#
        ),
        "{text}"
    );
    assert_eq!(
        m[r#"openptl_standard_performance_percent{clock="d62",trust="RXH"}"#],
        0.0
    );
    assert_eq!(
        m[r#"openptl_standard_clocks_stopped{clock="d62",status="breached",trust="RXH"}"#],
        1.0
    );
    assert_eq!(
        m[r#"openptl_events_appended_total{type="treatment_started"}"#],
        1.0
    );
}

#[tokio::test]
async fn no_label_carries_personal_data_or_identifiers() {
    let app = spawn_app();
    post(&app, json!({ "events": [
        referral("RXH-0000123456", "2025-03-01", "RXH", "lung"),
        { "pathway_id": "RXH-0000123456", "type": "tracking_note_added", "occurred_on": "2025-04-01",
          "data": { "text": "Patient 943 476 5919 called", "owner": "Dr Who" } },
    ]}))
    .await;
    let _ = call(
        &app,
        Request::get("/v1/pathways/RXH-0000123456")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    let _ = call(
        &app,
        Request::get("/v1/pathways/9434765919")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    let _ = call(
        &app,
        Request::get("/no/such/9434765919")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    let (text, _) = scrape(&app).await;
    for forbidden in [
        "RXH-0000123456",
        "9434765919",
        "943 476 5919",
        "Dr Who",
        "Patient",
    ] {
        assert!(
            !text.contains(forbidden),
            "`{forbidden}` appears in /metrics:\n{text}"
        );
    }
    // Every label value is from a bounded vocabulary: no run of 10 digits.
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let digits = line
            .split(|c: char| !c.is_ascii_digit())
            .map(str::len)
            .max()
            .unwrap_or(0);
        let labels = line
            .split_once('{')
            .and_then(|(_, rest)| rest.rsplit_once('}'))
            .map_or("", |(labels, _)| labels);
        let label_digits = labels
            .split(|c: char| !c.is_ascii_digit())
            .map(str::len)
            .max()
            .unwrap_or(0);
        assert!(
            label_digits < 10,
            "a label looks like an NHS number: {line} ({digits})"
        );
    }
}

/// SPEC 2.12 and 6: subsequent treatment periods are clocks of the gauges,
/// labelled `clock="d31_subsequent"` (never by plan name), and this month's
/// 31-day performance counts every treatment period.
///
/// - SUB-A  breast RXH, surgery 02-03 → 02-17, radiotherapy `rt-plan-x`
///   decided 03-10: 28 days on 04-07, breach day 04-11 (within 7 days).
/// - SUB-B  the same, chemotherapy decided 02-10: 56 days, breached.
/// - SUB-C  lung RHM, surgery 02-03 → 02-17, drugs decided 03-10 and given
///   04-01 (22 days, met this month).
#[tokio::test]
async fn subsequent_treatment_periods_are_in_the_gauges() {
    let app = spawn_app();
    let mut events = Vec::new();
    for (id, trust, site) in [
        ("SUB-A", "RXH", "breast"),
        ("SUB-B", "RXH", "breast"),
        ("SUB-C", "RHM", "lung"),
    ] {
        events.push(referral(id, "2025-01-06", trust, site));
        events.push(json!({ "pathway_id": id, "type": "decision_to_treat", "occurred_on": "2025-02-03", "data": { "modality": "surgery" } }));
        events.push(json!({ "pathway_id": id, "type": "treatment_started", "occurred_on": "2025-02-17", "data": { "modality": "surgery" } }));
    }
    let plan = |id: &str, on: &str, plan: &str, modality: &str| {
        json!({ "pathway_id": id, "type": "decision_to_treat", "occurred_on": on,
                "data": { "modality": modality, "treatment": "subsequent", "plan_id": plan } })
    };
    events.push(plan("SUB-A", "2025-03-10", "rt-plan-x", "radiotherapy"));
    events.push(plan("SUB-B", "2025-02-10", "chemo", "anticancer_drug"));
    events.push(plan("SUB-C", "2025-03-10", "drugs", "anticancer_drug"));
    events.push(
        json!({ "pathway_id": "SUB-C", "type": "treatment_started", "occurred_on": "2025-04-01",
        "data": { "modality": "anticancer_drug", "treatment": "subsequent", "plan_id": "drugs" } }),
    );
    assert_eq!(
        post(&app, json!({ "events": events })).await,
        StatusCode::CREATED
    );
    let (text, m) = scrape(&app).await;
    let get = |key: &str| {
        *m.get(key)
            .unwrap_or_else(|| panic!("{key} missing:\n{text}"))
    };
    assert_eq!(
        get(
            r#"openptl_clocks_due_to_breach_within_7_days{clock="d31_subsequent",trust="RXH",tumour_site="breast"}"#
        ),
        1.0
    );
    assert_eq!(
        get(
            r#"openptl_open_breached_clocks{clock="d31_subsequent",trust="RXH",tumour_site="breast"}"#
        ),
        1.0
    );
    // Treated pathways back on the PTL have no 62-day clock running.
    assert_eq!(
        get(r#"openptl_open_pathways{band="none",trust="RXH",tumour_site="breast"}"#),
        2.0
    );
    assert_eq!(
        get(r#"openptl_standard_clocks_stopped{clock="d31",status="met",trust="RHM"}"#),
        1.0
    );
    assert_eq!(
        get(r#"openptl_standard_performance_percent{clock="d31",trust="RHM"}"#),
        100.0
    );
    assert!(!text.contains("rt-plan-x"), "no plan name in a label");
}

#[tokio::test]
async fn this_months_fit_measures_are_gauges_by_trust() {
    // Today is 2025-04-07: April's lower GI urgent referrals count.
    let app = spawn_app();
    let event = |id: &str, kind: &str, on: &str, data: Value| json!({ "pathway_id": id, "type": kind, "occurred_on": on, "data": data });
    assert_eq!(
        post(
            &app,
            json!({ "events": [
                referral("FIT-1", "2025-04-01", "RXH", "lower_gi"),
                event("FIT-1", "fit_result_recorded", "2025-03-20", json!({ "value_ug_per_g": 4 })),
                event("FIT-1", "diagnostic_performed", "2025-04-03", json!({ "test": "colonoscopy" })),
                referral("FIT-2", "2025-04-02", "RXH", "lower_gi"),
                event("FIT-2", "diagnostic_performed", "2025-04-04", json!({ "test": "colonoscopy" })),
                referral("FIT-3", "2025-04-02", "RHM", "lower_gi"),
                event("FIT-3", "fit_result_recorded", "2025-04-01", json!({ "value_ug_per_g": 40 })),
                // March, and another site: not this month's lower GI referrals.
                referral("FIT-4", "2025-03-31", "RXH", "lower_gi"),
                referral("FIT-5", "2025-04-02", "RXH", "lung"),
            ] })
        )
        .await,
        StatusCode::CREATED
    );
    let (text, samples) = scrape(&app).await;
    let gauge = |name: &str, trust: &str, measure: &str| {
        samples
            .get(&format!(
                "{name}{{measure=\"{measure}\",trust=\"{trust}\"}}"
            ))
            .copied()
    };
    assert_eq!(
        gauge("openptl_fit_pathways", "RXH", "referrals"),
        Some(2.0),
        "{text}"
    );
    assert_eq!(gauge("openptl_fit_pathways", "RXH", "with_fit"), Some(1.0));
    assert_eq!(gauge("openptl_fit_percent", "RXH", "with_fit"), Some(50.0));
    assert_eq!(
        gauge("openptl_fit_pathways", "RXH", "colonoscopies"),
        Some(2.0)
    );
    assert_eq!(
        gauge("openptl_fit_pathways", "RXH", "colonoscopies_without_fit"),
        Some(1.0)
    );
    assert_eq!(
        gauge("openptl_fit_pathways", "RXH", "colonoscopies_fit_below_10"),
        Some(1.0)
    );
    assert_eq!(
        gauge("openptl_fit_percent", "RXH", "colonoscopies_without_fit"),
        Some(50.0)
    );
    assert_eq!(gauge("openptl_fit_percent", "RHM", "with_fit"), Some(100.0));
    assert_eq!(
        gauge("openptl_fit_percent", "RHM", "colonoscopies_without_fit"),
        None,
        "no colonoscopies, no share"
    );
    assert_eq!(
        samples.get("openptl_fit_target_percent{measure=\"with_fit\"}"),
        Some(&80.0)
    );
    assert_eq!(
        samples.get("openptl_fit_target_percent{measure=\"colonoscopies_without_fit\"}"),
        Some(&20.0)
    );
    // Bounded labels only: trust and measure.
    for line in text.lines().filter(|l| l.starts_with("openptl_fit_")) {
        assert!(!line.contains("FIT-"), "{line}");
        let labels = line.split_once('{').map_or("", |(_, rest)| rest);
        for label in labels
            .split(',')
            .filter_map(|l| l.split_once('=').map(|(k, _)| k))
        {
            assert!(["trust", "measure"].contains(&label), "{line}");
        }
    }
}
