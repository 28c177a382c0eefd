//! Random pathway histories driven through the app, for the property tests
//! that compare kept or fast views with the full re-evaluation (issue 22):
//! appends, corrections, voids, treatments, declined offers, subsequent
//! plans with an ECAD, and the clock moving on.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Days, NaiveDate, Utc};
use proptest::prelude::*;
use serde_json::{json, Value};

use crate::access::Principal;
use crate::{london_today, App, Clock};
use openptl_rules::RulesConfig;

/// A clock the test moves on.
pub(crate) struct Settable(pub(crate) Mutex<DateTime<Utc>>);

impl Clock for Settable {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }
}

#[derive(Debug, Clone)]
pub(crate) enum Op {
    /// An event of kind `kind` on pathway `pathway`, `day` days after its referral.
    Event {
        pathway: u8,
        kind: u8,
        day: u16,
        pick: u8,
    },
    /// A correction of one of the pathway's events to another date (`day`
    /// days after its referral).
    Correct { pathway: u8, pick: u8, day: u16 },
    /// A void of one of the pathway's events.
    Void { pathway: u8, pick: u8 },
    /// A diagnosis, maybe a transfer, a decision to treat and a treatment,
    /// in one request, `told`, `decided` and `treated` days apart (the
    /// 31- and 62-day clocks stopped, shares of the breach allocation).
    Treat {
        pathway: u8,
        transfer: bool,
        told: u16,
        decided: u16,
        treated: u16,
        pick: u8,
    },
    /// The clock moves on by `days`.
    NextDay { days: u8 },
}

pub(crate) fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u8..5, 2u8..15, 0u16..60, any::<u8>())
            .prop_map(|(pathway, kind, day, pick)| Op::Event { pathway, kind, day, pick }),
        1 => (0u8..5, any::<u8>(), 0u16..60)
            .prop_map(|(pathway, pick, day)| Op::Correct { pathway, pick, day }),
        1 => (0u8..5, any::<u8>()).prop_map(|(pathway, pick)| Op::Void { pathway, pick }),
        2 => (0u8..5, any::<bool>(), 5u16..45, 0u16..30, 0u16..50, any::<u8>()).prop_map(
            |(pathway, transfer, told, decided, treated, pick)| Op::Treat {
                pathway, transfer, told, decided, treated, pick,
            }
        ),
        1 => (1u8..40).prop_map(|days| Op::NextDay { days }),
    ]
}

pub(crate) fn date(day: u16) -> String {
    (NaiveDate::from_ymd_opt(2025, 1, 1).unwrap() + Days::new(u64::from(day))).to_string()
}

const TRUSTS: [&str; 3] = ["RXH", "RHM", "RTH"];

pub(crate) fn event_of(pathway: &str, kind: u8, day: u16, pick: u8) -> Value {
    let pick = usize::from(pick);
    let modality = ["surgery", "anticancer_drug", "radiotherapy"][pick % 3];
    let (ty, data) = match kind {
        0 | 1 => (
            "referral_received",
            json!({ "nhs_number": "943 476 5919", "trust": TRUSTS[pick % 3],
                    "tumour_site": (["lower_gi", "breast", "lung"][pick / 3 % 3]),
                    "route": (["urgent_suspected_cancer", "other", "recurrence"][pick / 9 % 3]) }),
        ),
        2 => ("triage_completed", json!({ "outcome": "straight_to_test" })),
        3 => (
            "appointment_attended",
            json!({ "kind": "first_outpatient" }),
        ),
        4 => (
            "diagnosis_communicated",
            json!({ "outcome": (["cancer_diagnosed", "cancer_ruled_out"][pick % 2]) }),
        ),
        5 => ("fds_excluded", json!({ "reason": "patient_choice" })),
        6 => ("decision_to_treat", json!({ "modality": modality })),
        7 => ("treatment_started", json!({ "modality": modality })),
        8 => (
            "pathway_transferred",
            json!({ "to_trust": TRUSTS[(pick + 1) % 3] }),
        ),
        9 if pick % 4 == 0 => ("pathway_closed", json!({ "reason": "other" })),
        9 => (
            "diagnosis_communicated",
            json!({ "outcome": "cancer_diagnosed" }),
        ),
        10 => (
            "fit_result_recorded",
            json!({ "value_ug_per_g": ([4.0, 50.0, 150.0][pick % 3]) }),
        ),
        12 => (
            "treatment_offer_declined",
            json!({ "offered_on": date(day), "available_from": date(day + (pick % 40) as u16),
                    "setting": (["admitted", "non_admitted"][pick / 40 % 2]),
                    "plan_id": ([None, Some("second")][pick / 80 % 2]) }),
        ),
        13 => (
            "decision_to_treat",
            json!({ "modality": modality, "treatment": "subsequent", "plan_id": "second",
                    "earliest_clinically_appropriate_date": date(day + (pick % 25) as u16) }),
        ),
        _ => (
            ["decision_to_treat", "treatment_started"][pick % 2],
            json!({ "modality": modality, "treatment": "subsequent", "plan_id": "second" }),
        ),
    };
    json!({ "pathway_id": pathway, "type": ty, "occurred_on": date(day), "data": data })
}

/// The id of one of a pathway's events (`None` if it has none).
async fn some_event(app: &App, pathway: &str, pick: u8) -> Option<String> {
    let history = app.projection.history(pathway).await.ok()??;
    let event = history.get(usize::from(pick) % history.len().max(1))?;
    Some(event.event_id.to_string())
}

/// The runtime the property tests drive an app on (two workers, as CI's
/// machine has two cores).
pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Drives an app through `referrals` and `ops` (events the rules refuse
/// change nothing), calling `check` every 8 ops and at the end with the
/// moments after each op. The log stamps records by the app's clock, a
/// microsecond apart (records are stamped on the days they are entered,
/// as in service, so the end of a view's date falls among them).
/// The app's clock starts on Tuesday 20 May 2025.
pub(crate) async fn run(
    referrals: Vec<(u8, u16)>,
    ops: Vec<Op>,
    check: impl AsyncFn(&App, &[DateTime<Utc>]) -> Result<(), TestCaseError>,
) -> Result<(), TestCaseError> {
    let start = "2025-05-20T12:00:00Z".parse().unwrap();
    run_from(start, referrals, ops, check).await
}

/// [`run`], with the app's clock starting at `start`.
pub(crate) async fn run_from(
    start: DateTime<Utc>,
    referrals: Vec<(u8, u16)>,
    ops: Vec<Op>,
    check: impl AsyncFn(&App, &[DateTime<Utc>]) -> Result<(), TestCaseError>,
) -> Result<(), TestCaseError> {
    run_with(start, false, referrals, ops, check).await
}

/// [`run_from`]; with `bulk`, every refresh re-evaluates its pathways as a
/// refresh of many does (in bulk, and on a new day moving the states it
/// can, decision 219), however few they are, and `check` runs after each
/// day moved on too.
pub(crate) async fn run_with(
    start: DateTime<Utc>,
    bulk: bool,
    referrals: Vec<(u8, u16)>,
    ops: Vec<Op>,
    check: impl AsyncFn(&App, &[DateTime<Utc>]) -> Result<(), TestCaseError>,
) -> Result<(), TestCaseError> {
    let clock = Arc::new(Settable(Mutex::new(start)));
    let ticks = Arc::new(std::sync::atomic::AtomicI64::new(0));
    // The app's time, `tick` microseconds on.
    let now = {
        let clock = clock.clone();
        move |tick: i64| clock.now() + chrono::Duration::microseconds(tick)
    };
    let stamp = {
        let (now, ticks) = (now.clone(), ticks.clone());
        move || now(ticks.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1)
    };
    let log: Arc<dyn openptl_log::EventLog> =
        Arc::new(openptl_log::MemoryLog::stamped_by(Box::new(stamp)));
    // With a place for snapshots, so that the states refreshes replace are
    // kept and views as known at a moment take them (decision 162).
    let dir = tempfile::tempdir().unwrap();
    let app = App::open(
        log,
        RulesConfig::defaults(),
        clock.clone(),
        Some(dir.path().join("projection.snapshot")),
    );
    if bulk {
        app.projection.set_bulk(0);
    }
    // Every past view of the app is the full re-evaluation unless a check
    // asks otherwise.
    app.set_past_views_read_all(true);
    let system = Principal::system("test");
    let mut moments = Vec::new();
    let referred: Vec<u16> = referrals.iter().map(|(_, day)| *day).collect();
    let referrals = referrals
        .into_iter()
        .enumerate()
        .map(|(n, (pick, day))| event_of(&format!("P{n}"), 0, day, pick));
    app.append(referrals.collect(), &system, false)
        .await
        .unwrap();
    for (n, op) in ops.into_iter().enumerate() {
        let moved_on = matches!(op, Op::NextDay { .. });
        let event = match op {
            Op::Event {
                pathway,
                kind,
                day,
                pick,
            } => {
                let day = referred[usize::from(pathway)] + day;
                Some(event_of(&format!("P{pathway}"), kind, day, pick))
            }
            Op::Correct { pathway, pick, day } => {
                let id = format!("P{pathway}");
                some_event(&app, &id, pick).await.map(|target| {
                    json!({ "pathway_id": id, "type": "event_corrected",
                            "occurred_on": london_today(clock.now()).to_string(),
                            "data": { "corrects": target, "reason": "keyed wrongly",
                                      "new_occurred_on": date(referred[usize::from(pathway)] + day) } })
                })
            }
            Op::Void { pathway, pick } => {
                let id = format!("P{pathway}");
                some_event(&app, &id, pick).await.map(|target| {
                    json!({ "pathway_id": id, "type": "event_voided",
                            "occurred_on": london_today(clock.now()).to_string(),
                            "data": { "voids": target, "reason": "not this patient" } })
                })
            }
            Op::Treat {
                pathway,
                transfer,
                told,
                decided,
                treated,
                pick,
            } => {
                let id = format!("P{pathway}");
                let told = referred[usize::from(pathway)] + told;
                let mut batch = vec![event_of(&id, 9, told, 1)];
                if transfer {
                    batch.push(event_of(&id, 8, told + 1, pick));
                }
                batch.push(event_of(&id, 6, told + 1 + decided, pick));
                batch.push(event_of(&id, 7, told + 1 + decided + treated, pick));
                let _ = app.append(batch, &system, false).await;
                None
            }
            Op::NextDay { days } => {
                let mut now = clock.0.lock().unwrap();
                *now += chrono::Duration::days(i64::from(days));
                None
            }
        };
        if let Some(event) = event {
            // Events the rules refuse change nothing; that is fine here.
            let _ = app.append(vec![event], &system, false).await;
        }
        moments.push(now(ticks.load(std::sync::atomic::Ordering::SeqCst)));
        if n % 8 == 7 || (bulk && moved_on) {
            check(&app, &moments).await?;
        }
    }
    check(&app, &moments).await
}
