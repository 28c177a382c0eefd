//! Breach risk on the PTL itself (issue 24, decision 154) through the real
//! router: every row carries its riskiest running clock's risk, the PTL
//! sorts by it (cursor pages included) and filters by it
//! (`min_breach_risk`), and the `likely_to_breach` worklist is exactly the
//! pathways with a running clock not yet past its target at 50% or more.
//! Every figure is checked against `GET /v1/breach-risks`, which scores
//! each clock on its own, under the same model. A bad value is the one
//! error of a bad query (`AppError::InvalidQuery`: 422 `invalid_field`,
//! naming the parameter).
//!
//! Today is Monday 2025-04-07. Lower GI, urgent suspected cancer, unless
//! said otherwise. Learnt from: S0–S7, ruled out after 8 to 50 days. On
//! the PTL: R1 (day 2), R2 (day 20), R3 (day 26), R4 (day 46: its FDS is
//! past its target, so 100%), R5 at RHM (day 13), R6 breast (day 8), R7
//! (day 30, 2 days past its FDS target), R8 (day 20, like R2: a tie).

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::http::StatusCode;
use axum::Router;
use openptl_app::App;
use openptl_log::MemoryLog;
use serde_json::{json, Value};
use support::{app_at, authorised_shared, event, post_events, request, ruled_out, send};

const NOW: &str = "2025-04-07T12:00:00Z";

fn referral(pathway: &str, on: &str, trust: &str, site: &str) -> Value {
    event(
        pathway,
        "referral_received",
        on,
        json!({ "nhs_number": "943 476 5919", "trust": trust, "tumour_site": site, "route": "urgent_suspected_cancer" }),
    )
}

async fn loaded() -> (Router, Arc<App>) {
    let app = Arc::new(app_at(NOW, Arc::new(MemoryLog::new())));
    let router = authorised_shared(app.clone());
    let mut events = Vec::new();
    for (i, (referred, out)) in [
        ("2025-01-06", "2025-01-14"),
        ("2025-01-13", "2025-02-02"),
        ("2025-01-20", "2025-02-18"),
        ("2025-02-03", "2025-03-20"),
        ("2025-02-10", "2025-03-02"),
        ("2025-02-17", "2025-04-07"),
        ("2025-02-24", "2025-03-29"),
        ("2025-03-03", "2025-03-27"),
    ]
    .iter()
    .enumerate()
    {
        let id = format!("S{i}");
        events.push(referral(&id, referred, "RXH", "lower_gi"));
        events.push(ruled_out(&id, out));
    }
    for (id, referred, trust, site) in [
        ("R1", "2025-04-05", "RXH", "lower_gi"),
        ("R2", "2025-03-18", "RXH", "lower_gi"),
        ("R3", "2025-03-12", "RXH", "lower_gi"),
        ("R4", "2025-02-20", "RXH", "lower_gi"),
        ("R5", "2025-03-25", "RHM", "lower_gi"),
        ("R6", "2025-03-30", "RXH", "breast"),
        ("R7", "2025-03-08", "RXH", "lower_gi"),
        ("R8", "2025-03-18", "RXH", "lower_gi"),
    ] {
        events.push(referral(id, referred, trust, site));
    }
    post_events(&router, None, events).await;
    (router, app)
}

async fn get(router: &Router, uri: &str) -> Value {
    let reply = send(router, request("GET", uri, None, None)).await;
    assert_eq!(reply.status, StatusCode::OK, "{uri}: {}", reply.text());
    reply.json()
}

fn ids(page: &Value) -> Vec<String> {
    page["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["pathway_id"].as_str().unwrap().to_string())
        .collect()
}

/// Each pathway's riskiest clock in `GET /v1/breach-risks` (every running
/// clock, past its target or not), and the riskiest not yet past it.
async fn per_clock(router: &Router, at: &str) -> BTreeMap<String, (f64, Option<f64>)> {
    let list = get(
        router,
        &format!("/v1/breach-risks?min_risk=0&include_breached=true&limit=1000{at}"),
    )
    .await;
    let mut out: BTreeMap<String, (f64, Option<f64>)> = BTreeMap::new();
    for r in list["rows"].as_array().unwrap() {
        let id = r["pathway_id"].as_str().unwrap().to_string();
        let risk = r["breach_risk"].as_f64().unwrap();
        let ahead = (r["days"].as_i64() <= r["target_days"].as_i64()).then_some(risk);
        let e = out.entry(id).or_insert((risk, ahead));
        e.0 = e.0.max(risk);
        e.1 = match (e.1, ahead) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }
    out
}

/// The pathways of the likely-to-breach worklist by its definition: a
/// running clock not yet past its target at 50% or more.
fn likely(per_clock: &BTreeMap<String, (f64, Option<f64>)>) -> BTreeSet<String> {
    per_clock
        .iter()
        .filter(|(_, (_, ahead))| ahead.is_some_and(|a| a >= 50.0))
        .map(|(id, _)| id.clone())
        .collect()
}

#[tokio::test]
async fn every_row_carries_its_riskiest_running_clock() {
    let (router, _) = loaded().await;
    let page = get(&router, "/v1/ptl?limit=1000").await;
    let expected = per_clock(&router, "").await;
    let rows = page["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 8, "{page}");
    for r in rows {
        let id = r["pathway_id"].as_str().unwrap();
        let (risk, _) = expected[id];
        assert_eq!(r["breach_risk"].as_f64(), Some(risk), "{id}: {r}");
        assert!(["fds", "d62"].contains(&r["breach_risk_clock"].as_str().unwrap()));
        assert_eq!(r["breach_risk_plan_id"], Value::Null);
    }
    // R4's and R7's FDS clocks are past their target: certain breaches.
    let r4 = rows.iter().find(|r| r["pathway_id"] == "R4").unwrap();
    assert_eq!(
        (r4["breach_risk"].as_f64(), r4["breach_risk_clock"].as_str()),
        (Some(100.0), Some("fds"))
    );
}

#[tokio::test]
async fn sorting_by_breach_risk_lists_the_riskiest_first_and_pages_by_cursor() {
    let (router, _) = loaded().await;
    let all = get(&router, "/v1/ptl?sort=breach_risk&limit=1000").await;
    let rows = all["rows"].as_array().unwrap();
    // (risk, days waited: every row's 62-day clock runs, pathway id)
    let keys: Vec<(f64, i64, &str)> = rows
        .iter()
        .map(|r| {
            (
                r["breach_risk"].as_f64().unwrap(),
                r["d62_days"].as_i64().unwrap(),
                r["pathway_id"].as_str().unwrap(),
            )
        })
        .collect();
    let mut sorted = keys.clone();
    sorted.sort_by(|a, b| b.0.total_cmp(&a.0).then(b.1.cmp(&a.1)).then(a.2.cmp(b.2)));
    assert_eq!(
        keys, sorted,
        "highest first, then the longest wait, then by pathway id"
    );
    assert_eq!(&keys[..2], &[(100.0, 46, "R4"), (100.0, 30, "R7")]);
    // R2 and R8 wait the same: the same risk, R2 first.
    let at = |id: &str| keys.iter().position(|k| k.2 == id).unwrap();
    assert_eq!(keys[at("R2")].0, keys[at("R8")].0);
    assert_eq!(at("R8"), at("R2") + 1);
    // Pages of three by cursor give the same rows in the same order.
    let mut paged = Vec::new();
    let mut uri = "/v1/ptl?sort=breach_risk&limit=3".to_string();
    loop {
        let page = get(&router, &uri).await;
        assert_eq!(page["total"], 8);
        paged.extend(ids(&page));
        match page["next_cursor"].as_str() {
            Some(cursor) => uri = format!("/v1/ptl?sort=breach_risk&limit=3&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(paged, ids(&all));
    // A cursor of another sort is refused.
    let page = get(&router, "/v1/ptl?limit=3").await;
    let cursor = page["next_cursor"].as_str().unwrap();
    let reply = send(
        &router,
        request(
            "GET",
            &format!("/v1/ptl?sort=breach_risk&cursor={cursor}"),
            None,
            None,
        ),
    )
    .await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reply.json()["error"]["details"]["field"], "cursor");
}

#[tokio::test]
async fn min_breach_risk_keeps_the_rows_at_or_above_it() {
    let (router, _) = loaded().await;
    let all = get(&router, "/v1/ptl?limit=1000").await;
    let risks: Vec<(String, f64)> = all["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["pathway_id"].as_str().unwrap().to_string(),
                r["breach_risk"].as_f64().unwrap(),
            )
        })
        .collect();
    let mut thresholds: Vec<f64> = risks.iter().map(|(_, r)| *r).collect();
    thresholds.extend([0.0, 50.0, 100.0]);
    for min in thresholds {
        let page = get(
            &router,
            &format!("/v1/ptl?min_breach_risk={min}&limit=1000"),
        )
        .await;
        let expected: BTreeSet<String> = risks
            .iter()
            .filter(|(_, r)| *r >= min)
            .map(|(id, _)| id.clone())
            .collect();
        let got: BTreeSet<String> = ids(&page).into_iter().collect();
        assert_eq!(got, expected, "min_breach_risk={min}");
        assert_eq!(page["total"], expected.len());
    }
    // Combined with the other filters and the sort.
    let page = get(
        &router,
        "/v1/ptl?min_breach_risk=0&trust=RHM&sort=breach_risk",
    )
    .await;
    assert_eq!(ids(&page), ["R5"]);
}

#[tokio::test]
async fn the_likely_to_breach_worklist_is_a_clock_not_yet_past_target_at_50_percent() {
    let (router, _) = loaded().await;
    let page = get(
        &router,
        "/v1/ptl?worklist=likely_to_breach&sort=breach_risk&limit=1000",
    )
    .await;
    let expected = likely(&per_clock(&router, "").await);
    let got: BTreeSet<String> = ids(&page).into_iter().collect();
    assert_eq!(got, expected, "{page}");
    // The same as the clocks GET /v1/breach-risks lists by default (not
    // yet past their target, 50% or more).
    let list = get(&router, "/v1/breach-risks?limit=1000").await;
    let listed: BTreeSet<String> = list["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["pathway_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(got, listed);
    assert!(
        !got.is_empty() && got.len() < 8,
        "the fixture has both: {page}"
    );
    assert_eq!(page["total"], got.len());
}

#[tokio::test]
async fn the_csv_has_the_breach_risk_columns() {
    let (router, _) = loaded().await;
    let page = get(&router, "/v1/ptl?sort=breach_risk&limit=1000").await;
    let reply = send(
        &router,
        request("GET", "/v1/ptl?sort=breach_risk&format=csv", None, None),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    let csv = reply.text();
    let lines: Vec<&str> = csv.lines().collect();
    assert!(
        lines[0].ends_with(",colonoscopy,breach_risk,breach_risk_clock,breach_risk_plan_id"),
        "{}",
        lines[0]
    );
    assert_eq!(lines.len(), 9);
    for (line, row) in lines[1..].iter().zip(page["rows"].as_array().unwrap()) {
        let fields: Vec<&str> = line.rsplitn(4, ',').collect();
        assert!(line.starts_with(row["pathway_id"].as_str().unwrap()));
        assert_eq!(fields[0], "", "no plan id");
        assert_eq!(fields[1], row["breach_risk_clock"].as_str().unwrap());
        assert_eq!(
            fields[2].parse::<f64>().unwrap(),
            row["breach_risk"].as_f64().unwrap()
        );
    }
}

#[tokio::test]
async fn bad_risk_parameters_are_refused_naming_the_field() {
    let (router, _) = loaded().await;
    for (uri, field) in [
        ("/v1/ptl?min_breach_risk=101", "min_breach_risk"),
        ("/v1/ptl?min_breach_risk=-1", "min_breach_risk"),
        ("/v1/ptl?min_breach_risk=high", "min_breach_risk"),
        ("/v1/ptl?min_breach_risk=NaN", "min_breach_risk"),
        ("/v1/ptl?min_breach_risk=", "min_breach_risk"),
        ("/v1/ptl?sort=risk", "sort"),
        ("/v1/ptl?worklist=likely", "worklist"),
    ] {
        let reply = send(&router, request("GET", uri, None, None)).await;
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{uri}");
        let body = reply.json();
        assert_eq!(body["error"]["code"], "invalid_field", "{uri}: {body}");
        assert_eq!(body["error"]["details"]["field"], field, "{uri}: {body}");
    }
    let reply = send(&router, request("GET", "/v1/ptl?sort=risk", None, None)).await;
    let message = reply.json()["error"]["message"].to_string();
    assert!(message.contains("`breach_risk`"), "{message}");
}

/// A past view's risks are made with what was known then: the same as
/// `GET /v1/breach-risks` as of that date, whose model is learnt afresh.
#[tokio::test]
async fn a_past_view_scores_its_rows_with_the_model_of_its_date() {
    let (router, _) = loaded().await;
    let then = get(
        &router,
        "/v1/ptl?as_of=2025-03-21&sort=breach_risk&limit=1000",
    )
    .await;
    let expected = per_clock(&router, "&as_of=2025-03-21").await;
    let rows = then["rows"].as_array().unwrap();
    assert!(!rows.is_empty());
    for r in rows {
        let id = r["pathway_id"].as_str().unwrap();
        assert_eq!(r["breach_risk"].as_f64(), Some(expected[id].0), "{id}");
    }
    // Not today's figures: R2 was on day 3 then.
    let today = get(&router, "/v1/ptl?limit=1000").await;
    let risk = |page: &Value, id: &str| {
        page["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["pathway_id"] == id)
            .map(|r| r["breach_risk"].clone())
    };
    assert_ne!(risk(&then, "R2"), risk(&today, "R2"));
    let likely = get(
        &router,
        "/v1/ptl?as_of=2025-03-21&worklist=likely_to_breach&limit=1000",
    )
    .await;
    assert_eq!(
        ids(&likely).into_iter().collect::<BTreeSet<_>>(),
        self::likely(&expected)
    );
}

/// A pathway that changes after its row was scored is scored again: the
/// keys kept in the PTL index never outlive the state they came from.
#[tokio::test]
async fn a_changed_pathway_is_scored_again() {
    let (router, app) = loaded().await;
    // Scored (today's model learnt, every row's keys kept).
    get(&router, "/v1/ptl?sort=breach_risk").await;
    let before = per_clock(&router, "").await;
    // R3's FDS stops (cancer diagnosed, told on day 26): its 62-day clock runs on.
    post_events(
        &router,
        None,
        vec![event(
            "R3",
            "diagnosis_communicated",
            "2025-04-07",
            json!({ "outcome": "cancer_diagnosed" }),
        )],
    )
    .await;
    let after = per_clock(&router, "").await;
    assert_ne!(before["R3"], after["R3"], "the fixture changes R3's risk");
    let page = get(&router, "/v1/ptl?sort=breach_risk&limit=1000").await;
    let row = page["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["pathway_id"] == "R3")
        .unwrap();
    assert_eq!(row["breach_risk"].as_f64(), Some(after["R3"].0));
    assert_eq!(row["breach_risk_clock"], "d62");
    let keys: Vec<f64> = page["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["breach_risk"].as_f64().unwrap())
        .collect();
    assert!(keys.windows(2).all(|w| w[0] >= w[1]), "{keys:?}");
    drop(app);
}
