//! The views of SPEC 4.4 through the real router, on a small alliance whose
//! every figure was worked out by hand with a calendar
//! ([`support::alliance`] tells each pathway's story).

mod support;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use openptl_app::{App, FixedClock};
use openptl_log::{EventLog, MemoryLog};
use openptl_rules::RulesConfig;
use serde_json::{json, Value};
use support::{app_at, authorised};

fn app_on(log: Arc<dyn EventLog>) -> Router {
    authorised(app_at(NOW, log))
}

async fn send(app: &Router, request: Request<Body>) -> (StatusCode, String, Vec<u8>) {
    let reply = support::send(app, request).await;
    (reply.status, reply.content_type(), reply.body)
}

async fn get(app: &Router, uri: &str) -> Value {
    let (status, _, body) = send(app, Request::get(uri).body(Body::empty()).unwrap()).await;
    let body: Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(status, StatusCode::OK, "{uri}: {body}");
    body
}

async fn get_status(app: &Router, uri: &str) -> (StatusCode, Value) {
    let (status, _, body) = send(app, Request::get(uri).body(Body::empty()).unwrap()).await;
    (status, serde_json::from_slice(&body).expect("JSON"))
}

async fn get_csv(app: &Router, uri: &str) -> String {
    let request = Request::get(uri)
        .header("accept", "text/csv")
        .body(Body::empty())
        .unwrap();
    let (status, content_type, body) = send(app, request).await;
    assert_eq!(status, StatusCode::OK, "{uri}");
    assert!(content_type.starts_with("text/csv"), "{content_type}");
    String::from_utf8(body).unwrap()
}

async fn post(app: &Router, events: Vec<Value>) -> Value {
    let request = Request::post("/v1/events")
        .header("content-type", "application/json")
        .body(Body::from(json!({ "events": events }).to_string()))
        .unwrap();
    let (status, _, body) = send(app, request).await;
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body
}

use support::alliance::{fixture, referral, told, NOW};
use support::event as ev;

async fn loaded() -> (Router, Arc<dyn EventLog>) {
    let log: Arc<dyn EventLog> = Arc::new(MemoryLog::new());
    let app = app_on(log.clone());
    post(&app, fixture()).await;
    (app, log)
}

fn ids(page: &Value) -> Vec<String> {
    page["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["pathway_id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn the_ptl_lists_open_pathways_with_hand_computed_columns() {
    let (app, _) = loaded().await;
    let page = get(&app, "/v1/ptl").await;
    assert_eq!(page["as_of"], "2025-04-07");
    assert_eq!(page["total"], 4);
    assert_eq!(ids(&page), ["C", "B", "A", "D"], "longest wait first");
    assert_eq!(
        page["bands"],
        json!({"0-28": 1, "29-62": 1, "63-104": 1, "105+": 1})
    );
    let row = |id: &str| {
        page["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["pathway_id"] == id)
            .unwrap()
            .clone()
    };
    let a = row("A");
    assert_eq!(a["trust"], "RXH");
    assert_eq!(a["fds_days"], 35);
    assert_eq!(a["fds_status"], "open_breached");
    assert_eq!(a["d62_days"], 35);
    assert_eq!(a["band"], "29-62");
    assert_eq!(a["rag"], "black");
    assert_eq!(a["next_milestone"]["name"], "first_test");
    assert_eq!(a["next_milestone"]["due_date"], "2025-03-17");
    assert_eq!(a["milestone_overdue"], true);
    assert_eq!(a["next_breach_clock"], "fds");
    assert_eq!(a["next_breach_date"], "2025-04-01");
    assert_eq!(a["fit_band"], "above_100");
    let b = row("B");
    assert_eq!(
        (b["d62_days"].clone(), b["band"].clone()),
        (json!(77), json!("63-104"))
    );
    assert_eq!(b["d31_status"], "open_breached");
    assert_eq!(b["d31_days"], 35);
    assert_eq!(b["decision_to_treat"], true);
    assert_eq!(b["next_breach_date"], "2025-03-24");
    let c = row("C");
    assert_eq!(
        (c["d62_days"].clone(), c["band"].clone()),
        (json!(108), json!("105+"))
    );
    assert_eq!(c["escalated"], true);
    assert_eq!(c["next_action"], "Chase histology");
    assert_eq!(c["next_action_overdue"], true);
    assert_eq!(c["owner"], "MDT coordinator");
    assert_eq!(c["last_note"], "Awaiting histology");
    let d = row("D");
    assert_eq!(d["rag"], "red", "green clocks, but a milestone is overdue");
    assert_eq!(d["band"], "0-28");
    assert_eq!(d["next_breach_date"], "2025-04-29");
}

#[tokio::test]
async fn ptl_filters_worklists_sorts_and_pages() {
    let (app, _) = loaded().await;
    let cases: &[(&str, &[&str])] = &[
        ("trust=RXH", &["C", "A"]),
        ("trust=RXH,RTH", &["C", "A", "D"]),
        ("alliance=demo&trust=RTH", &["D"]),
        ("tumour_site=prostate,breast", &["B", "D"]),
        ("route=breast_symptomatic", &["B"]),
        ("band=63-104,105%2B", &["C", "B"]),
        ("rag=red", &["D"]),
        ("rag=black", &["C", "B", "A"]),
        ("escalated=true", &["C"]),
        ("escalated=false", &["B", "A", "D"]),
        ("no_next_action=true", &["B", "A", "D"]),
        ("next_action_overdue=true", &["C"]),
        ("milestone_overdue=true", &["A", "D"]),
        ("worklist=over_62", &["C", "B"]),
        ("worklist=105%2B", &["C"]),
        ("worklist=63-104", &["B"]),
        ("worklist=no_next_action", &["B", "A", "D"]),
        ("worklist=escalated", &["C"]),
        ("worklist=milestone_overdue", &["A", "D"]),
        ("worklist=next_action_overdue", &["C"]),
        ("worklist=ptl_meeting", &["C", "B", "A", "D"]),
        ("sort=next_breach", &["C", "B", "A", "D"]),
        ("sort=referred_on", &["C", "B", "A", "D"]),
        // As of 1 March, F and G were not yet treated: C 71 days, G 58, F 54, B 40.
        ("as_of=2025-03-01", &["C", "G", "F", "B"]),
    ];
    for (query, want) in cases {
        let page = get(&app, &format!("/v1/ptl?{query}")).await;
        assert_eq!(&ids(&page), want, "{query}");
        assert_eq!(page["total"], want.len(), "{query}");
    }
    // The band counts ignore the band filter, so the dashboard can show them all.
    let page = get(&app, "/v1/ptl?band=105%2B").await;
    assert_eq!(page["bands"]["0-28"], 1);

    // Cursor pages: every row once, in order.
    let first = get(&app, "/v1/ptl?limit=3").await;
    assert_eq!(ids(&first), ["C", "B", "A"]);
    let cursor = first["next_cursor"].as_str().unwrap();
    let second = get(&app, &format!("/v1/ptl?limit=3&cursor={cursor}")).await;
    assert_eq!(ids(&second), ["D"]);
    assert!(second["next_cursor"].is_null());
    let (status, body) =
        get_status(&app, &format!("/v1/ptl?sort=next_breach&cursor={cursor}")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");

    // Bad parameters are named.
    for (query, field) in [
        ("band=90", "band"),
        ("rag=purple", "rag"),
        ("trust=R", "trust"),
        ("alliance=nowhere", "alliance"),
        ("sort=name", "sort"),
        ("limit=0", "limit"),
        ("worklist=mine", "worklist"),
        ("escalated=maybe", "escalated"),
        ("trsut=RXH", "trsut"),
        ("cursor=zzz", "cursor"),
    ] {
        let (status, body) = get_status(&app, &format!("/v1/ptl?{query}")).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{query}: {body}");
        assert_eq!(body["error"]["code"], "invalid_field", "{query}");
        assert_eq!(body["error"]["details"]["field"], field, "{query}: {body}");
    }
}

#[tokio::test]
async fn cursor_pages_list_every_row_once_in_order_among_tied_keys() {
    let (app, _) = loaded().await;
    // Seven more pathways referred on one day: they tie on every sort key
    // but the pathway id.
    let tied: Vec<Value> = (1..=7)
        .map(|n| {
            referral(
                &format!("T{n}"),
                "2025-02-10",
                "RXA",
                "breast",
                "urgent_suspected_cancer",
            )
        })
        .collect();
    post(&app, tied).await;
    for sort in ["days_waited", "next_breach", "referred_on"] {
        let whole = ids(&get(&app, &format!("/v1/ptl?sort={sort}")).await);
        assert_eq!(whole.len(), 11, "{sort}");
        for limit in [1, 2, 3, 5] {
            let mut paged = Vec::new();
            let mut cursor = String::new();
            loop {
                let page = get(&app, &format!("/v1/ptl?sort={sort}&limit={limit}{cursor}")).await;
                assert_eq!(page["total"], 11, "{sort} {limit}");
                paged.extend(ids(&page));
                match page["next_cursor"].as_str() {
                    Some(next) => cursor = format!("&cursor={next}"),
                    None => break,
                }
            }
            assert_eq!(paged, whole, "{sort}, {limit} a page");
        }
    }
}

#[tokio::test]
async fn the_ptl_exports_as_csv() {
    let (app, _) = loaded().await;
    let csv = get_csv(&app, "/v1/ptl?trust=RXH").await;
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 3, "{csv}");
    assert!(lines[0].starts_with("pathway_id,nhs_number,trust,"));
    assert!(lines[1].starts_with("C,9434765919,RXH,skin,urgent_suspected_cancer,2024-12-20,"));
    assert!(lines[1].contains(",105+,black,"), "{}", lines[1]);
    assert!(lines[1].contains("Chase histology"));
}

#[tokio::test]
async fn standards_count_stopped_clocks_with_breach_allocation() {
    let (app, _) = loaded().await;
    let d62 = get(&app, "/v1/standards/d62?period=2025-03").await;
    assert_eq!(d62["total"], 2.0);
    assert_eq!(d62["within_target"], 1.0);
    assert_eq!(d62["breached"], 1.0);
    assert_eq!(d62["percent"], 50.0);
    assert_eq!(
        d62["by_trust"],
        json!([
            {"trust": "RHM", "total": 0.5, "within_target": 0.5, "breached": 0.0, "percent": 100.0},
            {"trust": "RXH", "total": 1.5, "within_target": 0.5, "breached": 1.0, "percent": 33.3},
        ])
    );
    assert_eq!(
        d62["thresholds"],
        json!({"standard": 85.0, "operational": 75.0})
    );
    let rhm = get(&app, "/v1/standards/d62?period=2025-03&trust=RHM").await;
    assert_eq!(
        (rhm["total"].clone(), rhm["percent"].clone()),
        (json!(0.5), json!(100.0))
    );

    let fds = get(&app, "/v1/standards/fds?period=2025-02").await;
    assert_eq!(
        (fds["total"].clone(), fds["within_target"].clone()),
        (json!(3.0), json!(2.0))
    );
    assert_eq!(fds["percent"], 66.7);
    assert_eq!(fds["by_outcome"]["diagnosed"]["total"], 2.0);
    assert_eq!(fds["by_outcome"]["diagnosed"]["percent"], 50.0);
    assert_eq!(fds["by_outcome"]["ruled_out"]["total"], 1.0);
    assert_eq!(fds["by_outcome"]["ruled_out"]["percent"], 100.0);
    assert_eq!(fds["excluded"], 0);
    let sites: Vec<&str> = fds["by_tumour_site"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["tumour_site"].as_str().unwrap())
        .collect();
    assert_eq!(sites, ["breast", "lung", "lower_gi"]);

    let d31 = get(&app, "/v1/standards/d31?period=2025-03").await;
    assert_eq!(
        (d31["total"].clone(), d31["percent"].clone()),
        (json!(2.0), json!(100.0))
    );
    let empty = get(&app, "/v1/standards/d31?period=2024-01").await;
    assert_eq!(empty["total"], 0.0);
    assert!(empty["percent"].is_null());

    let (status, _) = get_status(&app, "/v1/standards/d99").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = get_status(&app, "/v1/standards/fds?period=2025-3").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
}

#[tokio::test]
async fn exclusions_are_counted_by_trust() {
    let (app, _) = loaded().await;
    post(
        &app,
        vec![
            referral("X", "2025-03-10", "RTH", "skin", "urgent_suspected_cancer"),
            ev(
                "X",
                "fds_excluded",
                "2025-03-12",
                json!({"reason": "patient_choice"}),
            ),
        ],
    )
    .await;
    let fds = get(&app, "/v1/standards/fds?period=2025-03").await;
    assert_eq!(fds["excluded"], 1);
    let rth = fds["by_trust"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["trust"] == "RTH")
        .unwrap();
    assert_eq!(rth["excluded"], 1);
    assert_eq!(rth["total"], 0.0);
}

#[tokio::test]
async fn milestone_compliance_and_the_fit_indicator() {
    let (app, _) = loaded().await;
    let report = get(&app, "/v1/milestones?tumour_site=lower_gi").await;
    let sites = report["by_tumour_site"].as_array().unwrap();
    assert_eq!(sites.len(), 1);
    let lower_gi = &sites[0];
    assert_eq!(lower_gi["pathways"], 2);
    let m = |name: &str| {
        lower_gi["milestones"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == name)
            .unwrap()
            .clone()
    };
    // A: triage met, first test and diagnosis overdue. E (ruled out on day 17):
    // triage (due day 3) and first test (day 14) missed, diagnosis met.
    assert_eq!(
        (m("triage")["met"].clone(), m("triage")["missed"].clone()),
        (json!(1), json!(1))
    );
    assert_eq!(m("triage")["percent_met"], 50.0);
    assert_eq!(
        (
            m("first_test")["overdue"].clone(),
            m("first_test")["missed"].clone()
        ),
        (json!(1), json!(1))
    );
    assert_eq!(m("first_test")["percent_met"], 0.0);
    assert_eq!(
        (
            m("diagnosis_communicated")["met"].clone(),
            m("diagnosis_communicated")["overdue"].clone()
        ),
        (json!(1), json!(1))
    );
    assert_eq!(lower_gi["meeting_all"], 0);
    // FIT: A tested 11 days before referral (counts), E 33 days before (not).
    assert_eq!(
        report["fit"],
        json!({
            "lower_gi_urgent_referrals": 2, "with_fit_before_referral": 1, "indicator_days": 21,
            "percent": 50.0,
            "bands": {"10_to_100": 0, "above_100": 1, "below_10": 1, "none": 0, "not_appropriate": 0}
        })
    );
    // B (breast): first appointment day 7 of 14, diagnosis day 25 of 28: meets all.
    let breast = get(&app, "/v1/milestones?tumour_site=breast").await;
    assert_eq!(breast["meeting_all"], 1);
    assert_eq!(breast["percent"], 100.0);
    let march = get(&app, "/v1/milestones?period=2025-03").await;
    assert_eq!(march["pathways"], 2, "A and D were referred in March");
}

#[tokio::test]
async fn the_weekly_return_counts_bands_at_their_boundaries() {
    let log: Arc<dyn EventLog> = Arc::new(MemoryLog::new());
    let app = app_on(log);
    // As of Sunday 2025-04-06 these have waited 28, 29, 62, 63, 104 and 105 days.
    let dates = [
        ("b28", "2025-03-09"),
        ("b29", "2025-03-08"),
        ("b62", "2025-02-03"),
        ("b63", "2025-02-02"),
        ("b104", "2024-12-23"),
        ("b105", "2024-12-22"),
    ];
    let mut events: Vec<Value> = dates
        .iter()
        .map(|(id, on)| referral(id, on, "RXH", "urological_other", "urgent_suspected_cancer"))
        .collect();
    events.push(ev(
        "b63",
        "decision_to_treat",
        "2025-04-01",
        json!({"modality": "surgery"}),
    ));
    // Referred during the week: one urgent, one routine later upgraded in the week.
    events.push(referral(
        "new",
        "2025-04-02",
        "RXH",
        "skin",
        "urgent_suspected_cancer",
    ));
    events.push(referral("up", "2025-03-20", "RXH", "skin", "other"));
    events.push(ev("up", "consultant_upgraded", "2025-04-03", json!({})));
    post(&app, events).await;
    let r = get(&app, "/v1/returns/canptl?week_ending=2025-04-06").await;
    assert_eq!(r["week_starting"], "2025-03-31");
    assert_eq!(
        r["without_decision_to_treat"]["by_band"],
        json!({"0-28": 3, "29-62": 2, "63-104": 1, "105+": 1}),
        "b28, new (4 days) and up (3 days) are 0-28"
    );
    assert_eq!(
        r["with_decision_to_treat"]["by_band"],
        json!({"0-28": 0, "29-62": 0, "63-104": 1, "105+": 0}),
        "b63 has a decision to treat"
    );
    assert_eq!(r["backlog_over_62"], 3);
    assert_eq!(r["over_104"], 1);
    assert_eq!(r["referrals_by_route"]["urgent_suspected_cancer"], 1);
    assert!(
        r["referrals_by_route"].get("other").is_none(),
        "routine referrals are not part of the return: {}",
        r["referrals_by_route"]
    );
    assert_eq!(r["upgrades"], 1);
    // FDS day 29 fell in the week for b29 (03-08 + 29 = 04-06) and b28 is on day 28.
    assert_eq!(r["passed_28_days"], 1);
    let (status, body) = get_status(&app, "/v1/returns/canptl?week_ending=2025-04-05").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, _) = get_status(&app, "/v1/returns/canptl?week_ending=2025-04-13").await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "a week not yet over"
    );
}

#[tokio::test]
async fn the_weekly_return_counts_first_seen_on_the_cancer_routes_only() {
    let log: Arc<dyn EventLog> = Arc::new(MemoryLog::new());
    let app = app_on(log);
    let usc = "urgent_suspected_cancer";
    let seen = |id: &str, on: &str, data: Value| ev(id, "appointment_attended", on, data);
    let events = vec![
        // Seen in the week (Mon 2025-03-31 to Sun 2025-04-06), one of each medium.
        referral("v", "2025-03-25", "RXH", "skin", usc),
        seen(
            "v",
            "2025-04-01",
            json!({"kind": "first_outpatient", "mode": "virtual"}),
        ),
        referral("f", "2025-04-01", "RXH", "breast", "breast_symptomatic"),
        seen(
            "f",
            "2025-04-03",
            json!({"kind": "one_stop", "mode": "face_to_face"}),
        ),
        referral("n", "2025-03-28", "RXH", "lung", usc),
        seen("n", "2025-04-06", json!({"kind": "first_outpatient"})),
        // Straight to test: first seen at the test, medium not recorded.
        referral("s", "2025-03-31", "RXH", "lower_gi", "screening")
            .as_object()
            .cloned()
            .map(|mut e| {
                e["data"]["screening_programme"] = json!("bowel");
                Value::Object(e)
            })
            .unwrap(),
        ev(
            "s",
            "triage_completed",
            "2025-03-31",
            json!({"outcome": "straight_to_test"}),
        ),
        ev(
            "s",
            "diagnostic_performed",
            "2025-04-02",
            json!({"test": "colonoscopy"}),
        ),
        // Not counted: seen before the week, a follow-up, a routine referral
        // and a recurrence.
        referral("before", "2025-03-20", "RXH", "skin", usc),
        seen(
            "before",
            "2025-03-30",
            json!({"kind": "first_outpatient", "mode": "virtual"}),
        ),
        seen(
            "before",
            "2025-04-02",
            json!({"kind": "follow_up", "mode": "virtual"}),
        ),
        referral("routine", "2025-04-01", "RXH", "skin", "other"),
        seen(
            "routine",
            "2025-04-02",
            json!({"kind": "first_outpatient", "mode": "virtual"}),
        ),
        referral("again", "2025-04-02", "RXH", "skin", "recurrence"),
        seen(
            "again",
            "2025-04-03",
            json!({"kind": "first_outpatient", "mode": "virtual"}),
        ),
    ];
    post(&app, events).await;
    let r = get(&app, "/v1/returns/canptl?week_ending=2025-04-06").await;
    assert_eq!(
        r["first_seen"],
        json!({
            "total": 4,
            "by_medium": {"face_to_face": 1, "virtual": 1, "not_recorded": 2},
            "by_route": {
                "breast_symptomatic": {"face_to_face": 1, "virtual": 0, "not_recorded": 0},
                "screening": {"face_to_face": 0, "virtual": 0, "not_recorded": 1},
                "urgent_suspected_cancer": {"face_to_face": 0, "virtual": 1, "not_recorded": 1},
            },
        })
    );
    assert_eq!(
        r["referrals_by_route"],
        json!({"breast_symptomatic": 1, "screening": 1, "urgent_suspected_cancer": 0}),
        "routine referrals and recurrences are not part of the return"
    );
}

/// A month of the CWT submission: first and subsequent treatments, a
/// transfer, a first-seen and a treatment adjustment, an FDS pathway ended
/// without treatment, an upgrade; read item by item.
#[tokio::test]
async fn the_monthly_cwt_submission_in_national_items_and_codes() {
    let log: Arc<dyn EventLog> = Arc::new(MemoryLog::new());
    let app = app_on(log);
    let usc = "urgent_suspected_cancer";
    let mut p1 = referral("P1", "2025-01-06", "RXH", "lung", usc);
    p1["data"]["referrer"] = json!("A81001");
    p1["data"]["nhs_number_status"] = json!("verified");
    let mut p2 = referral("P2", "2025-02-10", "RTH", "lower_gi", "screening");
    p2["data"]["screening_programme"] = json!("bowel");
    p2["data"]["nhs_number_status"] = json!("trace_postponed");
    let events = vec![
        p1,
        ev(
            "P1",
            "appointment_missed",
            "2025-01-08",
            json!({"kind": "first_outpatient", "reason": "did_not_attend"}),
        ),
        ev(
            "P1",
            "appointment_attended",
            "2025-01-10",
            json!({"kind": "first_outpatient", "mode": "face_to_face"}),
        ),
        ev(
            "P1",
            "diagnosis_communicated",
            "2025-02-03",
            json!({"outcome": "cancer_diagnosed", "icd10": "C34.1"}),
        ),
        ev(
            "P1",
            "pathway_transferred",
            "2025-02-05",
            json!({"to_trust": "RHM"}),
        ),
        ev(
            "P1",
            "decision_to_treat",
            "2025-02-20",
            json!({"modality": "surgery"}),
        ),
        ev(
            "P1",
            "treatment_started",
            "2025-03-05",
            json!({"modality": "surgery", "care_setting": "admitted"}),
        ),
        ev(
            "P1",
            "decision_to_treat",
            "2025-03-06",
            json!({"modality": "anticancer_drug", "treatment": "subsequent", "plan_id": "chemo", "earliest_clinically_appropriate_date": "2025-03-10"}),
        ),
        ev(
            "P1",
            "treatment_offer_declined",
            "2025-03-12",
            json!({"offered_on": "2025-03-12", "available_from": "2025-03-15", "setting": "admitted", "plan_id": "chemo"}),
        ),
        ev(
            "P1",
            "treatment_started",
            "2025-03-20",
            json!({"modality": "anticancer_drug", "treatment": "subsequent", "plan_id": "chemo", "care_setting": "non_admitted"}),
        ),
        p2,
        ev(
            "P2",
            "triage_completed",
            "2025-02-11",
            json!({"outcome": "straight_to_test"}),
        ),
        ev(
            "P2",
            "diagnostic_performed",
            "2025-02-14",
            json!({"test": "colonoscopy"}),
        ),
        ev(
            "P2",
            "diagnosis_communicated",
            "2025-03-03",
            json!({"outcome": "cancer_ruled_out", "method": "letter"}),
        ),
        referral("P3", "2025-01-15", "RXH", "skin", "other"),
        ev("P3", "consultant_upgraded", "2025-02-01", json!({})),
        ev(
            "P3",
            "decision_to_treat",
            "2025-02-10",
            json!({"modality": "other"}),
        ),
        ev(
            "P3",
            "treatment_started",
            "2025-03-03",
            json!({"modality": "other"}),
        ),
        // Nothing ended or treated in March: no record.
        referral("P4", "2025-03-01", "RXH", "skin", usc),
    ];
    post(&app, events).await;
    let csv = get_csv(&app, "/v1/returns/cwt?period=2025-03").await;
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let records: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(header.len(), 28);
    assert_eq!(records.len(), 4, "{csv}");
    let item = |record: usize, name: &str| -> &str {
        let column = header
            .iter()
            .position(|h| *h == name)
            .unwrap_or_else(|| panic!("no column {name}"));
        records[record][column]
    };
    // P1's first treatment (at RHM after the transfer), then its subsequent
    // one; P2 (RTH, FDS ended, no treatment); P3 (RXH, upgrade).
    let expected: [(&str, [&str; 4]); 28] = [
        ("NHS NUMBER", ["9434765919"; 4]),
        ("PATIENT PATHWAY IDENTIFIER", ["P1", "P1", "P2", "P3"]),
        (
            "ORGANISATION IDENTIFIER (PATIENT PATHWAY IDENTIFIER ISSUER)",
            ["RXH", "RXH", "RTH", "RXH"],
        ),
        (
            "SOURCE OF REFERRAL FOR OUT-PATIENTS",
            ["03", "03", "17", ""],
        ),
        ("PRIORITY TYPE CODE", ["3", "3", "2", ""]),
        (
            "CANCER REFERRAL TO TREATMENT PERIOD START DATE",
            ["2025-01-06", "2025-01-06", "2025-02-10", "2025-01-15"],
        ),
        ("CONSULTANT UPGRADE DATE", ["", "", "", "2025-02-01"]),
        (
            "ORGANISATION SITE IDENTIFIER (OF PROVIDER CONSULTANT UPGRADE)",
            ["", "", "", "RXH"],
        ),
        (
            "DATE FIRST SEEN",
            ["2025-01-10", "2025-01-10", "2025-02-14", ""],
        ),
        (
            "ORGANISATION SITE IDENTIFIER (OF PROVIDER FIRST SEEN)",
            ["RXH", "RXH", "RTH", ""],
        ),
        ("WAITING TIME ADJUSTMENT (FIRST SEEN)", ["2", "2", "0", "0"]),
        (
            "WAITING TIME ADJUSTMENT REASON (FIRST SEEN)",
            ["3", "3", "9", "9"],
        ),
        (
            "CANCER FASTER DIAGNOSIS PATHWAY END DATE",
            ["2025-02-03", "2025-02-03", "2025-03-03", ""],
        ),
        ("CANCER FASTER DIAGNOSIS PATHWAY END REASON", [""; 4]),
        ("CANCER FASTER DIAGNOSIS PATHWAY EXCLUSION REASON", [""; 4]),
        ("OUTCOME COMMUNICATION METHOD", [""; 4]),
        ("PRIMARY DIAGNOSIS (ICD)", ["C34.1", "C34.1", "", ""]),
        ("CANCER TREATMENT EVENT TYPE", ["01", "02", "", "01"]),
        (
            "CANCER TREATMENT PERIOD START DATE",
            ["2025-02-20", "2025-03-10", "", "2025-02-10"],
        ),
        (
            "TREATMENT START DATE (CANCER)",
            ["2025-03-05", "2025-03-20", "", "2025-03-03"],
        ),
        ("CANCER TREATMENT MODALITY", ["23", "", "", "97"]),
        ("CANCER CARE SETTING (TREATMENT)", ["", "", "", "99"]),
        ("WAITING TIME ADJUSTMENT (TREATMENT)", ["0", "3", "", "0"]),
        ("WAITING TIME ADJUSTMENT REASON (TREATMENT)", [""; 4]),
        (
            "ORGANISATION SITE IDENTIFIER (TREATMENT START DATE CANCER)",
            ["RHM", "RHM", "", "RXH"],
        ),
        ("TRANSFER TO TREATMENT DATE", ["2025-02-05", "", "", ""]),
        (
            "ORGANISATION IDENTIFIER (ACCOUNTABLE INVESTIGATING PROVIDER)",
            ["RXH", "", "", ""],
        ),
        // Given for P1 and P2 (on each of P1's records); not for P3.
        ("NHS NUMBER STATUS INDICATOR CODE", ["01", "01", "08", ""]),
    ];
    for (name, values) in expected {
        for (record, value) in values.iter().enumerate() {
            assert_eq!(
                item(record, name),
                *value,
                "{name} of record {record}\n{csv}"
            );
        }
    }
    let json = get(&app, "/v1/returns/cwt?period=2025-03&format=json").await;
    assert_eq!(json["rows"][1]["CANCER TREATMENT EVENT TYPE"], "02");
    assert_eq!(json["rows"][1]["PATIENT PATHWAY IDENTIFIER"], "P1");
    // As JSON, the same records: an object each, the CSV's columns as its
    // keys, the CSV's fields as their values.
    assert_eq!(json["period"], "2025-03");
    let rows = json["rows"].as_array().unwrap();
    assert_eq!(rows.len(), records.len(), "{json}");
    for (row, record) in rows.iter().zip(&records) {
        assert_eq!(row.as_object().unwrap().len(), header.len(), "{row}");
        for (name, value) in header.iter().zip(record) {
            assert_eq!(row[*name], *value, "{name} of {row}");
        }
    }
    let (status, _) = get_status(&app, "/v1/returns/cwt").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
}

/// Every view, as JSON, for comparing two projections.
async fn all_views(app: &Router, at: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for uri in [
        "/v1/ptl?limit=1000",
        "/v1/ptl?sort=next_breach&trust=RXH",
        "/v1/standards/fds?period=2025-02",
        "/v1/standards/d62?period=2025-03",
        "/v1/standards/d31?period=2025-03",
        "/v1/milestones?period=2025-03",
        "/v1/milestones?trust=RXH",
        "/v1/returns/canptl?week_ending=2025-04-06",
        "/v1/returns/cwt?period=2025-03&format=json",
        "/v1/fit?period=2025-03",
        "/v1/fit?period=2025-02&trust=RXH",
    ] {
        // The weekly return is always as of its Sunday: it takes no `as_of`.
        let at: String = if uri.contains("canptl") {
            at.split('&')
                .filter(|p| !p.starts_with("as_of="))
                .collect::<Vec<_>>()
                .join("&")
        } else {
            at.to_string()
        };
        let mut view = get(app, &format!("{uri}&{at}")).await;
        if let Some(map) = view.as_object_mut() {
            map.remove("position");
            map.remove("known_at");
        }
        out.push(view);
    }
    out
}

#[tokio::test]
async fn a_rebuilt_projection_equals_the_live_one() {
    let (live, log) = loaded().await;
    post(
        &live,
        vec![
            ev(
                "A",
                "pathway_transferred",
                "2025-03-20",
                json!({"to_trust": "RHM"}),
            ),
            ev(
                "D",
                "tracking_note_added",
                "2025-04-07",
                json!({"text": "Booked MRI", "next_action": "MRI 9 April"}),
            ),
        ],
    )
    .await;
    let before = all_views(&live, "as_of=2025-04-07").await;
    // A second service on the same log folds it from position 0.
    let rebuilt = app_on(log);
    let (_, _, _) = send(
        &rebuilt,
        Request::get("/readyz").body(Body::empty()).unwrap(),
    )
    .await;
    let head = get(&live, "/readyz").await["log_position"].clone();
    let after = all_views(&rebuilt, &format!("as_of=2025-04-07&min_position={head}")).await;
    assert_eq!(before, after);
    // And the slow path (an explicit known_at far ahead) equals the fast one.
    let slow = all_views(&live, "as_of=2025-04-07&known_at=2099-01-01T00:00:00Z").await;
    assert_eq!(before, slow);
}

/// A log that cannot be read in place (as PostgreSQL): projections fold it
/// in pages.
struct Paged(Arc<dyn EventLog>);

#[async_trait::async_trait]
impl EventLog for Paged {
    async fn append(
        &self,
        batch: Vec<openptl_log::NewRecord>,
    ) -> Result<Vec<openptl_log::Appended>, openptl_log::LogError> {
        self.0.append(batch).await
    }
    async fn append_verbatim(
        &self,
        records: Vec<openptl_log::StoredRecord>,
    ) -> Result<(), openptl_log::LogError> {
        self.0.append_verbatim(records).await
    }
    async fn read_stream(
        &self,
        stream_id: &str,
    ) -> Result<Vec<openptl_log::StoredRecord>, openptl_log::LogError> {
        self.0.read_stream(stream_id).await
    }
    async fn read_positions(
        &self,
        positions: &[u64],
    ) -> Result<Vec<openptl_log::StoredRecord>, openptl_log::LogError> {
        self.0.read_positions(positions).await
    }
    async fn read_all(
        &self,
        from: u64,
        max: usize,
    ) -> Result<Vec<openptl_log::StoredRecord>, openptl_log::LogError> {
        // Small pages, so that pathways straddle them.
        self.0.read_all(from, max.min(3)).await
    }
    async fn find_event(
        &self,
        event_id: uuid::Uuid,
    ) -> Result<Option<openptl_log::StoredRecord>, openptl_log::LogError> {
        self.0.find_event(event_id).await
    }
    fn head(&self) -> u64 {
        self.0.head()
    }
    fn watch_head(&self) -> tokio::sync::watch::Receiver<u64> {
        self.0.watch_head()
    }
}

#[tokio::test]
async fn a_projection_folded_in_pages_equals_one_read_in_place() {
    let (live, log) = loaded().await;
    let paged = app_on(Arc::new(Paged(log.clone())));
    let head = get(&live, "/readyz").await["log_position"].clone();
    for at in [
        format!("as_of=2025-04-07&min_position={head}"),
        // Every pathway evaluated afresh from its history.
        "as_of=2025-03-10&known_at=2025-03-20T00:00:00Z".to_string(),
    ] {
        assert_eq!(all_views(&live, &at).await, all_views(&paged, &at).await);
    }
    assert_eq!(all_pathways(&live).await, all_pathways(&paged).await);
}

/// Each pathway's view and stored history, for comparing two projections.
async fn all_pathways(app: &Router) -> Vec<Value> {
    let mut out = Vec::new();
    for id in ["A", "B", "C", "D", "E", "F", "G"] {
        for uri in [
            format!("/v1/pathways/{id}?as_of=2025-04-07"),
            format!("/v1/pathways/{id}?as_of=2025-03-10"),
            format!("/v1/pathways/{id}/events"),
        ] {
            let (status, body) = get_status(app, &uri).await;
            out.push(json!([status.as_u16(), body]));
        }
    }
    out
}

#[tokio::test]
async fn a_projection_restored_from_a_snapshot_equals_a_rebuilt_one() {
    let dir = tempfile::tempdir().unwrap();
    let snapshot = dir.path().join("projection.snapshot");
    let now = NOW.parse().unwrap();
    let open = |log: Arc<dyn EventLog>| {
        App::open(
            log,
            RulesConfig::defaults(),
            Arc::new(FixedClock(now)),
            Some(snapshot.clone()),
        )
    };
    let log: Arc<dyn EventLog> = Arc::new(MemoryLog::new());
    let first = open(log.clone());
    let projection = first.projection().clone();
    let live = authorised(first);
    post(&live, fixture()).await;
    // Two writers at once (the periodic one and the one at shutdown) take
    // turns and leave a whole snapshot.
    let writers: Vec<_> = (0..2)
        .map(|_| {
            let projection = projection.clone();
            tokio::task::spawn_blocking(move || projection.write_snapshot())
        })
        .collect();
    let mut done = Vec::new();
    for writer in writers {
        done.push(
            writer
                .await
                .unwrap()
                .unwrap()
                .expect("a snapshot of a settled projection"),
        );
    }
    let written = done[1];
    assert_eq!(written.pathways, 7);
    assert_eq!(done[0].position, written.position);
    // The tail after the snapshot: a transfer, a note on a new day's pathway,
    // and a new pathway.
    post(
        &live,
        vec![
            ev(
                "A",
                "pathway_transferred",
                "2025-03-20",
                json!({"to_trust": "RHM"}),
            ),
            ev(
                "D",
                "tracking_note_added",
                "2025-04-07",
                json!({"text": "Booked MRI"}),
            ),
            referral("H", "2025-03-01", "RXH", "lung", "urgent_suspected_cancer"),
        ],
    )
    .await;
    let head = get(&live, "/readyz").await["log_position"].clone();
    let at = format!("as_of=2025-04-07&min_position={head}");

    let restored_app = open(log.clone());
    let restored_projection = restored_app.projection().clone();
    let restored = authorised(restored_app);
    assert_eq!(all_views(&restored, &at).await, all_views(&live, &at).await);
    assert_eq!(all_pathways(&restored).await, all_pathways(&live).await);
    assert_eq!(restored_projection.restored_at(), Some(written.position));

    // Restored on a later day: every state is evaluated again for the new date.
    let next_day = "2025-04-08T09:00:00Z".parse().unwrap();
    // (Read ahead as `serve` does, while the log would be opening.)
    let later = |snapshot: Option<std::path::PathBuf>| {
        let preload = snapshot.clone().and_then(|path| {
            openptl_app::projection::SnapshotPreload::start(path, RulesConfig::defaults())
        });
        let app = App::open_preloaded(
            log.clone(),
            RulesConfig::defaults(),
            Arc::new(FixedClock(next_day)),
            snapshot,
            preload,
        );
        let projection = app.projection().clone();
        (authorised(app), projection)
    };
    let (restored_later, restored_later_projection) = later(Some(snapshot.clone()));
    let (rebuilt_later, _) = later(None);
    let at_head = format!("min_position={head}");
    assert_eq!(
        all_views(&restored_later, &at_head).await,
        all_views(&rebuilt_later, &at_head).await
    );
    assert!(restored_later_projection.restored_at().is_some());

    // The snapshot does not fit another log (other event ids): not used,
    // and that service folds its own log instead.
    let other: Arc<dyn EventLog> = Arc::new(MemoryLog::new());
    let plain = app_on(other.clone());
    post(&plain, fixture()).await;
    let other_app = open(other);
    let other_projection = other_app.projection().clone();
    let other_router = authorised(other_app);
    let at = "as_of=2025-04-07&min_position=1";
    assert_eq!(
        all_views(&other_router, at).await,
        all_views(&plain, at).await
    );
    assert_eq!(other_projection.restored_at(), None);
}

#[tokio::test]
async fn a_view_as_known_at_a_past_moment_equals_what_was_shown_then() {
    let (app, _) = loaded().await;
    let shown_then = all_views(&app, "as_of=2025-04-07").await;
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let then = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    // Late entries and corrections: A was really referred a week earlier and
    // moved trust; C's histology chase is done; a new pathway appears.
    let history = get(&app, "/v1/pathways/A/events").await;
    let a_referral = history["events"][0]["event_id"]
        .as_str()
        .unwrap()
        .to_string();
    post(
        &app,
        vec![
            ev(
                "A",
                "event_corrected",
                "2025-04-07",
                json!({"corrects": a_referral, "reason": "referral date keyed wrongly", "new_occurred_on": "2025-02-24"}),
            ),
            ev("A", "pathway_transferred", "2025-03-25", json!({"to_trust": "RTH"})),
            ev("C", "tracking_note_added", "2025-04-07", json!({"text": "Histology back"})),
            referral("H", "2025-03-01", "RXH", "lung", "urgent_suspected_cancer"),
        ],
    )
    .await;
    let now = all_views(&app, "as_of=2025-04-07").await;
    assert_ne!(now, shown_then, "the late events changed today's views");
    let known_then = all_views(
        &app,
        &format!("as_of=2025-04-07&known_at={}", then.replace('+', "%2B")),
    )
    .await;
    assert_eq!(known_then, shown_then);
}

#[tokio::test]
async fn reads_wait_for_min_position_and_say_what_they_include() {
    let (app, _) = loaded().await;
    let out = post(
        &app,
        vec![referral(
            "N",
            "2025-04-07",
            "RXH",
            "lung",
            "urgent_suspected_cancer",
        )],
    )
    .await;
    let position = out["appended"][0]["position"].as_u64().unwrap();
    let page = get(
        &app,
        &format!("/v1/ptl?min_position={position}&tumour_site=lung"),
    )
    .await;
    assert_eq!(ids(&page), ["N"]);
    assert!(page["position"].as_u64().unwrap() >= position);
    let ready = get(&app, "/readyz").await;
    assert_eq!(ready["status"], "ready");
}

#[tokio::test]
async fn the_dashboard_is_served_with_security_headers() {
    let (app, _) = loaded().await;
    for (path, content_type) in [
        ("/", "text/html"),
        ("/pathways/A", "text/html"),
        ("/standards", "text/html"),
        ("/milestones", "text/html"),
        ("/assets/app.js", "text/javascript"),
        ("/assets/app.css", "text/css"),
    ] {
        let reply = support::send(&app, Request::get(path).body(Body::empty()).unwrap()).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}");
        let headers = &reply.headers;
        assert!(
            headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with(content_type),
            "{path}"
        );
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"),
            "{path}"
        );
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert_eq!(headers["x-frame-options"], "DENY");
        assert!(headers.contains_key("x-request-id"));
    }
    let meta = get(&app, "/v1/meta").await;
    for trust in ["RXH", "RHM", "RTH", "RA7", "RBD", "RDU"] {
        assert!(
            meta["trusts"].as_array().unwrap().contains(&json!(trust)),
            "{meta}"
        );
    }
    assert_eq!(meta["bands"], json!(["0-28", "29-62", "63-104", "105+"]));
    assert!(meta["worklists"]
        .as_array()
        .unwrap()
        .contains(&json!("ptl_meeting")));
}

/// SPEC 2.12: a treated pathway waiting for a subsequent treatment is back
/// on the PTL, through the projection's packed state and PTL index; one
/// waiting for its earliest clinically appropriate date is not yet.
///
/// - H  RXH breast USC, referred 01-06, diagnosed 01-20, decision 02-03,
///   surgery 02-17 (first period 14 met), radiotherapy decided 03-10: its
///   period has waited 28 days on 04-07 (target 04-10, breach 04-11).
/// - I  the same, but the radiotherapy's ECAD is 04-20: not started.
#[tokio::test]
async fn a_subsequent_treatment_period_puts_a_treated_pathway_back_on_the_ptl() {
    let app = app_on(Arc::new(MemoryLog::new()));
    let mut events = Vec::new();
    for id in ["H", "I"] {
        events.extend([
            referral(id, "2025-01-06", "RXH", "breast", "urgent_suspected_cancer"),
            told(id, "2025-01-20", "cancer_diagnosed"),
            ev(
                id,
                "decision_to_treat",
                "2025-02-03",
                json!({ "modality": "surgery" }),
            ),
            ev(
                id,
                "treatment_started",
                "2025-02-17",
                json!({ "modality": "surgery", "care_setting": "admitted" }),
            ),
        ]);
    }
    events.push(ev(
        "H",
        "decision_to_treat",
        "2025-03-10",
        json!({ "modality": "radiotherapy", "treatment": "subsequent", "plan_id": "rt" }),
    ));
    events.push(ev(
        "I",
        "decision_to_treat",
        "2025-03-10",
        json!({ "modality": "radiotherapy", "treatment": "subsequent", "plan_id": "rt",
                "earliest_clinically_appropriate_date": "2025-04-20" }),
    ));
    post(&app, events).await;

    let page = get(&app, "/v1/ptl").await;
    assert_eq!(ids(&page), ["H"], "{page}");
    let h = &page["rows"][0];
    assert_eq!(h["status"], "treated");
    assert_eq!(h["next_breach_clock"], "d31");
    assert_eq!(h["next_breach_plan_id"], "rt");
    assert_eq!(h["next_breach_date"], "2025-04-11");
    assert_eq!(h["subsequent_days"], 28);
    assert_eq!(h["d62_status"], "met");

    // Today's view comes from the packed state: the periods survive packing.
    let view = get(&app, "/v1/pathways/H").await;
    assert_eq!(view["on_ptl"], true);
    assert_eq!(
        view["next_breach"],
        json!({ "clock": "d31", "plan_id": "rt", "date": "2025-04-11" })
    );
    assert_eq!(
        view["treatment_periods"],
        json!([
            { "treatment": "first", "modality": "surgery", "status": "met", "start": "2025-02-03",
              "start_reason": "decision_to_treat", "stop": "2025-02-17", "stop_reason": "treatment_started",
              "adjustment_days": 0, "days": 14, "target_days": 31, "target_date": "2025-03-06" },
            { "treatment": "subsequent", "plan_id": "rt", "modality": "radiotherapy", "status": "open",
              "start": "2025-03-10", "start_reason": "decision_to_treat", "stop": null,
              "adjustment_days": 0, "days": 28, "target_days": 31, "target_date": "2025-04-10" },
        ])
    );
    let view = get(&app, "/v1/pathways/I").await;
    assert_eq!(view["on_ptl"], false);
    assert_eq!(view["next_breach"], Value::Null);
    assert_eq!(
        view["treatment_periods"][1],
        json!({ "treatment": "subsequent", "plan_id": "rt", "modality": "radiotherapy",
                "status": "not_started", "start": "2025-04-20",
                "start_reason": "earliest_clinically_appropriate_date",
                "target_days": 31, "target_date": "2025-05-21" })
    );
    // A past view (evaluated from the log, not the packed state) agrees.
    let past = get(&app, "/v1/pathways/H?as_of=2025-03-20").await;
    assert_eq!(past["treatment_periods"][1]["days"], 10);
    let ptl_then = get(&app, "/v1/ptl?as_of=2025-04-25").await;
    assert_eq!(ids(&ptl_then), ["H", "I"], "I's period started on its ECAD");
}

/// SPEC 2.12 and 4.4: the PTL row names the subsequent period it waits for,
/// the `subsequent_treatment` worklist lists exactly those patients, and the
/// 31-day standard counts every treatment period, split first definitive /
/// subsequent and by modality group.
///
/// - H  as above: surgery 02-03 → 02-17 (14, met), radiotherapy `rt`
///   decided 03-10, waiting 28 days on 04-07 (breach day 04-11).
/// - J  RHM lung USC, referred 01-06, decision 01-20, surgery 02-03 (14,
///   met), chemotherapy `chemo` decided 02-10, given 03-20 (38: breached).
/// - K  RXH skin USC, referred 03-03: waiting, no treatment (not on the list).
#[tokio::test]
async fn the_subsequent_treatment_worklist_and_the_31_day_split() {
    let app = app_on(Arc::new(MemoryLog::new()));
    let usc = "urgent_suspected_cancer";
    let subsequent = |id: &str, event_type: &str, on: &str, plan: &str, modality: &str| {
        ev(
            id,
            event_type,
            on,
            json!({ "modality": modality, "treatment": "subsequent", "plan_id": plan }),
        )
    };
    post(
        &app,
        vec![
            referral("H", "2025-01-06", "RXH", "breast", usc),
            ev(
                "H",
                "decision_to_treat",
                "2025-02-03",
                json!({ "modality": "surgery" }),
            ),
            ev(
                "H",
                "treatment_started",
                "2025-02-17",
                json!({ "modality": "surgery" }),
            ),
            subsequent("H", "decision_to_treat", "2025-03-10", "rt", "radiotherapy"),
            referral("J", "2025-01-06", "RHM", "lung", usc),
            ev(
                "J",
                "decision_to_treat",
                "2025-01-20",
                json!({ "modality": "surgery" }),
            ),
            ev(
                "J",
                "treatment_started",
                "2025-02-03",
                json!({ "modality": "surgery" }),
            ),
            subsequent(
                "J",
                "decision_to_treat",
                "2025-02-10",
                "chemo",
                "anticancer_drug",
            ),
            subsequent(
                "J",
                "treatment_started",
                "2025-03-20",
                "chemo",
                "anticancer_drug",
            ),
            referral("K", "2025-03-03", "RXH", "skin", usc),
        ],
    )
    .await;

    let all = get(&app, "/v1/ptl").await;
    assert_eq!(ids(&all), ["K", "H"], "{all}");
    let list = get(&app, "/v1/ptl?worklist=subsequent_treatment").await;
    assert_eq!(ids(&list), ["H"], "{list}");
    assert_eq!(
        list["rows"][0]["subsequent"],
        json!({ "plan_id": "rt", "modality": "radiotherapy", "status": "open", "days": 28,
                "breach_date": "2025-04-11", "running": 1 })
    );
    assert!(all["rows"][0].get("subsequent").is_none());
    // A past view, evaluated afresh, filters the same way: on 03-15 J still waited.
    let then = get(
        &app,
        "/v1/ptl?worklist=subsequent_treatment&as_of=2025-03-15&sort=next_breach",
    )
    .await;
    assert_eq!(ids(&then), ["J", "H"], "{then}");
    assert_eq!(then["rows"][0]["subsequent"]["status"], "open_breached");
    let csv = get_csv(&app, "/v1/ptl?worklist=subsequent_treatment").await;
    let lines: Vec<&str> = csv.lines().map(before_breach_risk).collect();
    assert!(
        lines[0].ends_with(",next_breach_plan_id,subsequent_plan_id,subsequent_modality,subsequent_status,subsequent_days,subsequent_breach_date,colonoscopy"),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].ends_with(",rt,rt,radiotherapy,open,28,2025-04-11,"),
        "{}",
        lines[1]
    );

    // February: two first treatments (surgery), both met.
    let feb = get(&app, "/v1/standards/d31?period=2025-02").await;
    assert_eq!(
        (feb["total"].clone(), feb["within_target"].clone()),
        (json!(2.0), json!(2.0))
    );
    assert_eq!(feb["by_treatment"]["first_definitive"]["total"], 2.0);
    assert_eq!(feb["by_treatment"]["subsequent"]["total"], 0.0);
    assert_eq!(feb["by_modality"]["surgery"]["percent"], 100.0);
    // March: J's chemotherapy, 38 days: a breached subsequent treatment.
    let mar = get(&app, "/v1/standards/d31?period=2025-03").await;
    assert_eq!(
        (mar["total"].clone(), mar["breached"].clone()),
        (json!(1.0), json!(1.0))
    );
    assert_eq!(
        mar["by_treatment"]["subsequent"],
        json!({ "total": 1.0, "within_target": 0.0, "breached": 1.0, "percent": 0.0,
                "by_modality": {
                    "surgery": { "total": 0.0, "within_target": 0.0, "breached": 0.0, "percent": null },
                    "anticancer_drug": { "total": 1.0, "within_target": 0.0, "breached": 1.0, "percent": 0.0 },
                    "radiotherapy": { "total": 0.0, "within_target": 0.0, "breached": 0.0, "percent": null },
                    "other": { "total": 0.0, "within_target": 0.0, "breached": 0.0, "percent": null },
                } })
    );
    assert_eq!(mar["by_trust"][0]["trust"], "RHM");
    assert_eq!(mar["by_tumour_site"][0]["tumour_site"], "lung");
    // The same figures for a past as_of (every pathway evaluated afresh).
    let past = get(&app, "/v1/standards/d31?period=2025-03&as_of=2025-03-31").await;
    assert_eq!(past["by_treatment"], mar["by_treatment"]);
    // Other standards have no split.
    let fds = get(&app, "/v1/standards/fds?period=2025-02").await;
    assert!(fds.get("by_treatment").is_none());
}

// ------------------------------------------------------------------ FIT

/// Lower GI pathways for the FIT view, beside the fixture's A (RXH, FIT 150
/// eleven days before its referral on 03-03, triaged 03-04) and E (February):
/// - J  RHM, referred 03-10, FIT 4 on 03-01, triage 03-11, colonoscopy
///   requested 03-12, done 03-20 (on FIT < 10).
/// - K  RXH, referred 03-12, colonoscopy done 03-25, then FIT 50 on 03-28:
///   no FIT at referral, none on the day of the test; not triaged, so its
///   band at triage is the latest (10–100).
/// - L  RXH, referred 03-20, FIT 3 on 03-18, colonoscopy requested 03-21.
fn fit_events() -> Vec<Value> {
    let usc = "urgent_suspected_cancer";
    let fit = |p: &str, on: &str, v: f64| {
        ev(p, "fit_result_recorded", on, json!({ "value_ug_per_g": v }))
    };
    let test = |p: &str, kind: &str, on: &str| ev(p, kind, on, json!({ "test": "colonoscopy" }));
    vec![
        referral("J", "2025-03-10", "RHM", "lower_gi", usc),
        fit("J", "2025-03-01", 4.0),
        ev(
            "J",
            "triage_completed",
            "2025-03-11",
            json!({ "outcome": "straight_to_test" }),
        ),
        test("J", "diagnostic_requested", "2025-03-12"),
        test("J", "diagnostic_performed", "2025-03-20"),
        referral("K", "2025-03-12", "RXH", "lower_gi", usc),
        test("K", "diagnostic_performed", "2025-03-25"),
        fit("K", "2025-03-28", 50.0),
        referral("L", "2025-03-20", "RXH", "lower_gi", usc),
        fit("L", "2025-03-18", 3.0),
        test("L", "diagnostic_requested", "2025-03-21"),
    ]
}

#[tokio::test]
async fn the_fit_report_by_trust_against_its_targets() {
    let (app, _) = loaded().await;
    post(&app, fit_events()).await;
    let r = get(&app, "/v1/fit?period=2025-03").await;
    assert_eq!(r["period"], "2025-03");
    assert_eq!(
        r["targets"],
        json!({ "with_fit_percent": 80.0, "colonoscopies_without_fit_percent": 20.0 })
    );
    // A, J, L have a FIT on or before referral (A and L within 21 days, J 9 days): 3 of 4.
    assert_eq!(
        (
            r["referrals"].clone(),
            r["with_fit"].clone(),
            r["with_fit_percent"].clone(),
            r["with_fit_target_met"].clone()
        ),
        (json!(4), json!(3), json!(75.0), json!(false))
    );
    assert_eq!(
        (
            r["within_indicator_days"].clone(),
            r["fit_after_referral"].clone()
        ),
        (json!(3), json!(1))
    );
    assert_eq!(
        r["at_triage"]["counts"],
        json!({ "below_10": 2, "10_to_100": 1, "above_100": 1, "none": 0, "not_appropriate": 0 })
    );
    assert_eq!(r["at_triage"]["percent"]["below_10"], 50.0);
    let colonoscopy = &r["tests"][0];
    assert_eq!(colonoscopy["test"], "colonoscopy");
    assert_eq!(
        (
            colonoscopy["pathways"].clone(),
            colonoscopy["without_fit"].clone(),
            colonoscopy["without_fit_percent"].clone(),
            colonoscopy["on_fit_below_10"].clone(),
            colonoscopy["without_fit_target_met"].clone()
        ),
        (json!(2), json!(1), json!(50.0), json!(1), json!(false))
    );
    assert_eq!(r["tests"][1]["test"], "flexible_sigmoidoscopy");
    assert_eq!(r["tests"][2]["test"], "ct_colonography");
    let trusts: Vec<(Value, Value, Value)> = r["by_trust"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["trust"].clone(),
                t["referrals"].clone(),
                t["with_fit_percent"].clone(),
            )
        })
        .collect();
    assert_eq!(
        trusts,
        [
            (json!("RHM"), json!(1), json!(100.0)),
            (json!("RXH"), json!(3), json!(66.7))
        ]
    );
    // Filters: a trust, and a past date (before either colonoscopy was done).
    let rhm = get(&app, "/v1/fit?period=2025-03&trust=RHM").await;
    assert_eq!(rhm["referrals"], 1);
    let past = get(&app, "/v1/fit?period=2025-03&as_of=2025-03-15").await;
    assert_eq!(
        (
            past["referrals"].clone(),
            past["tests"][0]["pathways"].clone()
        ),
        (json!(3), json!(0))
    );
    // February: E, FIT 33 days before referral: with FIT, outside 21 days.
    let feb = get(&app, "/v1/fit?period=2025-02").await;
    assert_eq!(
        (
            feb["referrals"].clone(),
            feb["with_fit"].clone(),
            feb["within_indicator_days"].clone()
        ),
        (json!(1), json!(1), json!(0))
    );
    // The milestones view's indicator is the same figure.
    let milestones = get(&app, "/v1/milestones?period=2025-03").await;
    assert_eq!(milestones["fit"]["with_fit_before_referral"], 3);
}

#[tokio::test]
async fn the_fit_report_exports_as_csv() {
    let (app, _) = loaded().await;
    post(&app, fit_events()).await;
    for csv in [get_csv(&app, "/v1/fit?period=2025-03").await, {
        let (status, content_type, body) = send(
            &app,
            Request::get("/v1/fit?period=2025-03&format=csv")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert!(content_type.starts_with("text/csv"));
        String::from_utf8(body).unwrap()
    }] {
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 4, "{csv}");
        assert!(lines[0].starts_with("period,trust,referrals,with_fit,with_fit_percent,with_fit_target_percent,with_fit_target_met,"), "{}", lines[0]);
        assert!(lines[0].contains(",colonoscopy_pathways,"), "{}", lines[0]);
        assert!(
            lines[1].starts_with("2025-03,RHM,1,1,100,80,true,"),
            "{}",
            lines[1]
        );
        assert!(
            lines[2].starts_with("2025-03,RXH,3,2,66.7,80,false,"),
            "{}",
            lines[2]
        );
        assert!(
            lines[3].starts_with("2025-03,all,4,3,75,80,false,"),
            "{}",
            lines[3]
        );
        assert!(lines[3].ends_with(",20,false"), "{}", lines[3]);
    }
}

#[tokio::test]
async fn the_fit_view_refuses_bad_input_with_the_field() {
    let (app, _) = loaded().await;
    for (uri, field) in [
        ("/v1/fit?period=2025-13", "period"),
        ("/v1/fit?period=March", "period"),
        ("/v1/fit?tumour_site=lower_gi", "tumour_site"),
        ("/v1/fit?format=xml", "format"),
        ("/v1/fit?trust=R!", "trust"),
        ("/v1/fit?alliance=nowhere", "alliance"),
        ("/v1/fit?as_of=2025-02-30", "as_of"),
        ("/v1/fit?known_at=yesterday", "known_at"),
    ] {
        let (status, body) = get_status(&app, uri).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{uri}: {body}");
        assert_eq!(body["error"]["code"], "invalid_field", "{uri}: {body}");
        assert_eq!(body["error"]["details"]["field"], field, "{uri}: {body}");
    }
}

#[tokio::test]
async fn the_fit_view_counts_only_the_callers_trusts() {
    let log: Arc<dyn EventLog> = Arc::new(MemoryLog::new());
    let app = app_at(NOW, log);
    let rhm = "openptl-test-rhm-manager-0001";
    app.tokens()
        .create_with_secret(
            openptl_app::tokens::NewToken {
                role: openptl_app::access::Role::Manager,
                trusts: vec!["RHM".into()],
                alliance: None,
                label: Some("rhm-manager".into()),
                expires_at: None,
            },
            chrono::Utc::now(),
            Some(rhm),
        )
        .unwrap();
    let router = authorised(app);
    post(&router, fixture()).await;
    post(&router, fit_events()).await;
    let request = |uri: &str| {
        Request::get(uri)
            .header("authorization", format!("Bearer {rhm}"))
            .body(Body::empty())
            .unwrap()
    };
    for uri in [
        "/v1/fit?period=2025-03",
        "/v1/fit?period=2025-03&trust=RXH,RHM",
    ] {
        let (status, _, body) = send(&router, request(uri)).await;
        assert_eq!(status, StatusCode::OK);
        let r: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(r["referrals"], 1, "{uri}: {r}");
        assert_eq!(r["by_trust"].as_array().unwrap().len(), 1, "{r}");
        assert_eq!(r["by_trust"][0]["trust"], "RHM");
    }
}

#[tokio::test]
async fn the_fit_below_10_worklist_says_how_far_the_colonoscopy_went() {
    let (app, _) = loaded().await;
    post(&app, fit_events()).await;
    let page = get(&app, "/v1/ptl?worklist=fit_below_10").await;
    // J (28 days, colonoscopy done) before L (18 days, requested); A is
    // FIT 150 and E is off the PTL.
    assert_eq!(ids(&page), ["J", "L"]);
    let rows = page["rows"].as_array().unwrap();
    assert_eq!(rows[0]["colonoscopy"], "performed");
    assert_eq!(rows[1]["colonoscopy"], "requested");
    assert_eq!(rows[0]["fit_band"], "below_10");
    // K's colonoscopy shows on the PTL too; A has none.
    let lower_gi = get(&app, "/v1/ptl?tumour_site=lower_gi").await;
    let of = |id: &str| {
        lower_gi["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["pathway_id"] == id)
            .unwrap()
            .clone()
    };
    assert_eq!(of("K")["colonoscopy"], "performed");
    assert!(of("A").get("colonoscopy").is_none());
    let csv = get_csv(&app, "/v1/ptl?worklist=fit_below_10").await;
    let lines: Vec<&str> = csv.lines().map(before_breach_risk).collect();
    // New columns go last (decision 112): the colonoscopy after the
    // subsequent treatment's.
    assert!(
        lines[0].ends_with(",subsequent_breach_date,colonoscopy"),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].starts_with("J,")
            && lines[1].contains(",below_10,")
            && lines[1].ends_with(",performed"),
        "{}",
        lines[1]
    );
    assert!(
        lines[2].contains(",below_10,") && lines[2].ends_with(",requested"),
        "{}",
        lines[2]
    );
    // A past view: on 03-15 J's colonoscopy was only requested, L not referred.
    let past = get(&app, "/v1/ptl?worklist=fit_below_10&as_of=2025-03-15").await;
    assert_eq!(ids(&past), ["J"]);
    assert_eq!(past["rows"][0]["colonoscopy"], "requested");
}

#[tokio::test]
async fn the_fit_and_returns_pages_and_their_scripts_are_served_with_security_headers() {
    let (app, _) = loaded().await;
    for (path, content_type) in [
        ("/fit", "text/html"),
        ("/assets/fit.js", "text/javascript"),
        ("/returns", "text/html"),
        ("/assets/returns.js", "text/javascript"),
    ] {
        let reply = support::send(&app, Request::get(path).body(Body::empty()).unwrap()).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}");
        let headers = &reply.headers;
        assert!(
            headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with(content_type),
            "{path}"
        );
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("script-src 'self'"), "{path}");
        assert_eq!(headers["x-content-type-options"], "nosniff");
    }
    let (_, _, shell) = send(&app, Request::get("/fit").body(Body::empty()).unwrap()).await;
    let shell = String::from_utf8(shell).unwrap();
    assert!(shell.contains(r#"<script src="/assets/fit.js" defer></script>"#));
    assert!(shell.contains(r#"href="/fit""#));
    assert!(shell.contains(r#"<script src="/assets/returns.js" defer></script>"#));
    assert!(shell.contains(r#"href="/returns""#));
    let meta = get(&app, "/v1/meta").await;
    assert!(meta["worklists"]
        .as_array()
        .unwrap()
        .contains(&json!("fit_below_10")));
}

/// A PTL CSV line without its last three fields, the breach-risk columns
/// (decision 154; tested in `breach_risk_on_the_ptl`).
fn before_breach_risk(line: &str) -> &str {
    line.rsplitn(4, ',').last().unwrap_or(line)
}
