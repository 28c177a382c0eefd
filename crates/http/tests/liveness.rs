//! `/healthz` answers while expensive views run (issue 22, SPEC 7): no view
//! computes on the async workers, so a liveness probe is never stuck behind
//! milestone pages, standards, extracts, past views and `/metrics` scrapes.
//! The ceiling is generous (a stall, not a latency target, is what fails).
//! Beside the real views (cheap once today's cells are kept), stand-in
//! computations of 1.5 s go through the same gate: on an async worker,
//! two of them would hold both workers, and `/healthz`, for that long.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use openptl_log::{EventLog, MemoryLog};
use serde_json::json;
use support::{app_at, event, request, send};

const NOW: &str = "2025-04-07T12:00:00Z";

/// Pathways in the alliance: enough that the views below take a while in a
/// debug build.
const PATHWAYS: usize = 6000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_answers_while_expensive_views_run() {
    let log: Arc<dyn EventLog> = Arc::new(MemoryLog::new());
    let app = Arc::new(app_at(NOW, log));
    let router = support::authorised_shared(app.clone());
    let sites = ["lower_gi", "breast", "lung", "skin", "prostate"];
    let trusts = ["RXH", "RHM", "RTH"];
    for batch in 0..PATHWAYS / 1000 {
        let events: Vec<_> = (0..1000)
            .flat_map(|n| {
                let i = batch * 1000 + n;
                let id = format!("P{i:06}");
                let referred = chrono::NaiveDate::from_ymd_opt(2025, 1, 1).unwrap()
                    + chrono::Days::new((i % 95) as u64);
                let mut events = vec![event(
                    &id,
                    "referral_received",
                    &referred.to_string(),
                    json!({ "nhs_number": "943 476 5919", "trust": trusts[i % 3],
                            "tumour_site": sites[i % 5], "route": "urgent_suspected_cancer" }),
                )];
                if i % 2 == 0 {
                    let told = referred + chrono::Days::new(10 + (i % 30) as u64);
                    if told <= chrono::NaiveDate::from_ymd_opt(2025, 4, 7).unwrap() {
                        events.push(event(
                            &id,
                            "diagnosis_communicated",
                            &told.to_string(),
                            json!({ "outcome": if i % 4 == 0 { "cancer_ruled_out" } else { "cancer_diagnosed" } }),
                        ));
                    }
                }
                events
            })
            .collect();
        for chunk in events.chunks(1000) {
            let body = json!({ "events": chunk });
            let reply = send(&router, request("POST", "/v1/events", None, Some(&body))).await;
            assert!(reply.status.is_success(), "{}", reply.text());
        }
    }

    let views = [
        "/v1/milestones",
        "/v1/standards/fds?period=2025-03",
        "/v1/standards/d62?period=2025-03",
        "/v1/returns/cwt?period=2025-03",
        "/v1/returns/canptl?week_ending=2025-04-06",
        "/v1/ptl?as_of=2025-03-31",
        "/v1/fit?period=2025-03",
        "/metrics",
    ];
    let running = Arc::new(AtomicBool::new(true));
    // The probe starts first and counts from here: a stall before its
    // first answer counts too.
    let started = Instant::now();
    let probe = {
        let router = router.clone();
        let running = running.clone();
        tokio::spawn(async move {
            // From one answer to the next, the 10 ms pause included: a
            // blocked worker delays the probe itself, not only its answer.
            let mut worst = Duration::ZERO;
            let mut probes = 0;
            let mut last = started;
            while running.load(Ordering::SeqCst) {
                let reply = send(&router, request("GET", "/healthz", None, None)).await;
                assert_eq!(reply.status, StatusCode::OK);
                worst = worst.max(last.elapsed());
                last = Instant::now();
                probes += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            (worst, probes)
        })
    };
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            app.stand_in_view(Duration::from_millis(1500))
                .await
                .unwrap();
        }));
    }
    for round in 0..4 {
        for uri in views {
            let router = router.clone();
            tasks.push(tokio::spawn(async move {
                let reply = send(&router, request("GET", uri, None, None)).await;
                // A past view may be turned away while others queue (429);
                // everything else answers.
                assert!(
                    reply.status.is_success() || reply.status == StatusCode::TOO_MANY_REQUESTS,
                    "{uri} (round {round}): {} {}",
                    reply.status,
                    reply.text()
                );
            }));
        }
    }
    for task in tasks {
        task.await.unwrap();
    }
    let views_took = started.elapsed();
    running.store(false, Ordering::SeqCst);
    let (worst, probes) = probe.await.unwrap();
    eprintln!(
        "views took {views_took:?}; {probes} /healthz probes meanwhile, the longest gap {worst:?}"
    );
    assert!(
        probes >= 3,
        "the views ended too soon to probe ({views_took:?})"
    );
    assert!(
        worst < Duration::from_secs(1),
        "/healthz went {worst:?} without an answer while views ran"
    );
}
