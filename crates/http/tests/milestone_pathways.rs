//! `GET /v1/milestones/pathways` (decision 190): the pathways behind each
//! figure of the milestone view, through the real router, on the hand
//! worked alliance of the view tests ([`support::alliance`]).

mod support;

use axum::http::StatusCode;
use axum::Router;
use openptl_app::access::Role;
use serde_json::Value;
use support::alliance::loaded;
use support::{get_json, request, send, token};

async fn get(router: &Router, uri: &str) -> Value {
    let (status, body) = get_json(router, None, uri).await;
    assert_eq!(status, StatusCode::OK, "{uri}: {body}");
    body
}

fn pathways(list: &Value) -> Vec<&str> {
    list["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["pathway_id"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn a_milestone_figure_lists_its_pathways_latest_first() {
    let (router, _) = loaded().await;
    // A (lower GI, referred 03-03): first test due 03-17, not done by 04-07.
    let overdue = get(
        &router,
        "/v1/milestones/pathways?tumour_site=lower_gi&milestone=first_test&status=overdue",
    )
    .await;
    assert_eq!(pathways(&overdue), ["A"]);
    let a = &overdue["rows"][0];
    assert_eq!(
        [
            &a["due_date"],
            &a["days_late"],
            &a["met_on"],
            &a["trust"],
            &a["fds_status"]
        ],
        [
            &Value::from("2025-03-17"),
            &Value::from(21),
            &Value::Null,
            &Value::from("RXH"),
            &Value::from("open_breached"),
        ]
    );
    // E (ruled out 02-20) never had its first test, due 02-17: missed,
    // with no day it was met.
    let missed = get(
        &router,
        "/v1/milestones/pathways?tumour_site=lower_gi&milestone=first_test&status=missed",
    )
    .await;
    assert_eq!(pathways(&missed), ["E"]);
    assert_eq!(missed["rows"][0]["days_late"], Value::Null);
    // Every status: both; a month of referrals: only March's.
    let every = get(
        &router,
        "/v1/milestones/pathways?tumour_site=lower_gi&milestone=first_test",
    )
    .await;
    assert_eq!(pathways(&every), ["A", "E"]);
    let march = get(
        &router,
        "/v1/milestones/pathways?tumour_site=lower_gi&milestone=first_test&period=2025-03",
    )
    .await;
    assert_eq!(pathways(&march), ["A"]);
}

#[tokio::test]
async fn every_milestone_figure_adds_up_from_its_list() {
    let (router, _) = loaded().await;
    for period in ["", "&period=2025-02", "&period=2025-03"] {
        let report = get(
            &router,
            &format!("/v1/milestones?{}", &period[period.len().min(1)..]),
        )
        .await;
        for site in report["by_tumour_site"].as_array().unwrap() {
            let code = site["tumour_site"].as_str().unwrap();
            for figure in site["milestones"].as_array().unwrap() {
                let name = figure["name"].as_str().unwrap();
                for status in ["met", "missed", "overdue", "pending", "not_applicable"] {
                    let list = get(
                        &router,
                        &format!("/v1/milestones/pathways?tumour_site={code}&milestone={name}&status={status}{period}"),
                    )
                    .await;
                    assert_eq!(
                        list["total"], figure[status],
                        "{code} {name} {status} {period}"
                    );
                }
            }
        }
    }
}

#[tokio::test]
async fn the_list_exports_as_csv_and_refuses_what_it_cannot_answer() {
    let (router, app) = loaded().await;
    let reply = send(
        &router,
        request(
            "GET",
            "/v1/milestones/pathways?tumour_site=lower_gi&milestone=first_test&status=overdue&format=csv",
            None,
            None,
        ),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    let text = reply.text();
    let mut rows = text.lines();
    assert_eq!(
        rows.next(),
        Some("pathway_id,nhs_number,trust,tumour_site,route,referred_on,milestone,due_day,due_date,met_on,status,days_late,fds_status")
    );
    assert_eq!(
        rows.next(),
        Some("A,9434765919,RXH,lower_gi,urgent_suspected_cancer,2025-03-03,first_test,14,2025-03-17,,overdue,21,open_breached")
    );
    assert_eq!(
        reply.headers["content-disposition"],
        "attachment; filename=\"lower_gi-first_test-overdue-pathways.csv\""
    );
    for (uri, field) in [
        (
            "/v1/milestones/pathways?tumour_site=lung&milestone=first_test",
            "milestone",
        ),
        ("/v1/milestones/pathways?milestone=triage", "tumour_site"),
        ("/v1/milestones/pathways?tumour_site=skin", "milestone"),
        (
            "/v1/milestones/pathways?tumour_site=skin&milestone=triage&status=late",
            "status",
        ),
        (
            "/v1/milestones/pathways?tumour_site=skin&milestone=triage&sort=x",
            "sort",
        ),
    ] {
        let (status, body) = get_json(&router, None, uri).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{uri}: {body}");
        assert_eq!(body["error"]["details"]["field"], field, "{uri}: {body}");
    }
    let (_, body) = get_json(
        &router,
        None,
        "/v1/milestones/pathways?tumour_site=lung&milestone=first_test",
    )
    .await;
    assert!(
        body["error"]["message"].as_str().unwrap().contains("`ct`"),
        "names the site's milestones: {body}"
    );
    let analyst = token(&app, Role::Analyst, &["*"], None, "analyst");
    let (status, _) = get_json(
        &router,
        Some(&analyst),
        "/v1/milestones/pathways?tumour_site=lower_gi&milestone=first_test",
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let manager = token(&app, Role::Manager, &["RHM"], None, "manager-rhm");
    let (status, scoped) = get_json(
        &router,
        Some(&manager),
        "/v1/milestones/pathways?tumour_site=lower_gi&milestone=first_test",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        scoped["total"], 0,
        "RXH's pathways are not the RHM manager's"
    );
}

/// The pathways are read a page at a time, as the clocks are (decision
/// 214): each page names the whole list's total, and a bad `limit` is
/// refused naming it.
#[tokio::test]
async fn the_pathways_read_a_page_at_a_time() {
    let (router, _) = loaded().await;
    let uri = "/v1/milestones/pathways?tumour_site=lower_gi&milestone=first_test";
    let first = get(&router, &format!("{uri}&limit=1")).await;
    let second = get(&router, &format!("{uri}&limit=1&offset=1")).await;
    assert_eq!(
        (pathways(&first), pathways(&second)),
        (vec!["A"], vec!["E"])
    );
    for page in [&first, &second] {
        assert_eq!(page["total"], 2, "{page}");
        assert_eq!(page["limit"], 1, "{page}");
    }
    let (status, body) = get_json(&router, None, &format!("{uri}&limit=0")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["details"]["field"], "limit", "{body}");
}
