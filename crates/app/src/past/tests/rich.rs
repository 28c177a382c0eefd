//! The same equality as `fast_past_views_equal_the_full_re_evaluation`,
//! over histories wider than `histories::op` makes: every route, DNAs and
//! cancellations, consultant upgrades, diagnostic tests, tumour site
//! changes, tracking notes with next actions and escalations, FIT results
//! before the referral, exclusions, closures, declined offers and
//! subsequent plans with ECADs; corrections across months and voids;
//! moments exactly at a record's instant and one microsecond before; days
//! starting around the end of British Summer Time; views scoped to one
//! trust; and a projection restored from an older day's snapshot (found
//! missing by a review of the property tests, which passed every case).

use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use super::*;
use crate::histories::{date, runtime, Settable};

const TRUSTS: [&str; 3] = ["RXH", "RHM", "RTH"];

fn referral(pathway: &str, day: u16, pick: u8) -> Value {
    let p = usize::from(pick);
    let route = [
        "urgent_suspected_cancer",
        "other",
        "breast_symptomatic",
        "screening",
        "recurrence",
    ][p % 5];
    let mut data = json!({ "nhs_number": "943 476 5919", "trust": TRUSTS[p / 5 % 3],
        "tumour_site": (["lower_gi", "breast", "lung", "prostate", "testicular"][p / 15 % 5]),
        "route": route });
    if route == "screening" {
        data["screening_programme"] = json!("bowel");
    }
    json!({ "pathway_id": pathway, "type": "referral_received", "occurred_on": date(day), "data": data })
}

/// An event of kind `kind` (0 to 16) on `pathway`, dated `day` (a FIT
/// result 40 days before it).
fn event(pathway: &str, kind: u8, day: u16, pick: u8) -> Value {
    let p = usize::from(pick);
    let modality = ["surgery", "anticancer_drug", "radiotherapy"][p % 3];
    let mut on = day;
    let (ty, data) = match kind {
        0 => ("triage_completed", json!({ "outcome": "straight_to_test" })),
        1 => (
            "appointment_attended",
            json!({ "kind": (["first_outpatient", "one_stop"][p % 2]), "mode": (["virtual", "face_to_face"][p / 2 % 2]) }),
        ),
        2 => (
            "appointment_missed",
            json!({ "kind": (["first_outpatient", "one_stop"][p % 2]), "reason": (["did_not_attend", "patient_cancelled"][p / 2 % 2]) }),
        ),
        3 => ("consultant_upgraded", json!({})),
        4 => (
            "diagnostic_performed",
            json!({ "test": (["colonoscopy", "ct", "mpmri", "prostate_biopsy", "ct_colonography"][p % 5]) }),
        ),
        5 => (
            "diagnosis_communicated",
            json!({ "outcome": (["cancer_diagnosed", "cancer_ruled_out"][p % 2]), "method": "letter" }),
        ),
        6 => ("fds_excluded", json!({ "reason": "clinical_reason" })),
        7 => ("decision_to_treat", json!({ "modality": modality })),
        8 => ("treatment_started", json!({ "modality": modality })),
        9 => ("pathway_transferred", json!({ "to_trust": TRUSTS[p % 3] })),
        10 => (
            "tumour_site_changed",
            json!({ "tumour_site": (["lower_gi", "lung", "testicular", "skin"][p % 4]) }),
        ),
        11 => (
            "tracking_note_added",
            json!({ "text": "chase", "next_action": "call", "next_action_due": date(day + (p % 30) as u16),
                    "owner": "me", "escalated": p % 3 == 0 }),
        ),
        12 => {
            on = day.saturating_sub(40);
            (
                "fit_result_recorded",
                json!({ "value_ug_per_g": ([4.0, 50.0, 150.0][p % 3]) }),
            )
        }
        13 => ("pathway_closed", json!({ "reason": "other" })),
        14 => (
            "treatment_offer_declined",
            json!({ "offered_on": date(day), "available_from": date(day + 1 + (p % 20) as u16), "setting": "admitted" }),
        ),
        15 => (
            "decision_to_treat",
            json!({ "modality": modality, "treatment": "subsequent", "plan_id": "rt",
                    "earliest_clinically_appropriate_date": date(day + (p % 25) as u16) }),
        ),
        _ => (
            "treatment_started",
            json!({ "modality": modality, "treatment": "subsequent", "plan_id": "rt" }),
        ),
    };
    json!({ "pathway_id": pathway, "type": ty, "occurred_on": date(on), "data": data })
}

#[derive(Debug, Clone)]
enum RichOp {
    Event {
        pathway: u8,
        kind: u8,
        day: u16,
        pick: u8,
    },
    Correct {
        pathway: u8,
        pick: u8,
        day: u16,
    },
    Void {
        pathway: u8,
        pick: u8,
    },
    NextDay {
        days: u8,
    },
}

fn rich_op() -> impl Strategy<Value = RichOp> {
    prop_oneof![
        8 => (0u8..6, 0u8..17, 0u16..70, any::<u8>())
            .prop_map(|(pathway, kind, day, pick)| RichOp::Event { pathway, kind, day, pick }),
        2 => (0u8..6, any::<u8>(), 0u16..70)
            .prop_map(|(pathway, pick, day)| RichOp::Correct { pathway, pick, day }),
        1 => (0u8..6, any::<u8>()).prop_map(|(pathway, pick)| RichOp::Void { pathway, pick }),
        1 => (1u8..20).prop_map(|days| RichOp::NextDay { days }),
    ]
}

/// The id of one of the pathway's stored events, if it has any.
async fn pick_event(app: &App, pathway: &str, pick: u8) -> Option<String> {
    let history = app.projection.history(pathway).await.ok()??;
    let event = history.get(usize::from(pick) % history.len().max(1))?;
    Some(event.event_id.to_string())
}

/// Appends what `op` says (refusals are part of the game: nothing is kept).
async fn apply(app: &App, clock: &Settable, referred: &[u16], op: RichOp) {
    let today = || crate::london_today(crate::Clock::now(clock)).to_string();
    let event = match op {
        RichOp::Event {
            pathway,
            kind,
            day,
            pick,
        } => Some(event(
            &format!("P{pathway}"),
            kind,
            referred[usize::from(pathway)] + day,
            pick,
        )),
        RichOp::Correct { pathway, pick, day } => {
            let id = format!("P{pathway}");
            pick_event(app, &id, pick).await.map(|target| {
                json!({ "pathway_id": id, "type": "event_corrected", "occurred_on": today(),
                        "data": { "corrects": target, "reason": "keyed wrongly",
                                  "new_occurred_on": date(referred[usize::from(pathway)] + day) } })
            })
        }
        RichOp::Void { pathway, pick } => {
            let id = format!("P{pathway}");
            pick_event(app, &id, pick).await.map(|target| {
                json!({ "pathway_id": id, "type": "event_voided", "occurred_on": today(),
                        "data": { "voids": target, "reason": "not this patient" } })
            })
        }
        RichOp::NextDay { days } => {
            *clock.0.lock().unwrap() += chrono::Duration::days(i64::from(days));
            None
        }
    };
    if let Some(event) = event {
        let _ = app
            .append(vec![event], &Principal::system("test"), false)
            .await;
    }
}

/// Every record's recorded instant, and one microsecond before it.
async fn instants(app: &App) -> Vec<DateTime<Utc>> {
    let positions: Vec<u64> = (1..=app.log.head()).collect();
    let records = app.log.read_positions(&positions).await.unwrap();
    records
        .iter()
        .flat_map(|r| {
            [
                r.recorded_at - chrono::Duration::microseconds(1),
                r.recorded_at,
            ]
        })
        .collect()
}

/// A fresh app on a memory log (with a snapshot path) on `start`, and its
/// six pathways referred.
async fn started(
    start: &str,
    referrals: &[(u8, u16)],
) -> (
    App,
    Arc<Settable>,
    Arc<dyn openptl_log::EventLog>,
    tempfile::TempDir,
    Vec<u16>,
) {
    let clock = Arc::new(Settable(Mutex::new(start.parse().unwrap())));
    let log: Arc<dyn openptl_log::EventLog> = Arc::new(openptl_log::MemoryLog::new());
    let dir = tempfile::tempdir().unwrap();
    let app = App::open(
        log.clone(),
        openptl_rules::RulesConfig::defaults(),
        clock.clone(),
        Some(dir.path().join("projection.snapshot")),
    );
    app.set_past_views_read_all(true);
    let batch = referrals
        .iter()
        .enumerate()
        .map(|(n, (pick, day))| referral(&format!("P{n}"), *day, *pick))
        .collect();
    app.append(batch, &Principal::system("test"), false)
        .await
        .unwrap();
    let referred = referrals.iter().map(|(_, day)| *day).collect();
    (app, clock, log, dir, referred)
}

async fn rich_histories(
    start: &str,
    referrals: Vec<(u8, u16)>,
    ops: Vec<RichOp>,
    picks: Vec<(u16, u16)>,
) -> Result<(), TestCaseError> {
    let (app, clock, _log, _dir, referred) = started(start, &referrals).await;
    for (n, op) in ops.into_iter().enumerate() {
        apply(&app, &clock, &referred, op).await;
        if n % 12 == 11 {
            app.caught_up(std::time::Duration::from_secs(5)).await;
            check(&app, &instants(&app).await, &picks).await?;
        }
    }
    app.caught_up(std::time::Duration::from_secs(5)).await;
    let moments = instants(&app).await;
    check(&app, &moments, &picks).await?;
    check_for(&app, &moments, &picks, &rhm()).await?;
    let (again, _dir) = reopened(&app).await;
    check(&again, &moments, &picks).await?;
    Ok(())
}

async fn restored_from_an_older_day(
    referrals: Vec<(u8, u16)>,
    before: Vec<RichOp>,
    days: u8,
    after: Vec<RichOp>,
    picks: Vec<(u16, u16)>,
) -> Result<(), TestCaseError> {
    let (app, clock, log, dir, referred) = started("2025-10-20T12:00:00Z", &referrals).await;
    for op in before {
        apply(&app, &clock, &referred, op).await;
        app.caught_up(std::time::Duration::from_secs(5)).await;
    }
    assert!(
        app.replaced_states_ready(std::time::Duration::from_secs(10))
            .await
    );
    let projection = app.projection.clone();
    let written = tokio::task::spawn_blocking(move || projection.write_snapshot())
        .await
        .unwrap()
        .unwrap();
    assert!(written.is_some());
    *clock.0.lock().unwrap() += chrono::Duration::days(i64::from(days));
    for op in after {
        apply(&app, &clock, &referred, op).await;
        app.caught_up(std::time::Duration::from_secs(5)).await;
    }
    let moments = instants(&app).await;
    check(&app, &moments, &picks).await?;
    drop(app);
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    // Restored the next day from the snapshot of an older one.
    *clock.0.lock().unwrap() += chrono::Duration::days(1);
    let again = opened_at(log, clock, &dir.path().join("projection.snapshot")).await;
    check(&again, &moments, &picks).await?;
    check_for(&again, &moments, &picks, &rhm()).await?;
    Ok(())
}

/// The views of one trust.
fn rhm() -> TrustFilter {
    TrustFilter(Some(["RHM".to_string()].into_iter().collect()))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(8))]

    #[test]
    fn fast_past_views_of_rich_histories_equal_the_full_re_evaluation(
        referrals in proptest::collection::vec((any::<u8>(), 200u16..285), 6),
        ops in proptest::collection::vec(rich_op(), 1..50),
        picks in proptest::collection::vec((any::<u16>(), any::<u16>()), 3),
        start in 0usize..3,
    ) {
        // Late evening UTC around the end of BST (26 October 2025).
        let start = ["2025-10-20T23:30:00Z", "2025-10-25T23:30:00Z", "2025-11-02T00:30:00Z"][start];
        runtime().block_on(rich_histories(start, referrals, ops, picks))?;
    }

    #[test]
    fn fast_past_views_after_a_restore_from_an_older_day_equal_the_full_re_evaluation(
        referrals in proptest::collection::vec((any::<u8>(), 220u16..285), 6),
        before in proptest::collection::vec(rich_op(), 1..25),
        days in 0u8..20,
        after in proptest::collection::vec(rich_op(), 1..25),
        picks in proptest::collection::vec((any::<u16>(), any::<u16>()), 3),
    ) {
        runtime().block_on(restored_from_an_older_day(referrals, before, days, after, picks))?;
    }
}
