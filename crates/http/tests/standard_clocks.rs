//! `GET /v1/standards/{standard}/clocks` (decision 187): the clocks behind
//! each figure of the standards view, through the real router, on the hand
//! worked alliance of the view tests ([`support::alliance`]).

mod support;

use axum::http::StatusCode;
use axum::Router;
use openptl_app::access::Role;
use serde_json::{json, Value};
use support::alliance::loaded;
use support::{get_json, request, send, token};

async fn get(router: &Router, uri: &str) -> Value {
    let (status, body) = get_json(router, None, uri).await;
    assert_eq!(status, StatusCode::OK, "{uri}: {body}");
    body
}

/// Each line's pathway, trust and share, in the list's order.
fn lines(list: &Value) -> Vec<(String, String, f64)> {
    list["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["pathway_id"].as_str().unwrap().to_string(),
                r["trust"].as_str().unwrap().to_string(),
                r["share"].as_f64().unwrap(),
            )
        })
        .collect()
}

fn line(pathway: &str, trust: &str, share: f64) -> (String, String, f64) {
    (pathway.to_string(), trust.to_string(), share)
}

#[tokio::test]
async fn the_62_day_figures_list_each_trusts_share_breaches_first() {
    let (router, _) = loaded().await;
    // March: F breached (63 days, RXH), G met and shared after its
    // transfer (0.5 RHM, 0.5 RXH).
    let all = get(&router, "/v1/standards/d62/clocks?period=2025-03").await;
    assert_eq!(
        lines(&all),
        [
            line("F", "RXH", 1.0),
            line("G", "RHM", 0.5),
            line("G", "RXH", 0.5)
        ]
    );
    assert_eq!(
        (all["total"].clone(), all["share"].clone()),
        (json!(3), json!(2.0))
    );
    let report = get(&router, "/v1/standards/d62?period=2025-03").await;
    assert_eq!(all["share"], report["total"]);
    let f = &all["rows"][0];
    assert_eq!(
        [
            &f["outcome"],
            &f["start"],
            &f["stop"],
            &f["stop_reason"],
            &f["days"],
            &f["target_days"],
            &f["tumour_site"],
            &f["route"]
        ],
        [
            &json!("breached"),
            &json!("2025-01-06"),
            &json!("2025-03-10"),
            &json!("treatment_started"),
            &json!(63),
            &json!(62),
            &json!("lung"),
            &json!("urgent_suspected_cancer"),
        ]
    );
    assert_eq!(f["nhs_number"], "9434765919", "an admin sees NHS numbers");

    let breached = get(
        &router,
        "/v1/standards/d62/clocks?period=2025-03&outcome=breached",
    )
    .await;
    assert_eq!(lines(&breached), [line("F", "RXH", 1.0)]);
    assert_eq!(breached["share"], report["breached"]);
    let rhm = get(&router, "/v1/standards/d62/clocks?period=2025-03&trust=RHM").await;
    assert_eq!(lines(&rhm), [line("G", "RHM", 0.5)]);
    let lung = get(
        &router,
        "/v1/standards/d62/clocks?period=2025-03&tumour_site=lung",
    )
    .await;
    assert_eq!(lines(&lung), [line("F", "RXH", 1.0)]);
}

#[tokio::test]
async fn every_trusts_figures_add_up_from_their_lists() {
    let (router, _) = loaded().await;
    for (standard, period) in [
        ("fds", "2025-02"),
        ("fds", "2025-01"),
        ("d31", "2025-03"),
        ("d62", "2025-03"),
    ] {
        let report = get(
            &router,
            &format!("/v1/standards/{standard}?period={period}"),
        )
        .await;
        for trust in report["by_trust"].as_array().unwrap() {
            let code = trust["trust"].as_str().unwrap();
            for (outcome, figure) in [
                ("", "total"),
                ("&outcome=breached", "breached"),
                ("&outcome=within_target", "within_target"),
            ] {
                let list = get(
                    &router,
                    &format!(
                        "/v1/standards/{standard}/clocks?period={period}&trust={code}{outcome}"
                    ),
                )
                .await;
                // An excluded clock is listed with no share.
                let share = list["share"].clone();
                assert_eq!(share, trust[figure], "{standard} {period} {code} {figure}");
            }
        }
    }
}

#[tokio::test]
async fn the_fds_lists_say_what_the_patient_was_told() {
    let (router, _) = loaded().await;
    // February: F breached (35 days, told cancer), B met (25), E ruled out (17).
    let feb = get(&router, "/v1/standards/fds/clocks?period=2025-02").await;
    assert_eq!(
        lines(&feb),
        [
            line("F", "RXH", 1.0),
            line("B", "RHM", 1.0),
            line("E", "RXH", 1.0)
        ]
    );
    let told: Vec<&str> = feb["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["fds_outcome"].as_str().unwrap())
        .collect();
    assert_eq!(told, ["diagnosed", "diagnosed", "ruled_out"]);
    let ruled_out = get(
        &router,
        "/v1/standards/fds/clocks?period=2025-02&fds_outcome=ruled_out",
    )
    .await;
    assert_eq!(lines(&ruled_out), [line("E", "RXH", 1.0)]);
    assert_eq!(ruled_out["rows"][0]["days"], 17);
}

#[tokio::test]
async fn an_excluded_clock_is_listed_on_the_day_it_was_excluded() {
    let (router, _) = loaded().await;
    let referral = |id: &str| {
        support::alliance::referral(id, "2025-03-10", "RTH", "skin", "urgent_suspected_cancer")
    };
    let excluded = |id: &str, day: &str, reason: &str| {
        support::event(id, "fds_excluded", day, json!({ "reason": reason }))
    };
    support::post_events(
        &router,
        None,
        vec![
            referral("X"),
            excluded("X", "2025-03-12", "patient_choice"),
            referral("Y"),
            excluded("Y", "2025-03-14", "clinical_reason"),
        ],
    )
    .await;
    let excluded = get(
        &router,
        "/v1/standards/fds/clocks?period=2025-03&outcome=excluded",
    )
    .await;
    assert_eq!(
        lines(&excluded),
        [line("X", "RTH", 0.0), line("Y", "RTH", 0.0)]
    );
    assert_eq!(excluded["rows"][0]["stop"], "2025-03-12");
    // Each line says why (SPEC 2.2: exclusions are audited), and the
    // report counts them by reason, overall and for the trust.
    assert_eq!(excluded["rows"][0]["exclusion_reason"], "patient_choice");
    assert_eq!(excluded["rows"][1]["exclusion_reason"], "clinical_reason");
    let report = get(&router, "/v1/standards/fds?period=2025-03").await;
    assert_eq!(excluded["total"], report["excluded"]);
    let by_reason = json!({ "patient_choice": 1, "clinical_reason": 1, "other": 0 });
    assert_eq!(report["excluded_by_reason"], by_reason);
    let rth = report["by_trust"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["trust"] == "RTH")
        .unwrap();
    assert_eq!(rth["excluded_by_reason"], by_reason);
    // A reason's figure opens its clocks.
    let clinical = get(
        &router,
        "/v1/standards/fds/clocks?period=2025-03&exclusion_reason=clinical_reason",
    )
    .await;
    assert_eq!(lines(&clinical), [line("Y", "RTH", 0.0)]);
    let uri = "/v1/standards/fds/clocks?period=2025-03&exclusion_reason=clinical_reason&format=csv";
    let csv = send(&router, request("GET", uri, None, None)).await.text();
    let header = csv.lines().next().unwrap();
    assert!(
        header.ends_with(",fds_outcome,exclusion_reason"),
        "{header}"
    );
    assert!(
        csv.lines().nth(1).unwrap().ends_with(",clinical_reason"),
        "{csv}"
    );
    // The pathway says it too.
    let x = get(&router, "/v1/pathways/X").await;
    assert_eq!(
        x["fds_exclusion"],
        json!({ "date": "2025-03-12", "reason": "patient_choice" })
    );
    // The figures count it apart: a list asks for it, or does not show it.
    let counted = get(&router, "/v1/standards/fds/clocks?period=2025-03").await;
    assert!(lines(&counted).iter().all(|(p, _, _)| p != "X"));
    assert_eq!(counted["share"], report["total"]);
}

#[tokio::test]
async fn the_31_day_lists_follow_the_treatment_split() {
    let (router, _) = loaded().await;
    // March: G treated 03-05 at RHM (after its transfer), F 03-10 at RXH.
    let march = get(&router, "/v1/standards/d31/clocks?period=2025-03").await;
    let rows = march["rows"].as_array().unwrap();
    let described: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!([
                r["pathway_id"],
                r["trust"],
                r["treatment"],
                r["modality_group"],
                r["modality"],
                r["stop"]
            ])
        })
        .collect();
    assert_eq!(
        described,
        [
            json!([
                "F",
                "RXH",
                "first_definitive",
                "surgery",
                "surgery",
                "2025-03-10"
            ]),
            json!([
                "G",
                "RHM",
                "first_definitive",
                "surgery",
                "surgery",
                "2025-03-05"
            ]),
        ]
    );
    assert_eq!(rows[0]["days"], 21);
    let subsequent = get(
        &router,
        "/v1/standards/d31/clocks?period=2025-03&treatment=subsequent",
    )
    .await;
    assert_eq!(subsequent["total"], 0);
    let drug = get(
        &router,
        "/v1/standards/d31/clocks?period=2025-03&modality=anticancer_drug",
    )
    .await;
    assert_eq!(drug["total"], 0);
}

#[tokio::test]
async fn a_past_view_lists_what_its_moment_counted() {
    let (router, _) = loaded().await;
    // As of 03-07, G had been treated (03-05) and F not yet (03-10).
    let then = get(
        &router,
        "/v1/standards/d62/clocks?period=2025-03&as_of=2025-03-07",
    )
    .await;
    assert_eq!(lines(&then), [line("G", "RHM", 0.5), line("G", "RXH", 0.5)]);
    let report = get(&router, "/v1/standards/d62?period=2025-03&as_of=2025-03-07").await;
    assert_eq!(then["share"], report["total"]);
    // Known before anything was recorded: nothing.
    let before = get(
        &router,
        "/v1/standards/d62/clocks?period=2025-03&known_at=2020-01-01T00:00:00Z",
    )
    .await;
    assert_eq!(before["total"], 0);
}

#[tokio::test]
async fn the_list_exports_as_csv() {
    let (router, _) = loaded().await;
    let reply = send(
        &router,
        request(
            "GET",
            "/v1/standards/d31/clocks?period=2025-03&format=csv",
            None,
            None,
        ),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.content_type().starts_with("text/csv"));
    let named = |reply: &support::Reply| {
        reply.headers["content-disposition"]
            .to_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(
        named(&reply),
        "attachment; filename=\"d31-2025-03-clocks.csv\""
    );
    // Another list, another name: its filters and moment are in it.
    let narrower = send(
        &router,
        request(
            "GET",
            "/v1/standards/d62/clocks?period=2025-03&trust=RHM&outcome=breached&as_of=2025-03-07&format=csv",
            None,
            None,
        ),
    )
    .await;
    assert_eq!(
        named(&narrower),
        "attachment; filename=\"d62-2025-03-RHM-breached-as-of-2025-03-07-clocks.csv\""
    );
    let text = reply.text();
    let mut rows = text.lines();
    assert_eq!(
        rows.next(),
        Some("pathway_id,nhs_number,trust,current_trust,tumour_site,route,referred_on,outcome,share,start,stop,stop_reason,adjustment_days,days,target_days,treatment,modality_group,modality,plan_id,start_reason")
    );
    assert_eq!(
        rows.next(),
        Some("F,9434765919,RXH,RXH,lung,urgent_suspected_cancer,2025-01-06,within_target,1,2025-02-17,2025-03-10,treatment_started,0,21,31,first_definitive,surgery,surgery,,decision_to_treat")
    );
    assert_eq!(rows.count(), 1);
}

#[tokio::test]
async fn lists_are_scoped_masked_and_refused_as_patient_lists_are() {
    let (router, app) = loaded().await;
    let uri = "/v1/standards/d62/clocks?period=2025-03";
    let manager = token(&app, Role::Manager, &["RHM"], None, "manager-rhm");
    let (status, rhm) = get_json(&router, Some(&manager), uri).await;
    assert_eq!(status, StatusCode::OK, "{rhm}");
    assert_eq!(
        lines(&rhm),
        [line("G", "RHM", 0.5)],
        "only the manager's trust"
    );
    let viewer = token(&app, Role::AllianceViewer, &[], Some("demo"), "viewer");
    let (status, seen) = get_json(&router, Some(&viewer), uri).await;
    assert_eq!(status, StatusCode::OK, "{seen}");
    for row in seen["rows"].as_array().unwrap() {
        assert_eq!(
            row["nhs_number"], "*** *** 5919",
            "masked for a viewer: {row}"
        );
    }
    let analyst = token(&app, Role::Analyst, &["*"], None, "analyst");
    let (status, body) = get_json(&router, Some(&analyst), uri).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("an analyst may not see this"),
        "{body}"
    );
}

#[tokio::test]
async fn bad_filters_are_refused_naming_the_field() {
    let (router, _) = loaded().await;
    for (uri, field) in [
        (
            "/v1/standards/d62/clocks?fds_outcome=diagnosed",
            "fds_outcome",
        ),
        ("/v1/standards/fds/clocks?treatment=subsequent", "treatment"),
        ("/v1/standards/d62/clocks?modality=surgery", "modality"),
        ("/v1/standards/fds/clocks?outcome=late", "outcome"),
        ("/v1/standards/d31/clocks?modality=chemo", "modality"),
        ("/v1/standards/d31/clocks?period=2025-13", "period"),
        ("/v1/standards/d31/clocks?sort=days", "sort"),
        ("/v1/standards/d62/clocks?outcome=excluded", "outcome"),
        (
            "/v1/standards/d62/clocks?exclusion_reason=other",
            "exclusion_reason",
        ),
        (
            "/v1/standards/fds/clocks?exclusion_reason=choice",
            "exclusion_reason",
        ),
        (
            "/v1/standards/fds/clocks?exclusion_reason=other&outcome=breached",
            "exclusion_reason",
        ),
    ] {
        let (status, body) = get_json(&router, None, uri).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{uri}: {body}");
        assert_eq!(body["error"]["details"]["field"], field, "{uri}: {body}");
    }
    let (status, _) = get_json(&router, None, "/v1/standards/d99/clocks").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// Today's lists of this month and the last read only the pathways
/// today's CWT index holds for the month; the same list read as known at
/// a moment after every record (every state read, as a past view) is the
/// same.
#[tokio::test]
async fn todays_list_read_from_the_index_is_the_list_read_whole() {
    let (router, _) = loaded().await;
    for (standard, period) in [
        ("fds", "2025-03"),
        ("d31", "2025-03"),
        ("d62", "2025-03"),
        ("fds", "2025-04"),
    ] {
        let uri = format!("/v1/standards/{standard}/clocks?period={period}");
        let today = get(&router, &uri).await;
        let whole = get(&router, &format!("{uri}&known_at=2099-01-01T00:00:00Z")).await;
        assert_eq!(today["rows"], whole["rows"], "{uri}");
    }
}

/// A list is read a page at a time (decision 214): the pages, in turn,
/// are the whole list; each says the whole list's total, share and
/// transferred lines, and the access log the lines sent; the CSV takes
/// the same page; a page past the end is empty; and a bad `offset` or
/// `limit` is refused naming it.
#[tokio::test]
async fn a_list_reads_a_page_at_a_time() {
    let (router, app) = loaded().await;
    let logged = || {
        let last = &app.access_log().recent(None, None, 1)[0];
        (last.action.clone(), last.rows)
    };
    let uri = "/v1/standards/d62/clocks?period=2025-03";
    let whole = get(&router, uri).await;
    let all = lines(&whole);
    assert_eq!(all.len(), 3, "{whole}");
    assert_eq!(logged(), ("standards_clocks".to_string(), Some(3)));
    assert_eq!(
        (whole["offset"].clone(), whole["limit"].clone()),
        (json!(0), Value::Null)
    );
    // G's 62-day outcome is shared half and half after its transfer.
    assert_eq!(whole["shared_lines"], json!(2), "{whole}");
    assert_eq!(whole["charged_elsewhere_lines"], json!(0), "{whole}");
    for limit in [1, 2, 3, 5] {
        let mut paged = Vec::new();
        for offset in (0..all.len()).step_by(limit) {
            let page = get(&router, &format!("{uri}&offset={offset}&limit={limit}")).await;
            assert_eq!(
                (page["offset"].clone(), page["limit"].clone()),
                (json!(offset), json!(limit))
            );
            for field in ["total", "share", "shared_lines", "charged_elsewhere_lines"] {
                assert_eq!(page[field], whole[field], "{field} of a page");
            }
            assert!(lines(&page).len() <= limit);
            assert_eq!(
                logged().1,
                Some(lines(&page).len()),
                "the lines sent, logged"
            );
            paged.extend(lines(&page));
        }
        assert_eq!(paged, all, "pages of {limit}");
    }
    let past = get(&router, &format!("{uri}&offset=3")).await;
    assert!(lines(&past).is_empty(), "{past}");
    assert_eq!(logged().1, Some(0));
    assert_eq!(past["total"], json!(3));
    let reply = send(
        &router,
        request(
            "GET",
            &format!("{uri}&format=csv&offset=1&limit=1"),
            None,
            None,
        ),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    let csv = String::from_utf8(reply.body.to_vec()).unwrap();
    assert_eq!(csv.lines().count(), 2, "the header and one line: {csv}");
    assert!(csv.lines().nth(1).unwrap().starts_with("G,"), "{csv}");
    assert_eq!(
        reply.headers["content-disposition"].to_str().unwrap(),
        "attachment; filename=\"d62-2025-03-lines-2-2-clocks.csv\"",
        "a page's file is named with its lines"
    );
    for (query, field) in [
        ("offset=-1", "offset"),
        ("offset=x", "offset"),
        ("limit=0", "limit"),
        ("limit=100000001", "limit"),
        ("limit=", "limit"),
    ] {
        let (status, body) = get_json(&router, None, &format!("{uri}&{query}")).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{query}: {body}");
        assert_eq!(body["error"]["details"]["field"], field, "{query}: {body}");
    }
}
