//! In-process tests of the HTTP API: the real router, application layer,
//! rules and (in-memory) log, driven with `oneshot` requests.

mod support;

use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use openptl_log::MemoryLog;
use serde_json::{json, Value};
use support::{app_at, authorised, event};

fn spawn_app() -> Router {
    authorised(app_at("2026-06-30T12:00:00Z", Arc::new(MemoryLog::new())))
}

/// Every body is JSON (or empty).
async fn send(app: &Router, request: Request<Body>) -> (StatusCode, Value) {
    let reply = support::send(app, request).await;
    (reply.status, reply.json())
}

async fn post_raw(app: &Router, body: &str) -> (StatusCode, Value) {
    let request = Request::post("/v1/events")
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    send(app, request).await
}

async fn post(app: &Router, body: Value) -> (StatusCode, Value) {
    post_raw(app, &body.to_string()).await
}

async fn get(app: &Router, uri: &str) -> (StatusCode, Value) {
    send(app, Request::get(uri).body(Body::empty()).unwrap()).await
}

fn referral(pathway: &str) -> Value {
    json!({
        "pathway_id": pathway, "type": "referral_received", "occurred_on": "2025-03-03",
        "data": { "nhs_number": "943 476 5919", "trust": "RXH", "tumour_site": "lower_gi", "route": "urgent_suspected_cancer" }
    })
}

fn assert_error(status: StatusCode, body: &Value, want_status: StatusCode, code: &str) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(body["error"]["details"].is_object(), "{body}");
}

/// Every shared conformance case, through the real router, as `run_cases.py`
/// does: `cases.json` and every case folder beside it (for example
/// `treatment-periods/`), so a new folder runs without being named here.
#[tokio::test]
async fn conformance_cases_pass_through_the_router() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance");
    let files = conformance_files(&dir);
    if files.is_empty() {
        openptl_testkit::skip(&format!(
            "{} not found (or holds no cases); the conformance cases did not run",
            dir.display()
        ));
        return;
    }
    let count = run_files(&files).await;
    eprintln!(
        "{count} conformance cases from {} files passed through the router",
        files.len()
    );
}

/// Runs every case of `files` through a fresh router; fails naming each
/// case that failed. Gives how many ran.
async fn run_files(files: &[std::path::PathBuf]) -> usize {
    let app = spawn_app();
    let mut failures = Vec::new();
    let mut count = 0;
    for file in files {
        let text = std::fs::read_to_string(file).unwrap();
        let cases: Vec<Value> =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert!(!cases.is_empty(), "{} holds no cases", file.display());
        for case in &cases {
            count += 1;
            let problems = run_case(&app, case).await;
            if !problems.is_empty() {
                failures.push(format!(
                    "{} ({}): {}",
                    case["id"],
                    file.display(),
                    problems.join("; ")
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {count} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    count
}

/// Our own rule cases (`crates/rules/tests/cases`), run through the pure
/// rules by the rules crate, through the real router as well: the status,
/// code and state a coordinator sees are the rules' own.
#[tokio::test]
async fn rule_cases_pass_through_the_router() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules/tests/cases");
    let files = conformance_files(&dir);
    assert!(!files.is_empty(), "no rule cases in {}", dir.display());
    run_files(&files).await;
}

/// The case files: `*.json` in `dir` and in each folder directly below it, sorted.
fn conformance_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let json_in = |d: &Path| -> Vec<std::path::PathBuf> {
        let mut files: Vec<_> = std::fs::read_dir(d)
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        files
    };
    let mut folders: Vec<_> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    folders.sort();
    let mut files = json_in(dir);
    for folder in folders {
        files.extend(json_in(&folder));
    }
    files
}

async fn run_case(app: &Router, case: &Value) -> Vec<String> {
    let prefix = format!("{}-", case["id"].as_str().unwrap());
    let fresh = |old: &str| {
        uuid::Uuid::new_v5(
            &uuid::Uuid::NAMESPACE_URL,
            format!("{prefix}{old}").as_bytes(),
        )
        .to_string()
    };
    let mut problems = Vec::new();
    for (idx, envelope) in case["events"].as_array().unwrap().iter().enumerate() {
        let mut envelope = envelope.clone();
        envelope["pathway_id"] = json!(format!(
            "{prefix}{}",
            envelope["pathway_id"].as_str().unwrap()
        ));
        if let Some(id) = envelope
            .get("event_id")
            .and_then(Value::as_str)
            .map(str::to_string)
        {
            envelope["event_id"] = json!(fresh(&id));
        }
        for field in ["corrects", "voids"] {
            if let Some(id) = envelope["data"]
                .get(field)
                .and_then(Value::as_str)
                .map(str::to_string)
            {
                envelope["data"][field] = json!(fresh(&id));
            }
        }
        let (status, body) = post(app, envelope).await;
        let rejected = case
            .get("expect_rejected")
            .filter(|r| r["event_index"] == json!(idx));
        if let Some(rejected) = rejected {
            let want = rejected
                .get("status")
                .and_then(Value::as_u64)
                .unwrap_or(422);
            if status.as_u16() as u64 != want
                || (rejected.get("code").is_some() && body["error"]["code"] != rejected["code"])
            {
                problems.push(format!(
                    "event {idx}: expected {want} {}, got {status} {body}",
                    rejected["code"]
                ));
            }
            continue;
        }
        if !status.is_success() {
            problems.push(format!("event {idx}: {status} {body}"));
            return problems;
        }
    }
    let Some(expect) = case.get("expect").filter(|e| !e.is_null()) else {
        return problems;
    };
    let pathway = format!(
        "{prefix}{}",
        case["events"][0]["pathway_id"].as_str().unwrap()
    );
    let (status, view) = get(
        app,
        &format!(
            "/v1/pathways/{pathway}?as_of={}",
            case["as_of"].as_str().unwrap()
        ),
    )
    .await;
    if status != StatusCode::OK {
        return vec![format!("GET pathway: {status} {view}")];
    }
    let mut expect = expect.clone();
    let milestones = expect.as_object_mut().unwrap().remove("milestones");
    compare(&expect, &view, "view", &mut problems);
    if let Some(milestones) = milestones {
        for (name, fields) in milestones.as_object().unwrap() {
            let actual = view["milestones"]
                .as_array()
                .unwrap()
                .iter()
                .find(|m| m["name"] == json!(name))
                .cloned();
            compare(
                fields,
                &actual.unwrap_or(Value::Null),
                &format!("milestones[{name}]"),
                &mut problems,
            );
        }
    }
    problems
}

fn compare(expected: &Value, actual: &Value, path: &str, problems: &mut Vec<String>) {
    match (expected, actual) {
        (Value::Object(e), _) => {
            for (k, v) in e {
                compare(
                    v,
                    actual.get(k).unwrap_or(&Value::Null),
                    &format!("{path}.{k}"),
                    problems,
                );
            }
        }
        (Value::Array(e), Value::Array(a)) if e.len() == a.len() => {
            for (i, (x, y)) in e.iter().zip(a).enumerate() {
                compare(x, y, &format!("{path}[{i}]"), problems);
            }
        }
        (Value::Number(x), Value::Number(y)) if x.as_f64() == y.as_f64() => {}
        _ if expected == actual => {}
        _ => problems.push(format!("{path}: expected {expected}, got {actual}")),
    }
}

#[tokio::test]
async fn malformed_bodies_get_clear_errors() {
    let app = spawn_app();
    let (s, b) = post_raw(&app, "{not json").await;
    assert_error(s, &b, StatusCode::BAD_REQUEST, "invalid_json");
    let (s, b) = post_raw(&app, "[1, 2]").await;
    assert_error(s, &b, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field");
    let (s, b) = post(
        &app,
        json!({"pathway_id": "p", "type": "referral_received", "occurred_on": 20250303}),
    )
    .await;
    assert_error(s, &b, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field");
    assert_eq!(b["error"]["details"]["field"], "occurred_on");
    let (s, b) = post(
        &app,
        json!({"pathway_id": "p", "type": "triage_done", "occurred_on": "2025-03-03"}),
    )
    .await;
    assert_error(
        s,
        &b,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unknown_event_type",
    );
    let (s, b) = post(&app, json!({"pathway_id": "p", "type": "referral_received", "occurred_on": "2025-03-03", "ocurred": 1})).await;
    assert_error(s, &b, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field");
    assert_eq!(b["error"]["details"]["field"], "ocurred");
    let mut r = referral("p");
    r["data"]["colour"] = json!("red");
    let (s, b) = post(&app, r).await;
    assert_error(s, &b, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field");
    assert_eq!(b["error"]["details"]["field"], "data.colour");
    let (s, b) = post(&app, json!({"pathway_id": "no spaces please", "type": "referral_received", "occurred_on": "2025-03-03"})).await;
    assert_error(s, &b, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field");
    assert_eq!(b["error"]["details"]["field"], "pathway_id");
    let (s, b) = get(&app, "/v1/nowhere").await;
    assert_error(s, &b, StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn an_invalid_nhs_number_is_never_echoed() {
    let app = spawn_app();
    let mut r = referral("p");
    r["data"]["nhs_number"] = json!("943 476 5918");
    let (s, b) = post(&app, r).await;
    assert_error(
        s,
        &b,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_nhs_number",
    );
    let text = b.to_string();
    assert!(!text.contains("5918") && !text.contains("943"), "{text}");
    let (s, _) = get(&app, "/v1/pathways/p").await;
    assert_eq!(s, StatusCode::NOT_FOUND, "nothing written");
}

#[tokio::test]
async fn a_batch_with_one_bad_event_writes_nothing_and_names_it() {
    let app = spawn_app();
    let batch = json!({ "events": [
        referral("a"),
        event("a", "triage_completed", "2025-03-04", json!({"outcome": "outpatient"})),
        event("a", "triage_completed", "2025-03-05", json!({"outcome": "nope"})),
    ]});
    let (s, b) = post(&app, batch).await;
    assert_error(s, &b, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field");
    assert_eq!(b["error"]["details"]["index"], 2);
    assert_eq!(b["error"]["details"]["field"], "data.outcome");
    let (s, _) = get(&app, "/v1/pathways/a").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // A rule broken by a later event of the batch also writes nothing.
    let batch = json!({ "events": [referral("b"), event("b", "treatment_started", "2025-03-10", json!({"modality": "surgery"}))]});
    let (s, b) = post(&app, batch).await;
    assert_error(
        s,
        &b,
        StatusCode::UNPROCESSABLE_ENTITY,
        "treatment_without_decision",
    );
    assert_eq!(b["error"]["details"]["index"], 1);
    assert_eq!(get(&app, "/v1/pathways/b").await.0, StatusCode::NOT_FOUND);
    // A good batch is stored whole, with versions and positions in order.
    let batch = json!({ "events": [referral("c"), event("c", "decision_to_treat", "2025-03-10", json!({"modality": "surgery"}))]});
    let (s, b) = post(&app, batch).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(b["appended"][1]["version"], 2);
    assert_eq!(
        b["appended"][1]["position"].as_u64().unwrap(),
        b["appended"][0]["position"].as_u64().unwrap() + 1
    );
    let too_many: Vec<Value> = (0..1001).map(|i| referral(&format!("x{i}"))).collect();
    let (s, b) = post(&app, json!({ "events": too_many })).await;
    assert_error(s, &b, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field");
    assert_eq!(b["error"]["details"]["field"], "events");
    let (s, b) = post(&app, json!({ "events": [] })).await;
    assert_error(s, &b, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field");
}

#[tokio::test]
async fn event_ids_are_idempotency_keys() {
    let app = spawn_app();
    let mut r = referral("p");
    r["event_id"] = json!("3c1d6a3e-1f7b-4a52-9a1e-6d2b8f0c1a11");
    let (s1, b1) = post(&app, r.clone()).await;
    assert_eq!(s1, StatusCode::CREATED);
    let (s2, b2) = post(&app, r.clone()).await;
    assert_eq!(s2, StatusCode::OK, "a replay is 200 and appends nothing");
    assert_eq!(b1, b2);
    // Same content written differently (NHS number spacing) is still the same event.
    r["data"]["nhs_number"] = json!("9434765919");
    assert_eq!(post(&app, r.clone()).await.0, StatusCode::OK);
    r["data"]["tumour_site"] = json!("lung");
    let (s, b) = post(&app, r).await;
    assert_error(s, &b, StatusCode::CONFLICT, "duplicate_event_id");
    let (_, view) = get(&app, "/v1/pathways/p?as_of=2025-03-10").await;
    assert_eq!(view["version"], 1);
    assert_eq!(view["tumour_site"], "lower_gi");
}

#[tokio::test]
async fn expected_version_is_optimistic_concurrency() {
    let app = spawn_app();
    let mut r = referral("p");
    r["expected_version"] = json!(0);
    assert_eq!(post(&app, r.clone()).await.0, StatusCode::CREATED);
    let mut note = event(
        "p",
        "tracking_note_added",
        "2025-03-04",
        json!({"text": "Called patient"}),
    );
    note["expected_version"] = json!(0);
    let (s, b) = post(&app, note.clone()).await;
    assert_error(s, &b, StatusCode::CONFLICT, "version_conflict");
    assert_eq!(b["error"]["details"]["current_version"], 1);
    note["expected_version"] = json!(1);
    assert_eq!(post(&app, note).await.0, StatusCode::CREATED);
    let (s, b) = post(&app, r).await;
    assert_error(s, &b, StatusCode::CONFLICT, "version_conflict");
}

#[tokio::test]
async fn history_shows_corrections_and_voids_and_known_at_reproduces_the_past() {
    let app = spawn_app();
    post(&app, referral("p")).await;
    let mut told = event(
        "p",
        "diagnosis_communicated",
        "2025-03-20",
        json!({"outcome": "cancer_ruled_out"}),
    );
    told["event_id"] = json!("00000000-0000-4000-8000-000000000001");
    post(&app, told).await;
    let (_, before) = get(&app, "/v1/pathways/p?as_of=2025-04-10").await;
    assert_eq!(before["clocks"]["fds"]["status"], "met");
    let (_, history) = get(&app, "/v1/pathways/p/events").await;
    let known_at = history["events"][1]["recorded_at"]
        .as_str()
        .unwrap()
        .to_string();
    let (s, _) = post(
        &app,
        event(
            "p",
            "event_voided",
            "2025-03-21",
            json!({"voids": "00000000-0000-4000-8000-000000000001", "reason": "wrong patient"}),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    let (_, after) = get(&app, "/v1/pathways/p?as_of=2025-04-10").await;
    assert_eq!(after["clocks"]["fds"]["status"], "open_breached");
    let (_, past) = get(
        &app,
        &format!("/v1/pathways/p?as_of=2025-04-10&known_at={known_at}"),
    )
    .await;
    assert_eq!(
        past, before,
        "the view as known then equals what was shown then"
    );
    let (_, history) = get(&app, "/v1/pathways/p/events").await;
    let voided = &history["events"][1];
    assert_eq!(voided["voided_by"]["reason"], "wrong patient");
    assert_eq!(voided["voided_by"]["actor"], "test-admin");
    assert_eq!(history["events"][2]["type"], "event_voided");
    // Voiding the referral is refused; so is a void of an unknown event.
    let referral_id = history["events"][0]["event_id"].as_str().unwrap();
    let (s, b) = post(
        &app,
        event(
            "p",
            "event_voided",
            "2025-03-21",
            json!({"voids": referral_id, "reason": "x"}),
        ),
    )
    .await;
    assert_error(
        s,
        &b,
        StatusCode::UNPROCESSABLE_ENTITY,
        "cannot_void_referral",
    );
    let (s, b) = post(
        &app,
        event(
            "p",
            "event_voided",
            "2025-03-21",
            json!({"voids": "00000000-0000-4000-8000-000000000009", "reason": "x"}),
        ),
    )
    .await;
    assert_error(s, &b, StatusCode::UNPROCESSABLE_ENTITY, "unknown_event");
}

#[tokio::test]
async fn read_parameters_are_checked() {
    let app = spawn_app();
    post(&app, referral("p")).await;
    let (s, b) = get(&app, "/v1/pathways/p?as_of=03/03/2025").await;
    assert_error(s, &b, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field");
    assert_eq!(b["error"]["details"]["field"], "as_of");
    let (s, b) = get(&app, "/v1/pathways/p?known_at=yesterday").await;
    assert_error(s, &b, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field");
    let (s, b) = get(&app, "/v1/pathways/p?as_of=2025-03-01").await;
    assert_error(s, &b, StatusCode::NOT_FOUND, "pathway_not_found");
    let (s, b) = get(&app, "/v1/pathways/unknown").await;
    assert_error(s, &b, StatusCode::NOT_FOUND, "pathway_not_found");
    let (s, v) = get(&app, "/v1/pathways/p?as_of=2025-03-10&min_position=1").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["clocks"]["fds"]["days"], 7);
    assert_eq!(
        v["next_breach"],
        json!({"clock": "fds", "date": "2025-04-01"})
    );
    let (s, b) = get(&app, "/healthz").await;
    assert_eq!((s, b["status"].as_str()), (StatusCode::OK, Some("ok")));
}

/// SPEC 3.2 and decision 85: an event stored as schema version 1 (before
/// `decision_to_treat` moved to version 2) still reads as it did, and
/// re-posting it with the same event id and content is a replay, not a
/// `duplicate_event_id`, although today it would be written as version 2.
#[tokio::test]
async fn a_version_1_event_reads_through_the_upcaster_and_replays() {
    use openptl_log::{EventLog, NewRecord};
    use openptl_rules::event::v1;
    let log = Arc::new(MemoryLog::new());
    let on = |d: &str| openptl_rules::date::parse(d).unwrap();
    let referral_data = openptl_rules::EventData::from_json(
        openptl_rules::EventType::ReferralReceived,
        json!({ "nhs_number": "9434765919", "trust": "RXH", "tumour_site": "lower_gi", "route": "urgent_suspected_cancer" }),
    )
    .unwrap();
    let decision_id = "6f1d6a3e-1f7b-4a52-9a1e-6d2b8f0c1a22";
    let v1_decision = v1::DecisionToTreat {
        modality: openptl_rules::Modality::Surgery,
    };
    let records = vec![
        NewRecord {
            stream_id: "V1-1".into(),
            event_id: uuid::Uuid::new_v4(),
            event_type: "referral_received".into(),
            schema_version: 1,
            actor: "test".into(),
            payload: referral_data.encode_payload(on("2025-03-03")),
            expected_version: Some(0),
        },
        NewRecord {
            stream_id: "V1-1".into(),
            event_id: decision_id.parse().unwrap(),
            event_type: "decision_to_treat".into(),
            schema_version: 1,
            actor: "test".into(),
            payload: v1::encode_payload(on("2025-03-20"), &v1_decision),
            expected_version: Some(1),
        },
    ];
    log.append(records).await.unwrap();
    let app = authorised(app_at("2026-06-30T12:00:00Z", log));
    let (status, view) = get(&app, "/v1/pathways/V1-1?as_of=2025-03-25&min_position=2").await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["clocks"]["d31"]["start"], "2025-03-20");
    assert_eq!(view["treatment_periods"][0]["treatment"], "first");
    let (status, body) = post(
        &app,
        json!({ "event_id": decision_id, "pathway_id": "V1-1", "type": "decision_to_treat",
                "occurred_on": "2025-03-20", "data": { "modality": "surgery" } }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "a replay: {body}");
    assert_eq!(body["appended"][0]["version"], 2);
    let (status, body) = post(
        &app,
        json!({ "event_id": decision_id, "pathway_id": "V1-1", "type": "decision_to_treat",
                "occurred_on": "2025-03-20", "data": { "modality": "radiotherapy" } }),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "duplicate_event_id");
}
