//! Access control through the real router: every role × trust × endpoint
//! cell asserted (a pathway of another trust is 404, not 403, so existence is
//! not leaked), token expiry and revocation, masking, and the access log.

mod support;

use std::sync::Arc;

use axum::body::Body;
use axum::http::StatusCode;
use axum::Router;
use openptl_app::access::Role;
use openptl_app::tokens::NewToken;
use openptl_app::App;
use openptl_log::MemoryLog;
use serde_json::{json, Value};
use support::{request, token};

const NHS: &str = "9434765919";

struct World {
    router: Router,
    app: Arc<App>,
    /// (name, secret) in the column order of the matrix.
    tokens: Vec<(&'static str, Option<String>)>,
}

async fn call(
    router: &Router,
    token: Option<&str>,
    method: &str,
    uri: &str,
    body: Option<&Value>,
) -> (StatusCode, Value) {
    let reply = support::send(router, request(method, uri, token, body)).await;
    (reply.status, reply.json_or_text())
}

fn referral(id: &str, trust: &str) -> Value {
    json!({ "pathway_id": id, "type": "referral_received", "occurred_on": "2025-03-03",
            "data": { "nhs_number": NHS, "trust": trust, "tumour_site": "lower_gi", "route": "urgent_suspected_cancer" } })
}

fn note(id: &str) -> Value {
    json!({ "pathway_id": id, "type": "tracking_note_added", "occurred_on": "2025-04-07", "data": { "text": "Chased" } })
}

async fn world() -> World {
    let app = Arc::new(support::app_at(
        "2025-04-07T12:00:00Z",
        Arc::new(MemoryLog::new()),
    ));
    let now = app.clock().now();
    let admin = token(&app, Role::Admin, &[], None, "admin");
    // The matrix presents expired and revoked tokens on every endpoint from
    // one (unknown) address: the per-address failure limit is off here
    // (it has its own tests in abuse.rs).
    let router = openptl_http::router_with(
        app.clone(),
        Arc::new(openptl_http::FailedAuth::new(0, 1, 1)),
    );
    let setup = json!({ "events": [
        referral("P1", "RXH"),
        referral("P2", "RHM"),
        referral("P3", "RXH"),
        { "pathway_id": "P3", "type": "pathway_transferred", "occurred_on": "2025-03-20", "data": { "to_trust": "RHM" } },
        { "pathway_id": "P1", "type": "diagnosis_communicated", "occurred_on": "2025-03-20", "data": { "outcome": "cancer_diagnosed" } },
        { "pathway_id": "P1", "type": "decision_to_treat", "occurred_on": "2025-03-21", "data": { "modality": "surgery" } },
        { "pathway_id": "P1", "type": "treatment_started", "occurred_on": "2025-03-28", "data": { "modality": "surgery" } },
        referral("P4", "RXH"),
    ]});
    let (status, body) = call(&router, Some(&admin), "POST", "/v1/events", Some(&setup)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (expired, _) = app
        .tokens()
        .create(
            NewToken {
                role: Role::Coordinator,
                trusts: vec!["RXH".into()],
                alliance: None,
                label: Some("expired".into()),
                expires_at: Some("2025-01-01T00:00:00Z".parse().unwrap()),
            },
            now,
        )
        .map(|(r, s)| (s, r))
        .unwrap();
    let revoked_secret = token(&app, Role::Coordinator, &["RXH"], None, "revoked");
    let revoked_id = app.tokens().authenticate(&revoked_secret, now).unwrap().id;
    let (status, _) = call(
        &router,
        Some(&admin),
        "DELETE",
        &format!("/v1/tokens/{revoked_id}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let tokens = vec![
        (
            "coord_rxh",
            Some(token(&app, Role::Coordinator, &["RXH"], None, "coord-rxh")),
        ),
        (
            "coord_rhm",
            Some(token(&app, Role::Coordinator, &["RHM"], None, "coord-rhm")),
        ),
        (
            "manager_rxh",
            Some(token(&app, Role::Manager, &["RXH"], None, "manager-rxh")),
        ),
        (
            "viewer",
            Some(token(
                &app,
                Role::AllianceViewer,
                &[],
                Some("demo"),
                "viewer",
            )),
        ),
        (
            "analyst",
            Some(token(&app, Role::Analyst, &["RXH"], None, "analyst-rxh")),
        ),
        ("admin", Some(admin)),
        ("expired", Some(expired)),
        ("revoked", Some(revoked_secret)),
        ("none", None),
    ];
    World {
        router,
        app,
        tokens,
    }
}

#[tokio::test]
async fn every_role_trust_endpoint_cell() {
    let w = world().await;
    // P1: RXH (treated). P2: RHM. P3: referred at RXH, now RHM. P4: RXH, open.
    // Columns: coord_rxh coord_rhm manager_rxh viewer analyst admin expired revoked none
    let cases: Vec<(&str, String, Option<Value>, [u16; 9])> = vec![
        (
            "GET",
            "/v1/pathways/P4".into(),
            None,
            [200, 404, 200, 200, 404, 200, 401, 401, 401],
        ),
        (
            "GET",
            "/v1/pathways/P2".into(),
            None,
            [404, 200, 404, 200, 404, 200, 401, 401, 401],
        ),
        // The sending trust keeps read access after a transfer.
        (
            "GET",
            "/v1/pathways/P3".into(),
            None,
            [200, 200, 200, 200, 404, 200, 401, 401, 401],
        ),
        (
            "GET",
            "/v1/pathways/P4/events".into(),
            None,
            [200, 404, 200, 200, 404, 200, 401, 401, 401],
        ),
        (
            "GET",
            "/v1/pathways/P3/events".into(),
            None,
            [200, 200, 200, 200, 404, 200, 401, 401, 401],
        ),
        (
            "GET",
            "/v1/pathways/NOPE".into(),
            None,
            [404, 404, 404, 404, 404, 404, 401, 401, 401],
        ),
        // Writing to another trust's pathway answers as for a missing one (422
        // pathway_not_started), so the write path does not reveal it either.
        (
            "POST",
            "/v1/events".into(),
            Some(note("P4")),
            [201, 422, 201, 403, 403, 201, 401, 401, 401],
        ),
        (
            "POST",
            "/v1/events".into(),
            Some(note("NOPE")),
            [422, 422, 422, 403, 403, 422, 401, 401, 401],
        ),
        (
            "POST",
            "/v1/events".into(),
            Some(
                json!({ "pathway_id": "P4", "type": "triage_completed", "occurred_on": "2025-04-07", "data": { "outcome": "straight_to_test" } }),
            ),
            [201, 422, 403, 403, 403, 201, 401, 401, 401],
        ),
        // After the transfer only the receiving trust writes; the sender reads.
        (
            "POST",
            "/v1/events".into(),
            Some(note("P3")),
            [403, 201, 403, 403, 403, 201, 401, 401, 401],
        ),
        (
            "GET",
            "/v1/ptl".into(),
            None,
            [200, 200, 200, 200, 403, 200, 401, 401, 401],
        ),
        (
            "GET",
            "/v1/ptl?format=csv".into(),
            None,
            [200, 200, 200, 200, 403, 200, 401, 401, 401],
        ),
        (
            "GET",
            "/v1/standards/d62?period=2025-03".into(),
            None,
            [200, 200, 200, 200, 200, 200, 401, 401, 401],
        ),
        (
            "GET",
            "/v1/milestones".into(),
            None,
            [200, 200, 200, 200, 200, 200, 401, 401, 401],
        ),
        (
            "GET",
            "/v1/returns/canptl?week_ending=2025-04-06".into(),
            None,
            [200, 200, 200, 200, 200, 200, 401, 401, 401],
        ),
        (
            "GET",
            "/v1/returns/cwt?period=2025-03&format=json".into(),
            None,
            [200, 200, 200, 200, 200, 200, 401, 401, 401],
        ),
        (
            "GET",
            "/v1/meta".into(),
            None,
            [200, 200, 200, 200, 200, 200, 401, 401, 401],
        ),
        (
            "GET",
            "/metrics".into(),
            None,
            [200, 200, 200, 200, 200, 200, 401, 401, 401],
        ),
        (
            "GET",
            "/v1/session".into(),
            None,
            [200, 200, 200, 200, 200, 200, 401, 401, 401],
        ),
        (
            "GET",
            "/v1/audit".into(),
            None,
            [403, 403, 403, 403, 403, 200, 401, 401, 401],
        ),
        (
            "GET",
            "/v1/tokens".into(),
            None,
            [403, 403, 403, 403, 403, 200, 401, 401, 401],
        ),
        ("GET", "/healthz".into(), None, [200; 9]),
        ("GET", "/".into(), None, [200; 9]),
    ];
    let mut failures = Vec::new();
    for (method, uri, body, expected) in &cases {
        for ((name, secret), want) in w.tokens.iter().zip(expected) {
            let (status, answer) =
                call(&w.router, secret.as_deref(), method, uri, body.as_ref()).await;
            if status.as_u16() != *want {
                failures.push(format!(
                    "{method} {uri} as {name}: {status}, expected {want}: {answer}"
                ));
            }
        }
    }
    // New pathways: only a writer of the referral's trust may open one.
    for ((name, secret), want) in w
        .tokens
        .iter()
        .zip([201, 403, 403, 403, 403, 201, 401, 401, 401])
    {
        let body = referral(&format!("NEW-{name}"), "RXH");
        let (status, answer) = call(
            &w.router,
            secret.as_deref(),
            "POST",
            "/v1/events",
            Some(&body),
        )
        .await;
        if status.as_u16() != want {
            failures.push(format!(
                "new RXH referral as {name}: {status}, expected {want}: {answer}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} cells wrong:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[tokio::test]
async fn views_are_scoped_and_identifiers_masked_by_role() {
    let w = world().await;
    let secret = |name: &str| {
        w.tokens
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap()
            .1
            .clone()
            .unwrap()
    };
    // A coordinator sees only its trust's rows, with NHS numbers.
    let (_, page) = call(
        &w.router,
        Some(&secret("coord_rxh")),
        "GET",
        "/v1/ptl",
        None,
    )
    .await;
    let rows = page["rows"].as_array().unwrap();
    assert!(!rows.is_empty());
    assert!(rows.iter().all(|r| r["trust"] == "RXH"), "{page}");
    assert!(rows.iter().all(|r| r["nhs_number"] == NHS));
    // Asking for another trust gives nothing, not the other trust's rows.
    let (_, page) = call(
        &w.router,
        Some(&secret("coord_rxh")),
        "GET",
        "/v1/ptl?trust=RHM",
        None,
    )
    .await;
    assert_eq!(page["total"], 0, "{page}");
    // An alliance viewer sees every trust, NHS numbers masked.
    let (_, page) = call(&w.router, Some(&secret("viewer")), "GET", "/v1/ptl", None).await;
    let rows = page["rows"].as_array().unwrap();
    assert!(rows.iter().any(|r| r["trust"] == "RHM") && rows.iter().any(|r| r["trust"] == "RXH"));
    assert!(
        rows.iter().all(|r| r["nhs_number"] == "*** *** 5919"),
        "{page}"
    );
    // An analyst's extract has no identifiers.
    let (_, cwt) = call(
        &w.router,
        Some(&secret("analyst")),
        "GET",
        "/v1/returns/cwt?period=2025-03&format=json",
        None,
    )
    .await;
    let lines = cwt["rows"].as_array().unwrap();
    assert!(!lines.is_empty(), "{cwt}");
    assert!(
        lines
            .iter()
            .all(|l| l["PATIENT PATHWAY IDENTIFIER"] == "" && l["NHS NUMBER"] == ""),
        "{cwt}"
    );
    // Aggregates count only the caller's trusts.
    let (_, d62) = call(
        &w.router,
        Some(&secret("coord_rhm")),
        "GET",
        "/v1/standards/d62?period=2025-03",
        None,
    )
    .await;
    assert_eq!(
        d62["total"], 0.0,
        "P1 (treated in March) belongs to RXH: {d62}"
    );
    let (_, d62) = call(
        &w.router,
        Some(&secret("coord_rxh")),
        "GET",
        "/v1/standards/d62?period=2025-03",
        None,
    )
    .await;
    assert_eq!(d62["total"], 1.0, "{d62}");
    // Metrics lose other trusts' series.
    let (_, metrics) = call(
        &w.router,
        Some(&secret("coord_rhm")),
        "GET",
        "/metrics",
        None,
    )
    .await;
    let text = metrics.as_str().unwrap();
    assert!(text.contains("trust=\"RHM\""), "{text}");
    assert!(!text.contains("trust=\"RXH\""), "{text}");
}

#[tokio::test]
async fn reads_of_patient_data_are_in_the_access_log() {
    let w = world().await;
    let secret = |name: &str| {
        w.tokens
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap()
            .1
            .clone()
            .unwrap()
    };
    call(
        &w.router,
        Some(&secret("coord_rxh")),
        "GET",
        "/v1/pathways/P4",
        None,
    )
    .await;
    call(
        &w.router,
        Some(&secret("coord_rxh")),
        "GET",
        "/v1/ptl",
        None,
    )
    .await;
    let (status, audit) = call(
        &w.router,
        Some(&secret("admin")),
        "GET",
        "/v1/audit?actor=coord-rxh",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let entries = audit["entries"].as_array().unwrap();
    assert_eq!(entries[0]["action"], "ptl", "{audit}");
    assert_eq!(entries[1]["action"], "pathway");
    assert_eq!(entries[1]["pathway_id"], "P4");
    assert_eq!(entries[1]["role"], "coordinator");
    assert!(
        !audit.to_string().contains(NHS),
        "no NHS number in the access log"
    );
    let (_, by_pathway) = call(
        &w.router,
        Some(&secret("admin")),
        "GET",
        "/v1/audit?pathway_id=P4",
        None,
    )
    .await;
    assert_eq!(by_pathway["entries"].as_array().unwrap().len(), 1);
    // Every stored event names who posted it.
    let (_, history) = call(
        &w.router,
        Some(&secret("admin")),
        "GET",
        "/v1/pathways/P4/events",
        None,
    )
    .await;
    assert_eq!(history["events"][0]["actor"], "admin");
}

#[tokio::test]
async fn tokens_are_issued_and_revoked_through_the_api() {
    let w = world().await;
    let admin = w
        .tokens
        .iter()
        .find(|(n, _)| *n == "admin")
        .unwrap()
        .1
        .clone()
        .unwrap();
    let request = json!({ "role": "manager", "trusts": ["RTH"], "label": "sam" });
    let (status, created) = call(
        &w.router,
        Some(&admin),
        "POST",
        "/v1/tokens",
        Some(&request),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let secret = created["token"].as_str().unwrap().to_string();
    assert!(
        created["record"]["expires_at"].is_string(),
        "API tokens expire by default"
    );
    assert!(!created["record"].to_string().contains(&secret));
    let (status, me) = call(&w.router, Some(&secret), "GET", "/v1/session", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        me,
        json!({ "actor": "sam", "role": "manager", "trusts": ["RTH"] })
    );
    let (_, list) = call(&w.router, Some(&admin), "GET", "/v1/tokens", None).await;
    assert!(
        !list.to_string().contains(&secret),
        "secrets are never listed"
    );
    let id = created["record"]["id"].as_str().unwrap();
    call(
        &w.router,
        Some(&admin),
        "DELETE",
        &format!("/v1/tokens/{id}"),
        None,
    )
    .await;
    let (status, body) = call(&w.router, Some(&secret), "GET", "/v1/session", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["code"], "unauthenticated");
    // Bad requests are named.
    for bad in [
        json!({ "role": "manager" }),
        json!({ "role": "chief", "trusts": ["RXH"] }),
        json!({ "role": "alliance_viewer" }),
        json!({ "role": "coordinator", "trusts": ["R"] }),
    ] {
        let (status, body) = call(&w.router, Some(&admin), "POST", "/v1/tokens", Some(&bad)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {body}");
    }
    // The dashboard's sign-in sets an HttpOnly cookie that works like the header.
    let signed_in = support::send(
        &w.router,
        support::request(
            "POST",
            "/v1/session",
            None,
            Some(&json!({ "token": admin })),
        ),
    )
    .await;
    let cookie = signed_in.headers["set-cookie"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().unwrap().to_string();
    let request = axum::http::Request::get("/v1/ptl")
        .header("cookie", pair)
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        support::send(&w.router, request).await.status,
        StatusCode::OK
    );
    let _ = &w.app;
}

/// While the access log cannot be written (its disk full), reads of patient
/// data are answered and their lines wait in memory; once the lines waiting
/// reach their limit, reads of patient data are refused and show nothing
/// (decision 194). Figures without patients go on; every failed write is
/// counted.
#[tokio::test]
async fn reads_the_access_log_cannot_record_wait_then_are_refused() {
    let full = std::fs::OpenOptions::new()
        .append(true)
        .open("/dev/full")
        .expect("/dev/full, a disk that is always full");
    // Room for a few lines only.
    let log = openptl_app::audit::AccessLog::writing_to(Box::new(full), 400);
    let app =
        support::app_at("2025-04-07T12:00:00Z", Arc::new(MemoryLog::new())).with_access_log(log);
    let router = support::authorised(app);
    support::post_events(&router, None, vec![referral("P1", "RXH"), note("P1")]).await;
    let (status, body) = support::get_json(&router, None, "/v1/pathways/P1").await;
    assert_eq!(status, StatusCode::OK, "the first line waits: {body}");
    // Every read of patient data below fails to write its line.
    let mut audited = 1;
    for uri in [
        "/v1/ptl",
        "/v1/pathways/P1",
        "/v1/pathways/P1/events",
        "/v1/returns/cwt?period=2025-03",
        "/v1/standards/fds/clocks?period=2025-03&outcome=excluded",
    ] {
        // Answered while its line can wait, then refused.
        let body = loop {
            let (status, body) = support::get_json(&router, None, uri).await;
            audited += 1;
            if status != StatusCode::OK {
                assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{uri}: {body}");
                break body;
            }
            assert!(
                audited < 40,
                "{uri}: the lines waiting never reached their limit"
            );
        };
        assert_eq!(body["error"]["code"], "audit_unavailable", "{uri}: {body}");
        assert!(!body.to_string().contains(NHS), "{uri}: {body}");
        assert!(!body.to_string().contains("P1"), "{uri}: {body}");
    }
    let (status, body) = support::get_json(&router, None, "/v1/standards/fds?period=2025-03").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, metrics) = support::get_json(&router, None, "/metrics").await;
    let metrics = metrics.as_str().unwrap().to_string();
    assert!(
        metrics.contains(&format!("openptl_access_log_write_errors_total {audited}")),
        "{audited}: {metrics}"
    );
    assert!(
        !metrics.contains("openptl_access_log_pending_bytes 0\n"),
        "{metrics}"
    );
}
