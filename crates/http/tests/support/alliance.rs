//! The small alliance of the view tests, whose every figure was worked out
//! by hand with a calendar.
//!
//! Today is Monday 2025-04-07. Pathways:
//! - A  RXH lower_gi USC, referred 03-03, triage 03-04, FIT 150 on 02-20.
//!   FDS 35 days open_breached (black), 62-day 35 (29-62, amber); first_test
//!   (due 03-17) and diagnosis (due 03-31) overdue. Next breach FDS 04-01.
//! - B  RHM breast symptomatic, referred 01-20, seen 01-27, diagnosed 02-14
//!   (FDS 25 met), decision to treat 03-03. 62-day 77 (63-104, black); 31-day
//!   35 open_breached. Next breach 62-day 03-24.
//! - C  RXH skin USC, referred 2024-12-20, diagnosed 01-10 (FDS 21 met).
//!   62-day 108 (105+). Escalated note, next action due 04-01 (overdue).
//!   Next breach 62-day 02-21.
//! - D  RTH prostate USC, referred 03-31: 7 days, green clocks, triage (due
//!   04-03) overdue so RAG red. Next breach FDS 04-29.
//! - E  RXH lower_gi USC, referred 02-03, FIT 5 on 01-01 (33 days before),
//!   ruled out 02-20: FDS 17 met; off the PTL.
//! - F  RXH lung USC, referred 01-06, diagnosed 02-10 (FDS 35 breached),
//!   decision 02-17, treated 03-10: 62-day 63 breached, 31-day 21 met.
//! - G  RXH upper_gi USC, referred 01-02, diagnosed 01-28 (FDS 26 met),
//!   transferred to RHM 02-05 (day 34), decision 02-20, treated 03-05:
//!   62-day 62 met; 38-day met, 24-day (28) not: shared 0.5/0.5, met.

use std::sync::Arc;

use axum::Router;
use openptl_app::App;
use serde_json::{json, Value};

use super::event as ev;

pub const NHS: &str = "943 476 5919";

/// Today, for the alliance: Monday 2025-04-07, noon.
pub const NOW: &str = "2025-04-07T12:00:00Z";

pub fn referral(pathway: &str, on: &str, trust: &str, site: &str, route: &str) -> Value {
    ev(
        pathway,
        "referral_received",
        on,
        json!({ "nhs_number": NHS, "trust": trust, "tumour_site": site, "route": route }),
    )
}

pub fn told(pathway: &str, on: &str, outcome: &str) -> Value {
    ev(
        pathway,
        "diagnosis_communicated",
        on,
        json!({ "outcome": outcome }),
    )
}

pub fn fixture() -> Vec<Value> {
    let usc = "urgent_suspected_cancer";
    vec![
        referral("A", "2025-03-03", "RXH", "lower_gi", usc),
        ev(
            "A",
            "triage_completed",
            "2025-03-04",
            json!({"outcome": "straight_to_test"}),
        ),
        ev(
            "A",
            "fit_result_recorded",
            "2025-02-20",
            json!({"value_ug_per_g": 150}),
        ),
        referral("B", "2025-01-20", "RHM", "breast", "breast_symptomatic"),
        ev(
            "B",
            "appointment_attended",
            "2025-01-27",
            json!({"kind": "first_outpatient"}),
        ),
        told("B", "2025-02-14", "cancer_diagnosed"),
        ev(
            "B",
            "decision_to_treat",
            "2025-03-03",
            json!({"modality": "surgery"}),
        ),
        referral("C", "2024-12-20", "RXH", "skin", usc),
        told("C", "2025-01-10", "cancer_diagnosed"),
        ev(
            "C",
            "tracking_note_added",
            "2025-03-25",
            json!({"text": "Awaiting histology", "next_action": "Chase histology", "next_action_due": "2025-04-01", "owner": "MDT coordinator", "escalated": true}),
        ),
        referral("D", "2025-03-31", "RTH", "prostate", usc),
        referral("E", "2025-02-03", "RXH", "lower_gi", usc),
        ev(
            "E",
            "fit_result_recorded",
            "2025-01-01",
            json!({"value_ug_per_g": 5}),
        ),
        told("E", "2025-02-20", "cancer_ruled_out"),
        referral("F", "2025-01-06", "RXH", "lung", usc),
        told("F", "2025-02-10", "cancer_diagnosed"),
        ev(
            "F",
            "decision_to_treat",
            "2025-02-17",
            json!({"modality": "surgery"}),
        ),
        ev(
            "F",
            "treatment_started",
            "2025-03-10",
            json!({"modality": "surgery"}),
        ),
        referral("G", "2025-01-02", "RXH", "upper_gi", usc),
        told("G", "2025-01-28", "cancer_diagnosed"),
        ev(
            "G",
            "pathway_transferred",
            "2025-02-05",
            json!({"to_trust": "RHM"}),
        ),
        ev(
            "G",
            "decision_to_treat",
            "2025-02-20",
            json!({"modality": "surgery"}),
        ),
        ev(
            "G",
            "treatment_started",
            "2025-03-05",
            json!({"modality": "surgery"}),
        ),
    ]
}

/// The alliance loaded into a new app (on a log in memory) at [`NOW`],
/// its router taking the test admin token, and the app.
pub async fn loaded() -> (Router, Arc<App>) {
    let log = Arc::new(openptl_log::MemoryLog::new());
    let app = Arc::new(super::app_at(NOW, log));
    let router = super::authorised_shared(app.clone());
    super::post_events(&router, None, fixture()).await;
    (router, app)
}
