//! Property tests of the clock engine's invariants (STYLE rule 8): pathways
//! are generated as a referral plus a random sequence of later events, each
//! offered to `check_event` and kept only when the rules accept it, exactly
//! as the service would record them. The properties then compare views.
//!
//! Everything is deterministic: "today" is a fixed date, event ids are
//! derived from versions, and no property looks at the clock on the wall.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use openptl_rules::pathway::{Clock, PathwayState};
use openptl_rules::validate::check_pathway;
use openptl_rules::*;
use proptest::option;
use proptest::prelude::*;
use proptest::sample::{select, Index};
use proptest::test_runner::RngSeed;
use serde_json::{json, Value};
use uuid::Uuid;

// ---------------------------------------------------------------------------
// Fixed context
// ---------------------------------------------------------------------------

/// A modest case count keeps the suite fast and a fixed seed keeps it
/// deterministic, unless PROPTEST_CASES / PROPTEST_RNG_SEED ask for a longer
/// or different exploration.
fn proptest_config() -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = 128;
    }
    config.max_global_rejects = config.cases.saturating_mul(4);
    config.failure_persistence = None;
    if std::env::var_os("PROPTEST_RNG_SEED").is_none() {
        config.rng_seed = RngSeed::Fixed(0x0907_2025);
    }
    config
}

fn config() -> &'static RulesConfig {
    static CONFIG: OnceLock<RulesConfig> = OnceLock::new();
    CONFIG.get_or_init(RulesConfig::defaults)
}

/// The service's "today": after every date a generated pathway can reach.
fn today() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 6, 30).unwrap()
}

fn plus(date: NaiveDate, days: i64) -> NaiveDate {
    date + Duration::days(days)
}

fn iso(date: NaiveDate) -> String {
    date::format(date)
}

// ---------------------------------------------------------------------------
// Plans: what the generator draws, before the rules have had their say
// ---------------------------------------------------------------------------

/// One step of a generated pathway. Dates are offsets from the referral date
/// so that shrinking keeps them meaningful.
#[derive(Debug, Clone)]
enum Step {
    /// An ordinary event. Integer values of the date fields of `data`
    /// (`offered_on`, `available_from`, `next_action_due`) are offsets too.
    Event {
        offset: i64,
        ty: EventType,
        data: Value,
    },
    /// A treatment dated `gap` days after the latest effective decision to treat.
    Treatment { gap: i64, modality: Modality },
    /// A subsequent treatment of `plan` dated `gap` days after the latest
    /// effective decision of that plan (SPEC 2.12).
    SubsequentTreatment {
        plan: &'static str,
        gap: i64,
        modality: Modality,
    },
    /// A correction of an earlier event: a date shift and/or new data.
    Correct {
        pick: Index,
        shift: i64,
        new_data: bool,
    },
    /// A void of an earlier event.
    Void { pick: Index },
}

#[derive(Debug, Clone)]
struct Plan {
    referred_on: NaiveDate,
    referral: Value,
    steps: Vec<Step>,
}

/// A Modulus 11 valid NHS number (SPEC 2.11), written with spaces sometimes.
fn nhs_number() -> impl Strategy<Value = String> {
    (proptest::collection::vec(0u32..10, 9), any::<bool>()).prop_filter_map(
        "check digit 10 is invalid",
        |(digits, spaced)| {
            let sum: u32 = digits.iter().zip((2..=10).rev()).map(|(d, w)| d * w).sum();
            let check = match 11 - sum % 11 {
                11 => 0,
                10 => return None,
                c => c,
            };
            let mut text: String = digits.iter().map(|d| char::from(b'0' + *d as u8)).collect();
            text.push(char::from(b'0' + check as u8));
            if spaced {
                text = format!("{} {} {}", &text[0..3], &text[3..6], &text[6..]);
            }
            Some(text)
        },
    )
}

fn referral() -> impl Strategy<Value = (NaiveDate, Value)> {
    let route = prop_oneof![
        3 => Just(Route::UrgentSuspectedCancer),
        1 => Just(Route::BreastSymptomatic),
        1 => Just(Route::Screening),
        1 => Just(Route::Other),
        1 => Just(Route::Recurrence),
    ];
    (
        0i64..300,
        route,
        select(TumourSite::ALL),
        nhs_number(),
        select(ScreeningProgramme::ALL),
        // Real GP practice codes have 6 characters (A81001), but SPEC 1 accepts 3–5.
        option::of(select(&["Y0123", "B8200", "C81"][..])),
        select(&["RXH", "rhm", "RTH"][..]),
    )
        .prop_map(|(offset, route, site, nhs, programme, referrer, trust)| {
            let referred_on = plus(NaiveDate::from_ymd_opt(2025, 1, 6).unwrap(), offset);
            let mut data = json!({
                "nhs_number": nhs,
                "trust": trust,
                "tumour_site": site.as_str(),
                "route": route.as_str(),
            });
            if route == Route::Screening {
                data["screening_programme"] = json!(programme.as_str());
            }
            if let Some(referrer) = referrer {
                data["referrer"] = json!(referrer);
            }
            (referred_on, data)
        })
}

fn event(offset: i64, ty: EventType, data: Value) -> Step {
    Step::Event { offset, ty, data }
}

/// Ordinary events, weighted towards the ones that move clocks.
fn ordinary() -> impl Strategy<Value = Step> {
    let day = || 0i64..=150;
    prop_oneof![
        4 => (day(), select(AppointmentKind::ALL))
            .prop_map(|(o, k)| event(o, EventType::AppointmentAttended, json!({ "kind": k.as_str() }))),
        4 => (day(), select(AppointmentKind::ALL), select(MissedReason::ALL)).prop_map(|(o, k, r)| {
            event(o, EventType::AppointmentMissed, json!({ "kind": k.as_str(), "reason": r.as_str() }))
        }),
        4 => (day(), select(&[EventType::DiagnosticRequested, EventType::DiagnosticPerformed, EventType::DiagnosticReported][..]),
              select(DiagnosticTest::ALL), option::of("[A-Z0-9-]{1,12}"))
            .prop_map(|(o, ty, test, request_id)| {
                let mut data = json!({ "test": test.as_str() });
                if let Some(id) = request_id {
                    data["request_id"] = json!(id);
                }
                event(o, ty, data)
            }),
        2 => (day(), select(TriageOutcome::ALL))
            .prop_map(|(o, t)| event(o, EventType::TriageCompleted, json!({ "outcome": t.as_str() }))),
        1 => (day(), option::of("[a-z_]{1,20}")).prop_map(|(o, outcome)| {
            event(o, EventType::MdtDiscussed, outcome.map_or(json!({}), |t| json!({ "outcome": t })))
        }),
        2 => (-95i64..=30, option::of(0.0f64..400.0)).prop_map(|(o, value)| {
            let data = value.map_or(json!({ "not_appropriate": true }), |v| json!({ "value_ug_per_g": v }));
            event(o, EventType::FitResultRecorded, data)
        }),
        3 => (day(), select(DiagnosisOutcome::ALL), option::of(select(CommunicationMethod::ALL)), option::of("C[0-9]{2}(\\.[0-9])?"))
            .prop_map(|(o, outcome, method, icd10)| {
                let mut data = json!({ "outcome": outcome.as_str() });
                if let Some(m) = method {
                    data["method"] = json!(m.as_str());
                }
                if let Some(code) = icd10 {
                    data["icd10"] = json!(code);
                }
                event(o, EventType::DiagnosisCommunicated, data)
            }),
        4 => (day(), select(Modality::ALL), option::weighted(0.2, select(PLANS)))
            .prop_map(|(o, m, name)| {
                let mut data = json!({ "modality": m.as_str() });
                // Now and then the first period gets a name (decision 86).
                if let Some(name) = name {
                    data["plan_id"] = json!(name);
                }
                event(o, EventType::DecisionToTreat, data)
            }),
        3 => (day(), -10i64..=150, 1i64..=40, select(TreatmentSetting::ALL), option::weighted(0.3, select(PLANS)))
            .prop_map(|(o, offered, len, setting, plan)| {
                let mut data = json!({ "offered_on": offered, "available_from": offered + len, "setting": setting.as_str() });
                if let Some(plan) = plan {
                    data["plan_id"] = json!(plan);
                }
                event(o, EventType::TreatmentOfferDeclined, data)
            }),
        3 => (0i64..=40, select(Modality::ALL)).prop_map(|(gap, modality)| Step::Treatment { gap, modality }),
        2 => subsequent_decision(),
        2 => (select(PLANS), 0i64..=45, select(Modality::ALL))
            .prop_map(|(plan, gap, modality)| Step::SubsequentTreatment { plan, gap, modality }),
        3 => (day(), "[A-Za-z0-9 ]{1,40}", option::of("[a-z ]{0,30}"), option::of(0i64..=200), option::of("[A-Za-z]{1,12}"), option::of(any::<bool>()))
            .prop_map(|(o, text, next_action, due, owner, escalated)| {
                let mut data = json!({ "text": text });
                if let Some(v) = next_action { data["next_action"] = json!(v); }
                if let Some(v) = due { data["next_action_due"] = json!(v); }
                if let Some(v) = owner { data["owner"] = json!(v); }
                if let Some(v) = escalated { data["escalated"] = json!(v); }
                event(o, EventType::TrackingNoteAdded, data)
            }),
        1 => (day(), select(&["RXH", "RHM", "RTH", "R1F"][..]))
            .prop_map(|(o, t)| event(o, EventType::PathwayTransferred, json!({ "to_trust": t }))),
        1 => (day(), select(TumourSite::ALL))
            .prop_map(|(o, s)| event(o, EventType::TumourSiteChanged, json!({ "tumour_site": s.as_str() }))),
        1 => (day(), select(ExclusionReason::ALL))
            .prop_map(|(o, r)| event(o, EventType::FdsExcluded, json!({ "reason": r.as_str() }))),
        1 => (day(), select(CloseReason::ALL))
            .prop_map(|(o, r)| event(o, EventType::PathwayClosed, json!({ "reason": r.as_str() }))),
        1 => day().prop_map(|o| event(o, EventType::ConsultantUpgraded, json!({}))),
    ]
}

/// The names of subsequent plans the generator uses (few, so they collide).
const PLANS: &[&str] = &["rt", "chemo"];

/// A subsequent decision to treat (SPEC 2.12), with an ECAD now and then.
fn subsequent_decision() -> impl Strategy<Value = Step> {
    (0i64..=150, select(PLANS), select(Modality::ALL), option::of(0i64..=30)).prop_map(
        |(o, plan, modality, ecad)| {
            let mut data = json!({ "modality": modality.as_str(), "treatment": "subsequent", "plan_id": plan });
            if let Some(after) = ecad {
                data["earliest_clinically_appropriate_date"] = json!(o + after);
            }
            event(o, EventType::DecisionToTreat, data)
        },
    )
}

fn amendment() -> impl Strategy<Value = Step> {
    prop_oneof![
        2 => (any::<Index>(), -15i64..=15, any::<bool>()).prop_map(|(pick, shift, new_data)| Step::Correct { pick, shift, new_data }),
        1 => any::<Index>().prop_map(|pick| Step::Void { pick }),
    ]
}

fn plan_of(steps: impl Strategy<Value = Vec<Step>>) -> impl Strategy<Value = Plan> {
    (referral(), steps).prop_map(|((referred_on, referral), steps)| Plan {
        referred_on,
        referral,
        steps,
    })
}

/// A pathway plan; with `amend`, corrections and voids are mixed in.
fn plan(amend: bool) -> BoxedStrategy<Plan> {
    if amend {
        plan_of(proptest::collection::vec(
            prop_oneof![8 => ordinary(), 1 => amendment()],
            0..30,
        ))
        .boxed()
    } else {
        plan_of(proptest::collection::vec(ordinary(), 0..30)).boxed()
    }
}

// ---------------------------------------------------------------------------
// Building histories through the rules
// ---------------------------------------------------------------------------

fn recorded_at(version: u64) -> DateTime<Utc> {
    "2026-01-01T00:00:00Z".parse::<DateTime<Utc>>().unwrap() + Duration::seconds(version as i64)
}

/// Offers one event to the rules; records it when accepted.
fn offer(
    history: &mut Vec<RecordedEvent>,
    occurred_on: NaiveDate,
    data: EventData,
) -> Result<(), RuleError> {
    check_event(history, occurred_on, &data, today(), config())?;
    let version = history.len() as u64 + 1;
    history.push(RecordedEvent {
        event_id: Uuid::from_u128(0x0be7_0000_0000_0000_0000_0000_0000_0000 + version as u128),
        version,
        recorded_at: recorded_at(version),
        occurred_on,
        data,
    });
    Ok(())
}

fn decode(ty: EventType, data: Value) -> EventData {
    EventData::from_json(ty, data.clone())
        .unwrap_or_else(|e| panic!("generator made invalid {ty} data {data}: {e}"))
}

/// Turns the integer date offsets of generated data into ISO dates.
fn resolve_dates(referred_on: NaiveDate, mut data: Value) -> Value {
    for field in [
        "offered_on",
        "available_from",
        "next_action_due",
        "earliest_clinically_appropriate_date",
    ] {
        if let Some(offset) = data.get(field).and_then(Value::as_i64) {
            data[field] = json!(iso(plus(referred_on, offset)));
        }
    }
    data
}

fn effective(history: &[RecordedEvent]) -> Vec<EffectiveEvent<'_>> {
    effective_events(history).expect("an accepted history always has effective events")
}

fn build(plan: &Plan) -> Vec<RecordedEvent> {
    let mut history = Vec::new();
    let r = plan.referred_on;
    offer(
        &mut history,
        r,
        decode(EventType::ReferralReceived, plan.referral.clone()),
    )
    .expect("a referral opens the pathway");
    // The day amendments are recorded on: after the pathway's own dates.
    let amended_on = plus(r, 150);
    for step in &plan.steps {
        let (occurred_on, data) = match step {
            Step::Event { offset, ty, data } => (
                plus(r, *offset),
                decode(*ty, resolve_dates(r, data.clone())),
            ),
            Step::Treatment { gap, modality } => {
                let decided = effective(&history)
                    .iter()
                    .filter(|e| decision_plan(&e.data) == Some(None))
                    .map(|e| e.occurred_on)
                    .max()
                    .unwrap_or(r);
                (
                    plus(decided, *gap),
                    decode(
                        EventType::TreatmentStarted,
                        json!({ "modality": modality.as_str() }),
                    ),
                )
            }
            Step::SubsequentTreatment {
                plan,
                gap,
                modality,
            } => {
                let decided = effective(&history)
                    .iter()
                    .filter(|e| decision_plan(&e.data) == Some(Some(*plan)))
                    .map(|e| e.occurred_on)
                    .max()
                    .unwrap_or(r);
                (
                    plus(decided, *gap),
                    decode(
                        EventType::TreatmentStarted,
                        json!({ "modality": modality.as_str(), "treatment": "subsequent", "plan_id": plan }),
                    ),
                )
            }
            Step::Correct {
                pick,
                shift,
                new_data,
            } => {
                let targets: Vec<&RecordedEvent> = history
                    .iter()
                    .filter(|e| !e.data.event_type().is_amendment())
                    .collect();
                let target = *pick.get(&targets);
                let current = effective(&history)
                    .into_iter()
                    .find(|e| e.event_id == target.event_id);
                let current_on = current
                    .as_ref()
                    .map_or(target.occurred_on, |e| e.occurred_on);
                let replacement = match (new_data, current.map(|e| e.data.into_owned())) {
                    (true, Some(EventData::AppointmentMissed(m))) => {
                        let reason = match m.reason {
                            MissedReason::DidNotAttend => MissedReason::PatientCancelled,
                            MissedReason::PatientCancelled => MissedReason::DidNotAttend,
                        };
                        Some(json!({ "kind": m.kind.as_str(), "reason": reason.as_str() }))
                    }
                    (true, Some(EventData::TrackingNoteAdded(_))) => {
                        Some(json!({ "text": "corrected note", "escalated": true }))
                    }
                    _ => None,
                };
                let shift = if *shift == 0 && replacement.is_none() {
                    1
                } else {
                    *shift
                };
                let mut data =
                    json!({ "corrects": target.event_id.to_string(), "reason": "entered wrongly" });
                if shift != 0 {
                    data["new_occurred_on"] = json!(iso(plus(current_on, shift)));
                }
                if let Some(replacement) = replacement {
                    data["new_data"] = replacement;
                }
                (amended_on, decode(EventType::EventCorrected, data))
            }
            Step::Void { pick } => {
                let targets: Vec<&RecordedEvent> = history
                    .iter()
                    .filter(|e| !e.data.event_type().is_amendment())
                    .collect();
                let target = *pick.get(&targets);
                let data =
                    json!({ "voids": target.event_id.to_string(), "reason": "wrong patient" });
                (amended_on, decode(EventType::EventVoided, data))
            }
        };
        // Rejections are expected (a treatment before its decision, an
        // upgrade on a cancer route, anything after a closure...): skip them.
        let _ = offer(&mut history, occurred_on, data);
    }
    history
}

/// The referral date in effect (a correction may have moved it).
fn referred_on(history: &[RecordedEvent]) -> NaiveDate {
    effective(history)
        .iter()
        .find(|e| e.data.event_type() == EventType::ReferralReceived)
        .expect("the referral cannot be voided")
        .occurred_on
}

fn view(history: &[RecordedEvent], as_of: NaiveDate) -> PathwayState {
    evaluate(&effective(history), as_of, config()).expect("evaluated on or after the referral")
}

/// A readable history for failure messages.
fn show(history: &[RecordedEvent]) -> String {
    history
        .iter()
        .map(|e| {
            format!(
                "  v{} {} {} {}",
                e.version,
                e.occurred_on,
                e.data.event_type(),
                e.data.to_json()
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn clocks(state: &PathwayState) -> Vec<(ClockKind, &Clock)> {
    state.clocks.iter().collect()
}

fn is_first_seen_dna(data: &EventData) -> bool {
    matches!(data, EventData::AppointmentMissed(m) if m.reason == MissedReason::DidNotAttend && m.kind.is_first_seen())
}

/// `Some(plan)` for a decision to treat (`None` inside for a first one).
fn decision_plan(data: &EventData) -> Option<Option<&str>> {
    match data {
        EventData::DecisionToTreat(d) => Some(d.subsequent_plan()),
        _ => None,
    }
}

fn is_first_treatment(data: &EventData) -> bool {
    matches!(data, EventData::TreatmentStarted(t) if t.subsequent_plan().is_none())
}

fn is_subsequent_treatment(data: &EventData) -> bool {
    matches!(data, EventData::TreatmentStarted(t) if t.subsequent_plan().is_some())
}

fn is_admitted_decline(data: &EventData) -> bool {
    matches!(data, EventData::TreatmentOfferDeclined(t) if t.setting == TreatmentSetting::Admitted)
}

// ---------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------

/// `states` counted into three counts (each state into the one `parts`
/// names) and merged, last first.
fn counted_apart<C>(
    states: &[PathwayState],
    parts: &[usize],
    new: impl Fn() -> C,
    add: impl Fn(&mut C, &PathwayState),
    merge: impl Fn(&mut C, C),
) -> C {
    let mut apart: Vec<C> = (0..3).map(|_| new()).collect();
    for (state, part) in states.iter().zip(parts) {
        add(&mut apart[*part], state);
    }
    let mut merged = new();
    for part in apart.into_iter().rev() {
        merge(&mut merged, part);
    }
    merged
}

proptest! {
    #![proptest_config(proptest_config())]

    /// Every accepted event survives JSON and stored MessagePack unchanged.
    #[test]
    fn accepted_events_round_trip_through_json_and_msgpack(plan in plan(true)) {
        let history = build(&plan);
        for e in &history {
            let ty = e.data.event_type();
            let json = e.data.to_json();
            let back = EventData::from_json(ty, json.clone());
            prop_assert_eq!(back, Ok(e.data.clone()), "JSON {}", json);
            let bytes = e.data.encode_payload(e.occurred_on);
            let decoded = EventData::decode_payload(ty, ty.schema_version(), &bytes);
            prop_assert_eq!(decoded, Ok((e.occurred_on, e.data.clone())), "msgpack of {} {}", ty, json);
        }
    }

    /// Views are a pure function of the history: evaluating twice, or after
    /// the history went through its stored bytes, gives the same state.
    #[test]
    fn rebuilding_gives_identical_views(plan in plan(true), as_of_offset in 0i64..=250) {
        let history = build(&plan);
        let as_of = plus(referred_on(&history), as_of_offset);
        prop_assert_eq!(effective(&history), effective(&history));
        let first = view(&history, as_of);
        prop_assert_eq!(&first, &view(&history, as_of));
        let reread: Vec<RecordedEvent> = history
            .iter()
            .map(|e| {
                let (occurred_on, data) = EventData::decode_payload(e.data.event_type(), e.data.schema_version(), &e.data.encode_payload(e.occurred_on)).unwrap();
                RecordedEvent { occurred_on, data, ..e.clone() }
            })
            .collect();
        prop_assert_eq!(&first, &view(&reread, as_of));
    }

    /// A state moved to another date on or after its events' settled date
    /// equals the state evaluated on that date, date span and all; before
    /// its first event there is no state (what lets a past view move the
    /// projection's states instead of reading histories, issue 22).
    #[test]
    fn a_settled_state_moves_to_any_settled_date_exactly(
        plan in plan(true),
        from_offset in 0i64..=120,
        to_offset in 0i64..=120,
        before in 1i64..=30,
    ) {
        let history = build(&plan);
        let effective = effective(&history);
        let settled = pathway::Settled::of(&effective).expect("a referral");
        let (a, b) = (plus(settled.from, from_offset), plus(settled.from, to_offset));
        prop_assert!(settled.covers(a, b));
        let at_a = evaluate(&effective, a, config()).expect("on or after the referral");
        let at_b = evaluate(&effective, b, config()).expect("on or after the referral");
        prop_assert_eq!(&at_a.moved_to(b), &at_b, "history:\n{}", show(&history));
        prop_assert_eq!(at_a.date_span(), at_b.date_span());
        prop_assert!(evaluate(&effective, plus(settled.first, -before), config()).is_none());
    }

    /// Every earlier state a pathway keeps moves to any date of its range
    /// exactly as the events evaluate there (what lets a past view move a
    /// kept state of a pathway with events after its date, issue 22).
    #[test]
    fn an_earlier_state_moves_to_any_date_of_its_range_exactly(
        plan in plan(true),
        since_back in 0i64..=400,
        pick in any::<Index>(),
        wanted_back in proptest::collection::vec(0i64..=400, 0..3),
    ) {
        let history = build(&plan);
        let effective = effective(&history);
        let since = plus(today(), -since_back);
        let wanted: Vec<NaiveDate> = wanted_back.iter().map(|b| plus(today(), -b)).collect();
        let earlier = pathway::Earlier::of(&effective, since, 3, &wanted);
        prop_assert!(earlier.len() <= 3);
        prop_assert!(earlier.windows(2).all(|w| w[0].until < w[1].on), "oldest first, apart");
        // A wanted date some kept range could cover is covered, while room
        // is left (the first `most` wanted dates always are).
        let all = pathway::Earlier::of(&effective, since, usize::MAX, &[]);
        for day in wanted.iter().take(3) {
            if all.iter().any(|e| e.on <= *day && *day <= e.until) {
                prop_assert!(earlier.iter().any(|e| e.on <= *day && *day <= e.until), "{} not covered", day);
            }
        }
        for e in &earlier {
            prop_assert!(e.on <= e.until && e.until >= since);
            // None before the referral (a FIT dated before it): none then.
            let kept = evaluate(&effective, e.on, config());
            let span = (e.until - e.on).num_days();
            let day = plus(e.on, pick.index(span as usize + 1) as i64);
            let at = evaluate(&effective, day, config());
            let moved = kept.as_ref().map(|k| k.moved_to(day));
            prop_assert_eq!(&moved, &at, "{:?} to {}, history:\n{}", e, day, show(&history));
            let at_until = evaluate(&effective, e.until, config());
            prop_assert_eq!(kept.map(|k| k.moved_to(e.until)), at_until);
        }
    }

    /// Records known after a moment change nothing of a view as of a date
    /// before the earliest each affects: the pathway as known then equals
    /// the pathway as known now, as of that date (what lets a view as
    /// known at a past moment move the projection's state of a pathway
    /// whose later records are all dated after the view's date, issue 22).
    #[test]
    fn records_known_later_change_nothing_before_the_dates_they_affect(
        plan in plan(true),
        known in any::<Index>(),
        back in 1i64..=8,
    ) {
        let history = build(&plan);
        // Known then: a prefix, past every amendment (an amendment may
        // affect any date, so one known later leaves nothing to check).
        let after_amendments = history
            .iter()
            .rposition(|e| e.data.event_type().is_amendment())
            .map_or(0, |i| i + 1);
        let k = after_amendments + known.index(history.len() - after_amendments + 1);
        let later = &history[k..];
        let affected: Vec<NaiveDate> = later
            .iter()
            .map(|e| history::earliest_date_affected(e.data.event_type(), e.occurred_on))
            .collect::<Option<_>>()
            .expect("no amendment among them");
        let as_of = match affected.iter().min() {
            Some(earliest) => plus(*earliest, -back),
            None => plus(referred_on(&history), 250 - back),
        };
        let then = evaluate(&effective(&history[..k]), as_of, config());
        let now = evaluate(&effective(&history), as_of, config());
        prop_assert_eq!(then, now, "known {} of {} as of {}, history:\n{}", k, history.len(), as_of, show(&history));
    }

    /// A pathway has CWT records in exactly the months `record_months`
    /// names (what today's submission reads through, issue 22).
    #[test]
    fn cwt_records_lie_in_the_record_months(
        plan in plan(true),
        as_of_offset in 0i64..=250,
        month_offset in -2i64..=10,
    ) {
        let history = build(&plan);
        let as_of = plus(referred_on(&history), as_of_offset);
        let state = view(&history, as_of);
        let months = openptl_rules::cwt::record_months(&state);
        let mut day = referred_on(&history).with_day(1).unwrap();
        for _ in 0..(month_offset + 2) {
            day = (day + Duration::days(32)).with_day(1).unwrap();
        }
        for period in months.iter().copied().chain([Period::of(plus(day, -40))]) {
            let records = openptl_rules::cwt::cwt_records(&state, period);
            prop_assert_eq!(records.is_empty(), !months.contains(&period), "{:?} in {:?}: {}", period, months, show(&history));
        }
    }

    /// The CANPTL return of states counted apart (on several threads, as
    /// past views count them where they are moved) and merged is the
    /// return of all of them counted together.
    #[test]
    fn canptl_returns_counted_apart_merge_into_the_whole(
        plans in proptest::collection::vec(plan(true), 1..6),
        parts in proptest::collection::vec(0..3usize, 6),
        sunday_offset in 0i64..20,
    ) {
        let histories: Vec<_> = plans.iter().map(build).collect();
        let last = histories.iter().map(|h| referred_on(h)).max().unwrap();
        // A Sunday up to a few months after the last referral.
        let mut week_ending = plus(last, 7 * sunday_offset);
        while week_ending.weekday() != chrono::Weekday::Sun {
            week_ending = plus(week_ending, 1);
        }
        let states: Vec<_> = histories.iter().map(|h| view(h, week_ending)).collect();
        let whole = report::canptl(&states, week_ending);
        let merged = counted_apart(
            &states,
            &parts,
            || report::CanptlReturn::new(week_ending),
            |count, state| count.add(state),
            report::CanptlReturn::merge,
        );
        prop_assert_eq!(merged, whole);
    }

    /// The standards, milestone and FIT reports of states counted apart
    /// (on several threads, as past views count them where they are moved)
    /// and merged are the reports of all of them counted together; some
    /// taken away again, the reports of the rest.
    #[test]
    fn reports_counted_apart_merge_into_the_whole(
        plans in proptest::collection::vec(plan(true), 1..10),
        parts in proptest::collection::vec(0..3usize, 10),
        as_of_offset in 0i64..200,
        month_back in 0i64..3,
    ) {
        let histories: Vec<_> = plans.iter().map(build).collect();
        let last = histories.iter().map(|h| referred_on(h)).max().unwrap();
        let as_of = plus(last, as_of_offset);
        let states: Vec<_> = histories.iter().map(|h| view(h, as_of)).collect();
        let month = Period::of(plus(as_of, -31 * month_back));
        let all = |_: &str| true;
        let config = config();
        // The states of part 0, to take away again, and the rest.
        let (gone, rest): (Vec<_>, Vec<_>) = states
            .iter()
            .zip(&parts)
            .map(|(s, part)| (s.clone(), *part == 0))
            .partition(|(_, gone)| *gone);
        let gone: Vec<_> = gone.into_iter().map(|(s, _)| s).collect();
        let rest: Vec<_> = rest.into_iter().map(|(s, _)| s).collect();
        for standard in ClockKind::ALL {
            let whole = report::standards(&states, *standard, month, &all, config);
            let merged = counted_apart(
                &states,
                &parts,
                || tally::StandardsCount::new(*standard, month),
                |count, state| count.add(state),
                tally::StandardsCount::merge,
            );
            prop_assert_eq!(merged.report(&all, config), whole);
            // Counted, then those of part 0 taken away: the rest's report.
            let mut less = merged;
            gone.iter().for_each(|s| less.take_away(s));
            let rest_report = report::standards(&rest, *standard, month, &all, config);
            prop_assert_eq!(less.report(&all, config), rest_report);
        }
        for period in [None, Some(month)] {
            let whole = report::milestones(&states, period, config);
            let merged = counted_apart(
                &states,
                &parts,
                || tally::MilestonesCount::new(period),
                |count, state| count.add(state, config),
                tally::MilestonesCount::merge,
            );
            prop_assert_eq!(merged.report(config), whole);
            let mut less = merged;
            gone.iter().for_each(|s| less.take_away(s, config));
            prop_assert_eq!(less.report(config), report::milestones(&rest, period, config));
        }
        // The FIT report follows a month's lower GI urgent referrals: the
        // month of one when there is one.
        let month = states
            .iter()
            .find(|s| fit::is_lower_gi_urgent(s))
            .map_or(month, |s| Period::of(s.referred_on));
        let whole = fit::report(&states, month, &all, config);
        let merged = counted_apart(
            &states,
            &parts,
            || fit::FitCount::new(month),
            |count, state| count.add(state, config),
            fit::FitCount::merge,
        );
        prop_assert_eq!(merged.report(&all, config), whole);
        let mut less = merged;
        gone.iter().for_each(|s| less.take_away(s, config));
        prop_assert_eq!(less.report(&all, config), fit::report(&rest, month, &all, config));
    }

    /// Decision 187: the clocks listed behind a figure add up to it, for
    /// every figure of every standard's report (overall, by trust, by
    /// tumour site, the FDS outcomes, the 31-day halves and modality
    /// groups, breached and within target), and each line is a clock that
    /// stopped (or was excluded) in the month.
    #[test]
    fn the_clocks_listed_add_up_to_their_figures(
        plans in proptest::collection::vec(plan(true), 1..10),
        as_of_offset in 0i64..200,
        month_back in 0i64..3,
        counted_month in any::<Index>(),
    ) {
        use openptl_rules::counted::{counted_clocks, ClockFilter, ClockOutcome, FdsOutcome};
        let histories: Vec<_> = plans.iter().map(build).collect();
        let last = histories.iter().map(|h| referred_on(h)).max().unwrap();
        let as_of = plus(last, as_of_offset);
        let states: Vec<_> = histories.iter().map(|h| view(h, as_of)).collect();
        // A month something counts in, when there is one (most random
        // months hold no stop), else one back from the view's date.
        let mut months = Vec::new();
        for state in &states {
            tally::standards_contributions(state, &mut |key, _| months.push(key.month));
        }
        let month = match months.is_empty() {
            true => Period::of(plus(as_of, -31 * month_back)),
            false => *counted_month.get(&months),
        };
        let all = |_: &str| true;
        for standard in ClockKind::ALL {
            let report = report::standards(&states, *standard, month, &all, config());
            let listed = |trust: Option<&str>, filter: ClockFilter| {
                let mut lines = Vec::new();
                for state in &states {
                    counted_clocks(
                        state,
                        *standard,
                        month,
                        &|t| trust.is_none_or(|want| want == t),
                        &filter,
                        &mut |line| {
                            // An excluded line carries its pathway's reason.
                            let reason = state.fds_exclusion.map(|e| e.reason);
                            let excluded = line.outcome() == ClockOutcome::Excluded;
                            assert_eq!(line.exclusion_reason(), reason.filter(|_| excluded));
                            lines.push(line)
                        },
                    );
                }
                lines
            };
            // The total, breached and within-target figures of the lines a
            // filter keeps (excluded clocks count in none of them).
            let figures = |trust: Option<&str>, filter: ClockFilter| {
                let mut performance = report::Performance::default();
                for line in listed(trust, filter) {
                    match line.outcome() {
                        ClockOutcome::Breached => performance.breached += line.share,
                        ClockOutcome::WithinTarget => performance.within_target += line.share,
                        ClockOutcome::Excluded => continue,
                    }
                    performance.total += line.share;
                }
                (performance.total, performance.within_target, performance.breached)
            };
            let of = |p: &report::Performance| (p.total, p.within_target, p.breached);
            let every = ClockFilter::default();
            prop_assert_eq!(figures(None, every), of(&report.overall), "{}", standard);
            for outcome in [ClockOutcome::Breached, ClockOutcome::WithinTarget] {
                let only = ClockFilter { outcome: Some(outcome), ..every };
                let (total, within, breached) = figures(None, only);
                prop_assert_eq!(total, if outcome == ClockOutcome::Breached { breached } else { within });
                prop_assert_eq!(total, if outcome == ClockOutcome::Breached {
                    report.overall.breached
                } else {
                    report.overall.within_target
                });
            }
            let excluded = ClockFilter { outcome: Some(ClockOutcome::Excluded), ..every };
            prop_assert_eq!(listed(None, excluded).len() as u64, report.excluded.unwrap_or(0));
            // Excluded clocks by reason: the lines of each reason are the
            // report's count of it, overall and by trust.
            let by_reason = |trust: Option<&str>| {
                let mut counts = report::ExclusionCounts::default();
                for reason in ExclusionReason::ALL {
                    let only = ClockFilter { exclusion_reason: Some(*reason), ..every };
                    for line in listed(trust, only) {
                        assert_eq!(line.exclusion_reason(), Some(*reason));
                        counts.add(*reason, 1);
                    }
                }
                counts
            };
            if *standard == ClockKind::Fds {
                let counts = report.excluded_by_reason.unwrap();
                prop_assert_eq!(counts.total(), report.excluded.unwrap());
                prop_assert_eq!(by_reason(None), counts);
            } else {
                prop_assert_eq!(report.excluded_by_reason, None);
            }
            for line in &report.by_trust {
                prop_assert_eq!(figures(Some(&line.trust), every), of(&line.performance));
                prop_assert_eq!(
                    listed(Some(&line.trust), excluded).len() as u64,
                    line.excluded.unwrap_or(0)
                );
                if *standard == ClockKind::Fds {
                    prop_assert_eq!(Some(by_reason(Some(&line.trust))), line.excluded_by_reason);
                }
            }
            for line in &report.by_tumour_site {
                let site = ClockFilter { tumour_site: Some(line.tumour_site), ..every };
                prop_assert_eq!(figures(None, site), of(&line.performance));
            }
            if let Some(outcomes) = &report.by_outcome {
                for (fds, figure) in [
                    (FdsOutcome::Diagnosed, &outcomes.diagnosed),
                    (FdsOutcome::RuledOut, &outcomes.ruled_out),
                ] {
                    let only = ClockFilter { fds_outcome: Some(fds), ..every };
                    prop_assert_eq!(figures(None, only), of(figure));
                }
            }
            if let Some(split) = &report.d31 {
                for (group, figures_of) in &split.by_treatment {
                    let only = ClockFilter { treatment: Some(*group), ..every };
                    prop_assert_eq!(figures(None, only), of(&figures_of.performance));
                    for (modality, figure) in &figures_of.by_modality {
                        let only = ClockFilter { treatment: Some(*group), modality: Some(*modality), ..every };
                        prop_assert_eq!(figures(None, only), of(figure));
                    }
                }
                for (modality, figure) in &split.by_modality {
                    let only = ClockFilter { modality: Some(*modality), ..every };
                    prop_assert_eq!(figures(None, only), of(figure));
                }
            }
            for line in listed(None, every) {
                prop_assert!(line.stop.is_some_and(|d| month.contains(d)), "{:?}", line);
                prop_assert_eq!(line.key.standard, *standard);
                prop_assert!(line.outcome() != ClockOutcome::Excluded, "listed only when asked for");
            }
            for line in listed(None, excluded) {
                prop_assert!(line.stop.is_some_and(|d| month.contains(d)), "{:?}", line);
            }
        }
    }

    /// Every month a pathway counts in a standard (a stop, an exclusion, a
    /// treatment) is a month it has CWT records in: what lets today's
    /// lists behind this month's and last month's figures read only the
    /// pathways today's CWT index holds for the month (decision 187).
    #[test]
    fn every_month_counted_in_a_standard_holds_cwt_records(
        plan in plan(true),
        as_of_offset in 0i64..=250,
    ) {
        let history = build(&plan);
        let state = view(&history, plus(referred_on(&history), as_of_offset));
        let records = openptl_rules::cwt::record_months(&state);
        tally::standards_contributions(&state, &mut |key, _| {
            assert!(records.contains(&key.month), "{:?} {}: {:?}", key, show(&history), records);
        });
    }

    /// Decision 190: the pathways listed behind a milestone figure add up
    /// to it, for every tumour site, milestone and status of the report,
    /// over every referral month and one.
    #[test]
    fn the_pathways_listed_add_up_to_their_milestone_figures(
        plans in proptest::collection::vec(plan(true), 1..10),
        as_of_offset in 0i64..200,
    ) {
        use openptl_rules::milestone_list::{milestone_line, MilestoneFilter};
        let histories: Vec<_> = plans.iter().map(build).collect();
        let last = histories.iter().map(|h| referred_on(h)).max().unwrap();
        let as_of = plus(last, as_of_offset);
        let states: Vec<_> = histories.iter().map(|h| view(h, as_of)).collect();
        let month = Period::of(states[0].referred_on);
        for referred in [None, Some(month)] {
            let report = report::milestones(&states, referred, config());
            for site in &report.by_tumour_site {
                for figure in &site.milestones {
                    let statuses = [
                        (MilestoneStatus::Met, figure.met),
                        (MilestoneStatus::Missed, figure.missed),
                        (MilestoneStatus::Overdue, figure.overdue),
                        (MilestoneStatus::Pending, figure.pending),
                        (MilestoneStatus::NotApplicable, figure.not_applicable),
                    ];
                    for (status, n) in statuses {
                        let filter = MilestoneFilter {
                            tumour_site: site.tumour_site,
                            milestone: &figure.name,
                            status: Some(status),
                            referred,
                        };
                        let lines: Vec<_> = states
                            .iter()
                            .filter_map(|s| milestone_line(s, &filter, &|_| true, config()))
                            .collect();
                        prop_assert_eq!(lines.len() as u64, n, "{} {} {}", site.tumour_site, figure.name, status);
                        prop_assert!(lines.iter().all(|l| l.milestone.status == status && *l.milestone.name == *figure.name));
                    }
                }
            }
        }
    }

    /// A report over a period holding none of a pathway's dates counts
    /// nothing of it (what lets views pass over such pathways unread).
    #[test]
    fn a_period_outside_the_date_span_counts_nothing(
        plan in plan(true),
        as_of_offset in 0i64..=250,
        after in any::<bool>(),
        months_away in 0i64..3,
    ) {
        let history = build(&plan);
        let as_of = plus(referred_on(&history), as_of_offset);
        let state = view(&history, as_of);
        let (earliest, latest) = state.date_span();
        // The month just before the span or just after it (or a little further).
        let mut day = if after { latest } else { earliest };
        for _ in 0..=months_away {
            day = if after {
                day.with_day(1).unwrap() + Duration::days(32)
            } else {
                day.with_day(1).unwrap() - Duration::days(1)
            };
        }
        let period = Period::of(day);
        prop_assert!(period.last_day() < earliest || latest < day.with_day(1).unwrap());
        for kind in ClockKind::ALL {
            let report = report::standards([&state], *kind, period, &|_| true, config());
            prop_assert_eq!(report.overall.total, 0.0, "{:?} {}", kind, show(&history));
            prop_assert_eq!(report.excluded.unwrap_or(0), 0);
        }
        prop_assert!(openptl_rules::cwt::cwt_records(&state, period).is_empty());
        let milestones = report::milestones([&state], Some(period), config());
        prop_assert_eq!(milestones.overall.pathways, 0);
        prop_assert_eq!(milestones.fit.lower_gi_urgent_referrals, 0);
    }

    /// Issue 24: whatever the model learnt, the breach risk of a running
    /// clock already past its target is 1, of a stopped (or ended) one 0,
    /// and of any other a probability.
    #[test]
    fn breach_risk_is_one_past_target_and_zero_once_stopped(
        plan in plan(true),
        as_of_offset in 0i64..=250,
        weight in 0.0f64..50.0,
    ) {
        use openptl_rules::forecast::{observations, Model, ModelOptions, Outcome};
        let history = build(&plan);
        let referred = referred_on(&history);
        let as_of = plus(referred, as_of_offset);
        let state = view(&history, as_of);
        // Learnt from the same pathway as known on earlier days.
        let training: Vec<_> = (0..=as_of_offset)
            .step_by(9)
            .flat_map(|o| observations(&view(&history, plus(referred, o))).collect::<Vec<_>>())
            .collect();
        let model = Model::fit(&training, ModelOptions { prior_weight: weight });
        for o in observations(&state) {
            let p = model.probability(&o);
            match o.outcome {
                Outcome::Stopped | Outcome::Closed => prop_assert_eq!(p, 0.0),
                Outcome::Running if o.days > o.target_days => prop_assert_eq!(p, 1.0),
                Outcome::Running => prop_assert!((0.0..=1.0).contains(&p), "{}", p),
            }
            let clock = match o.kind {
                ClockKind::Fds => Some(&state.clocks.fds),
                ClockKind::D62 => Some(&state.clocks.d62),
                ClockKind::D31 => None,
            };
            match clock.map(|c| c.status) {
                Some(ClockStatus::OpenBreached) => prop_assert_eq!(p, 1.0),
                Some(ClockStatus::Met | ClockStatus::Breached | ClockStatus::Closed) => {
                    prop_assert_eq!(p, 0.0)
                }
                _ => {}
            }
        }
        // The PTL row's risk (decision 154): the riskiest running clock,
        // none without one (never 0), and the riskiest one not yet past
        // its target for the likely-to-breach worklist.
        let running: Vec<_> = observations(&state)
            .filter(|o| o.outcome == Outcome::Running)
            .collect();
        let row = openptl_rules::forecast::row_risk(&state, &model);
        prop_assert_eq!(row.is_some(), !running.is_empty());
        if let Some(row) = row {
            let highest = running.iter().map(|o| model.probability(o)).fold(0.0, f64::max);
            prop_assert_eq!(row.probability, highest);
            prop_assert!(running.iter().any(|o| o.kind == row.clock && model.probability(o) == highest));
            let ahead = running
                .iter()
                .filter(|o| o.days <= o.target_days)
                .map(|o| model.probability(o))
                .reduce(f64::max);
            prop_assert_eq!(row.ahead, ahead);
            if running.iter().any(|o| o.days > o.target_days) {
                prop_assert_eq!(row.probability, 1.0);
            }
        }
    }

    /// SPEC 2.12, 4.4: the 31-day standard of a month counts each treatment
    /// period treated in it once, in exactly one half (first definitive or
    /// subsequent) and one modality group, the first period included.
    #[test]
    fn the_31_day_split_adds_up_to_the_periods_treated(
        plan in plan(true),
        as_of_offset in 0i64..=250,
        month_offset in 0i64..=250,
    ) {
        let history = build(&plan);
        let as_of = plus(referred_on(&history), as_of_offset);
        let state = view(&history, as_of);
        let period = Period::of(plus(referred_on(&history), month_offset));
        let report = report::standards([&state], ClockKind::D31, period, &|_| true, config());
        let treated = state
            .treatment_periods
            .iter()
            .filter(|p| matches!(p.clock.status, ClockStatus::Met | ClockStatus::Breached))
            .filter(|p| p.clock.stop.is_some_and(|d| period.contains(d)))
            .count() as f64;
        prop_assert_eq!(report.overall.total, treated, "{}", show(&history));
        let split = report.d31.as_ref().expect("the d31 split");
        let halves: f64 = split.by_treatment.values().map(|g| g.performance.total).sum();
        let groups: f64 = split.by_modality.values().map(|p| p.total).sum();
        prop_assert_eq!(halves, treated);
        prop_assert_eq!(groups, treated);
        for group in split.by_treatment.values() {
            let inner: f64 = group.by_modality.values().map(|p| p.total).sum();
            prop_assert_eq!(inner, group.performance.total);
        }
        // The first period counts as it always did (SPEC 2.2): the old
        // first-treatment-only figure is a part of the new one.
        if report::counts_in(&state, ClockKind::D31, period) {
            prop_assert!(treated >= 1.0);
        }
    }

    /// SPEC 1 and 2.2, 4.2: days = (stop or as_of) − start − adjustment days;
    /// target_date = start + target + adjustment days; the status follows.
    #[test]
    fn clock_arithmetic_holds_for_every_started_clock(plan in plan(true), as_of_offset in 0i64..=250) {
        let history = build(&plan);
        for as_of in [plus(referred_on(&history), as_of_offset), today()] {
            let state = view(&history, as_of);
            for (kind, clock) in clocks(&state) {
                let context = || format!("{kind} as of {as_of}: {clock:?}\n{}", show(&history));
                match clock.status {
                    ClockStatus::NotApplicable | ClockStatus::NotStarted => {
                        prop_assert!(clock.start.is_none(), "{}", context());
                        continue;
                    }
                    ClockStatus::Excluded => {
                        prop_assert_eq!(kind, ClockKind::Fds, "{}", context());
                        continue;
                    }
                    _ => {}
                }
                let start = clock.start.unwrap();
                let end = clock.stop.unwrap_or(as_of);
                prop_assert!(clock.adjustment_days >= 0, "{}", context());
                prop_assert_eq!(clock.days, (end - start).num_days() - clock.adjustment_days, "{}", context());
                prop_assert_eq!(clock.target_date, Some(plus(start, clock.target_days + clock.adjustment_days)), "{}", context());
                prop_assert_eq!(clock.stop.is_none(), clock.status.is_running(), "{}", context());
                prop_assert_eq!(clock.stop.is_some(), clock.stop_reason.is_some(), "{}", context());
                let within = clock.days <= clock.target_days;
                let expected = match (clock.status, within) {
                    (ClockStatus::Closed, _) => ClockStatus::Closed,
                    (ClockStatus::Open | ClockStatus::OpenBreached, true) => ClockStatus::Open,
                    (ClockStatus::Open | ClockStatus::OpenBreached, false) => ClockStatus::OpenBreached,
                    (_, true) => ClockStatus::Met,
                    (_, false) => ClockStatus::Breached,
                };
                prop_assert_eq!(clock.status, expected, "{}", context());
                prop_assert!(start <= end, "{}", context());
            }
        }
    }

    /// SPEC 2.3: an admitted decline can only add adjustment days, so no
    /// target date moves earlier (and the FDS, never adjusted by declines,
    /// does not move at all); a non-admitted decline changes no clock.
    #[test]
    fn a_declined_offer_never_moves_a_target_date_earlier(
        plan in plan(true),
        at in 0i64..=150,
        offered in -10i64..=150,
        len in 1i64..=60,
        as_of_offset in 0i64..=250,
    ) {
        let history = build(&plan);
        let r = referred_on(&history);
        let decline = |setting: TreatmentSetting| {
            decode(EventType::TreatmentOfferDeclined, json!({
                "offered_on": iso(plus(r, offered)),
                "available_from": iso(plus(r, offered + len)),
                "setting": setting.as_str(),
            }))
        };
        let mut admitted = history.clone();
        match offer(&mut admitted, plus(r, at), decline(TreatmentSetting::Admitted)) {
            Ok(()) => {}
            // Nothing but notes and amendments joins a closed pathway.
            Err(RuleError::PathwayClosed) => return Ok(()),
            Err(other) => prop_assert!(false, "decline refused: {}\n{}", other, show(&history)),
        }
        let mut non_admitted = history.clone();
        prop_assert!(offer(&mut non_admitted, plus(r, at), decline(TreatmentSetting::NonAdmitted)).is_ok());
        for as_of in [plus(r, as_of_offset), today()] {
            let before = view(&history, as_of);
            let after = view(&admitted, as_of);
            let context = || format!("as of {as_of}\n{}", show(&admitted));
            prop_assert_eq!(&before.clocks.fds, &after.clocks.fds, "{}", context());
            for ((kind, b), (_, a)) in clocks(&before).into_iter().zip(clocks(&after)) {
                prop_assert_eq!(b.target_date.is_some(), a.target_date.is_some(), "{} {}", kind, context());
                if let (Some(b_date), Some(a_date)) = (b.target_date, a.target_date) {
                    prop_assert!(a_date >= b_date, "{} target moved from {} to {}\n{}", kind, b_date, a_date, context());
                    prop_assert!(a.days <= b.days, "{} days grew from {} to {}\n{}", kind, b.days, a.days, context());
                }
            }
            prop_assert_eq!(&before.clocks, &view(&non_admitted, as_of).clocks, "non-admitted decline as of {}", as_of);
        }
    }

    /// STYLE rule 8: a later clock stop never helps. Moving the first
    /// treatment later (a correction's new_occurred_on) never turns a
    /// `breached` clock it stopped `met`, and never lowers its days.
    ///
    /// The move stays short of the next event that re-starts or resets a
    /// clock (a decision to treat restarts the 31-day clock, a first-seen DNA
    /// resets FDS/62-day): crossing those legitimately changes the start.
    #[test]
    fn a_later_treatment_never_turns_breached_into_met(
        plan in plan_of(proptest::collection::vec(prop_oneof![8 => ordinary(), 1 => amendment()], 0..30)),
        decided in 0i64..=150,
        gap in 0i64..=90,
        delay in 1i64..=90,
    ) {
        let mut history = build(&plan);
        let r = referred_on(&history);
        let _ = offer(&mut history, plus(r, decided), decode(EventType::DecisionToTreat, json!({ "modality": "surgery" })));
        let _ = offer(&mut history, plus(r, decided + gap), decode(EventType::TreatmentStarted, json!({ "modality": "surgery" })));
        let events = effective(&history);
        let treatment = events.iter().find(|e| is_first_treatment(&e.data));
        prop_assume!(treatment.is_some());
        let treatment = treatment.unwrap();
        let old = treatment.occurred_on;
        // Events after the treatment in effective order (same-day events
        // appended later count: they follow it).
        let limit = events
            .iter()
            .filter(|e| (e.occurred_on, e.version) > (old, treatment.version))
            // A subsequent treatment cannot come before the first (SPEC 2.12).
            .filter(|e| e.data.event_type() == EventType::DecisionToTreat || is_first_seen_dna(&e.data) || is_subsequent_treatment(&e.data))
            .map(|e| plus(e.occurred_on, -1))
            .min()
            .unwrap_or(today())
            .min(today());
        let new = plus(old, delay).min(limit);
        prop_assume!(new > old);
        let mut moved = history.clone();
        let correction = decode(EventType::EventCorrected, json!({
            "corrects": treatment.event_id.to_string(),
            "reason": "treatment was later",
            "new_occurred_on": iso(new),
        }));
        let accepted = offer(&mut moved, new, correction);
        prop_assert!(accepted.is_ok(), "moving treatment {} -> {} was refused: {:?}\n{}", old, new, accepted, show(&history));
        for as_of in [new, today()] {
            let before = view(&history, as_of);
            let after = view(&moved, as_of);
            for ((kind, b), (_, a)) in clocks(&before).into_iter().zip(clocks(&after)) {
                // Only the clocks this treatment stopped (not, say, a 62-day
                // clock started by an upgrade after it).
                if b.stop != Some(old) || b.stop_reason != Some(StopReason::TreatmentStarted) {
                    continue;
                }
                let context = || format!("{kind} as of {as_of}, treatment {old} -> {new}\nbefore {b:?}\nafter  {a:?}\n{}", show(&moved));
                prop_assert_eq!(b.start, a.start, "{}", context());
                prop_assert!(!(b.status == ClockStatus::Breached && a.status == ClockStatus::Met), "{}", context());
                prop_assert!(!(b.status == ClockStatus::Breached && a.status.is_running()), "{}", context());
                if b.stop.is_some() && a.stop.is_some() && b.status != ClockStatus::Excluded {
                    prop_assert!(a.days >= b.days, "{}", context());
                }
            }
        }
    }

    /// Time only moves forward: a running `open_breached` clock is never
    /// `open` again at a later as_of, and its days waited never go down.
    ///
    /// Events dated between the two dates come into view at the later one;
    /// those that legitimately reset a clock (a first-seen DNA for FDS and
    /// 62-day, an admitted decline for 31/62-day, a decision to treat for the
    /// 31-day) exempt that clock.
    #[test]
    fn a_later_as_of_never_unbreaches_a_running_clock(plan in plan(true), first in 0i64..=200, later in 1i64..=120) {
        let history = build(&plan);
        let early = plus(referred_on(&history), first);
        let late = plus(early, later);
        let window: Vec<EffectiveEvent> = effective(&history).into_iter().filter(|e| e.occurred_on > early && e.occurred_on <= late).collect();
        let resets = |kind: ClockKind| {
            window.iter().any(|e| match kind {
                ClockKind::Fds => is_first_seen_dna(&e.data),
                ClockKind::D62 => is_first_seen_dna(&e.data) || is_admitted_decline(&e.data),
                ClockKind::D31 => is_admitted_decline(&e.data) || e.data.event_type() == EventType::DecisionToTreat,
            })
        };
        let before = view(&history, early);
        let after = view(&history, late);
        for ((kind, b), (_, a)) in clocks(&before).into_iter().zip(clocks(&after)) {
            if b.status != ClockStatus::OpenBreached || resets(kind) {
                continue;
            }
            let context = || format!("{kind} {early} -> {late}\nbefore {b:?}\nafter  {a:?}\n{}", show(&history));
            prop_assert!(!matches!(a.status, ClockStatus::Open | ClockStatus::Met), "{}", context());
            if a.status != ClockStatus::Excluded {
                prop_assert!(a.days >= b.days, "{}", context());
            }
        }
    }

    /// SPEC 3.2: events are applied in occurred_on order whatever order they
    /// were appended in. The dates of a pathway are appended in a random
    /// order (same-day events keep their order): the view, and the verdict
    /// of the pathway validation, do not change.
    #[test]
    fn append_order_across_dates_does_not_matter(
        plan in plan(false),
        keys in proptest::collection::vec(any::<u32>(), 64),
        as_of_offset in 0i64..=250,
    ) {
        let history = build(&plan);
        let mut by_day: BTreeMap<NaiveDate, Vec<RecordedEvent>> = BTreeMap::new();
        for e in &history {
            by_day.entry(e.occurred_on).or_default().push(e.clone());
        }
        let mut days: Vec<(usize, Vec<RecordedEvent>)> = by_day.into_values().enumerate().collect();
        days.sort_by_key(|(i, _)| (keys[i % keys.len()], *i));
        let shuffled: Vec<RecordedEvent> = days
            .into_iter()
            .flat_map(|(_, events)| events)
            .enumerate()
            .map(|(i, e)| RecordedEvent { version: i as u64 + 1, recorded_at: recorded_at(i as u64 + 1), ..e })
            .collect();
        let context = || format!("appended as\n{}", show(&shuffled));
        prop_assert!(check_pathway(&effective(&shuffled), today(), config()).is_ok(), "{}", context());
        for as_of in [plus(referred_on(&history), as_of_offset), today()] {
            prop_assert_eq!(view(&history, as_of), view(&shuffled, as_of), "{}", context());
        }
    }

    /// SPEC 3.2: "every view treats the voided event as never having
    /// happened". When the rules accept a void, the view equals the view of
    /// the history in which the event (and its corrections) never existed.
    #[test]
    fn a_voided_event_is_as_if_never_appended(plan in plan(true), pick in any::<Index>(), as_of_offset in 0i64..=250) {
        let history = build(&plan);
        let candidates: Vec<EffectiveEvent> = effective(&history)
            .into_iter()
            .filter(|e| e.data.event_type() != EventType::ReferralReceived)
            .collect();
        prop_assume!(!candidates.is_empty());
        let target = pick.get(&candidates).event_id;
        let mut voided = history.clone();
        let void = decode(EventType::EventVoided, json!({ "voids": target.to_string(), "reason": "wrong patient" }));
        let r = referred_on(&history);
        match offer(&mut voided, plus(r, 150), void) {
            Ok(()) => {}
            // A void that would leave an invalid pathway is refused (SPEC 2.11).
            Err(RuleError::CorrectionBreaksPathway { .. }) => return Ok(()),
            Err(other) => prop_assert!(false, "void of {} refused: {}\n{}", target, other, show(&history)),
        }
        let never: Vec<RecordedEvent> = history
            .iter()
            .filter(|e| {
                e.event_id != target
                    && !matches!(&e.data, EventData::EventCorrected(c) if c.corrects == target)
            })
            .cloned()
            .collect();
        prop_assert!(check_pathway(&effective(&never), today(), config()).is_ok());
        for as_of in [plus(r, as_of_offset), today()] {
            prop_assert_eq!(view(&voided, as_of), view(&never, as_of), "voided {} as of {}\n{}", target, as_of, show(&voided));
        }
    }
}

proptest! {
    #![proptest_config(proptest_config())]

    /// A clock that has stopped is settled: an event dated after its stop
    /// (other than those that carry earlier dates in their data, like a
    /// decline's offered_on, or re-classify the pathway, like fds_excluded)
    /// never changes it.
    #[test]
    fn events_after_a_stop_never_change_the_stopped_clock(plan in plan(true), later in ordinary(), gap in 1i64..=30) {
        let history = build(&plan);
        let Step::Event { ty, data, .. } = later else { return Ok(()) };
        prop_assume!(!matches!(ty, EventType::TreatmentOfferDeclined | EventType::FdsExcluded | EventType::FitResultRecorded));
        let before = view(&history, today());
        let last_stop = clocks(&before).iter().filter_map(|(_, c)| c.stop).max();
        prop_assume!(last_stop.is_some());
        let on = plus(last_stop.unwrap(), gap);
        let mut extended = history.clone();
        let r = referred_on(&history);
        prop_assume!(offer(&mut extended, on, decode(ty, resolve_dates(r, data))).is_ok());
        let after = view(&extended, today());
        for ((kind, b), (_, a)) in clocks(&before).into_iter().zip(clocks(&after)) {
            if b.stop.is_some() {
                prop_assert_eq!(b, a, "{} changed by an event on {}\n{}", kind, on, show(&extended));
            }
        }
    }
}

/// The minimal case `events_after_a_stop_never_change_the_stopped_clock`
/// found: a first-seen DNA after the FDS stop replaced the earlier DNA as
/// "the latest" and so cancelled its reset, turning a met FDS breached.
#[test]
fn a_dna_after_the_fds_stop_does_not_undo_an_earlier_reset() {
    let on = |d: &str| date::parse(d).unwrap();
    let mut history = Vec::new();
    let events = [
        (
            "2025-01-06",
            EventType::ReferralReceived,
            json!({ "nhs_number": "9434765919", "trust": "RXH", "tumour_site": "breast", "route": "urgent_suspected_cancer" }),
        ),
        (
            "2025-01-16",
            EventType::AppointmentMissed,
            json!({ "kind": "one_stop", "reason": "did_not_attend" }),
        ),
        (
            "2025-02-10",
            EventType::DiagnosisCommunicated,
            json!({ "outcome": "cancer_ruled_out" }),
        ),
        (
            "2025-02-15",
            EventType::AppointmentMissed,
            json!({ "kind": "first_outpatient", "reason": "did_not_attend" }),
        ),
    ];
    for (day, ty, data) in events {
        offer(&mut history, on(day), decode(ty, data)).unwrap();
    }
    let fds = view(&history, today()).clocks.fds;
    assert_eq!(
        (fds.status, fds.adjustment_days, fds.days),
        (ClockStatus::Met, 10, 25),
        "{fds:?}"
    );
    assert_eq!(fds.target_date, Some(on("2025-02-13")));
}

// ---------------------------------------------------------------------------
// Treatment periods (SPEC 2.12)
// ---------------------------------------------------------------------------

fn subsequent_periods(state: &PathwayState) -> Vec<&TreatmentPeriod> {
    state
        .treatment_periods
        .iter()
        .filter(|p| p.treatment == TreatmentKind::Subsequent)
        .collect()
}

/// What a subsequent period may not touch: the clocks, the milestones, the
/// pathway's status and its trusts (breach allocation sits in `d62`).
fn untouched_by_subsequent(state: &PathwayState) -> impl PartialEq + std::fmt::Debug + '_ {
    (
        &state.clocks,
        &state.milestones,
        state.status,
        &state.transfers,
        state.handover_date,
        state
            .treatment_periods
            .first()
            .filter(|p| p.treatment == TreatmentKind::First),
    )
}

proptest! {
    #![proptest_config(proptest_config())]

    /// SPEC 2.12: a subsequent decision, a decline of its plan and its
    /// treatment never change the FDS, 62-day or first 31-day clock, the
    /// milestones (nor the breach allocation inside `d62`).
    #[test]
    fn a_subsequent_period_never_changes_the_clocks_or_milestones(
        plan in plan(true),
        decision in subsequent_decision(),
        offered in 0i64..=150,
        len in 1i64..=40,
        gap in 0i64..=60,
        as_of_offset in 0i64..=300,
    ) {
        let history = build(&plan);
        let r = referred_on(&history);
        let Step::Event { offset, ty, data } = decision else { unreachable!() };
        let plan_id = data["plan_id"].as_str().unwrap().to_string();
        let mut extended = history.clone();
        prop_assume!(offer(&mut extended, plus(r, offset), decode(ty, resolve_dates(r, data))).is_ok());
        let decline = json!({
            "offered_on": iso(plus(r, offered)), "available_from": iso(plus(r, offered + len)),
            "setting": "admitted", "plan_id": plan_id,
        });
        let _ = offer(&mut extended, plus(r, offset), decode(EventType::TreatmentOfferDeclined, decline));
        let treatment = json!({ "modality": "radiotherapy", "treatment": "subsequent", "plan_id": plan_id });
        let _ = offer(&mut extended, plus(r, offset + gap), decode(EventType::TreatmentStarted, treatment));
        for as_of in [plus(r, as_of_offset), today()] {
            let before = view(&history, as_of);
            let after = view(&extended, as_of);
            prop_assert_eq!(untouched_by_subsequent(&before), untouched_by_subsequent(&after), "as of {}\n{}", as_of, show(&extended));
        }
    }

    /// SPEC 3.2 and 2.12: voiding a subsequent decision equals never having
    /// posted it (its period, next breach and PTL place go with it).
    #[test]
    fn voiding_a_subsequent_decision_equals_never_posting_it(
        plan in plan(true),
        decision in subsequent_decision(),
        as_of_offset in 0i64..=300,
    ) {
        let history = build(&plan);
        let r = referred_on(&history);
        let Step::Event { offset, ty, data } = decision else { unreachable!() };
        let mut posted = history.clone();
        prop_assume!(offer(&mut posted, plus(r, offset), decode(ty, resolve_dates(r, data))).is_ok());
        let id = posted.last().unwrap().event_id;
        let void = decode(EventType::EventVoided, json!({ "voids": id.to_string(), "reason": "entered in error" }));
        let accepted = offer(&mut posted, plus(r, 150), void);
        prop_assert!(accepted.is_ok(), "void refused: {:?}\n{}", accepted, show(&posted));
        for as_of in [plus(r, as_of_offset), today()] {
            prop_assert_eq!(view(&history, as_of), view(&posted, as_of), "as of {}\n{}", as_of, show(&posted));
        }
    }

    /// Days waited are never negative, on any clock or period, and a
    /// period's figures follow SPEC 4.2: target_date = start + 31 +
    /// adjustment; days = (stop or as_of) − start − adjustment, at least 0.
    #[test]
    fn days_waited_are_never_negative(plan in plan(true), as_of_offset in 0i64..=300) {
        let history = build(&plan);
        for as_of in [plus(referred_on(&history), as_of_offset), today()] {
            let state = view(&history, as_of);
            let context = || format!("as of {as_of}\n{}", show(&history));
            for (kind, clock) in clocks(&state) {
                prop_assert!(clock.days >= 0 && clock.adjustment_days >= 0, "{} {:?} {}", kind, clock, context());
            }
            if let Some(first) = state.treatment_periods.first().filter(|p| p.treatment == TreatmentKind::First) {
                prop_assert_eq!(&first.clock, &state.clocks.d31, "{}", context());
            }
            for period in subsequent_periods(&state) {
                let clock = &period.clock;
                prop_assert!(clock.days >= 0 && clock.adjustment_days >= 0, "{:?} {}", period, context());
                let start = clock.start.unwrap();
                prop_assert_eq!(clock.target_date, Some(plus(start, 31 + clock.adjustment_days)), "{:?} {}", period, context());
                if clock.status == ClockStatus::NotStarted {
                    prop_assert!(as_of < start && clock.stop.is_none(), "{:?} {}", period, context());
                    continue;
                }
                let end = clock.stop.unwrap_or(as_of);
                prop_assert_eq!(clock.days, ((end - start).num_days() - clock.adjustment_days).max(0), "{:?} {}", period, context());
                prop_assert_eq!(clock.stop.is_none(), clock.status.is_running(), "{:?} {}", period, context());
            }
            // On the PTL exactly while something runs, and the next breach is
            // the earliest among everything running.
            let running: Vec<NaiveDate> = clocks(&state).iter().filter_map(|(_, c)| c.breach_date())
                .chain(subsequent_periods(&state).iter().filter_map(|p| p.breach_date()))
                .collect();
            prop_assert_eq!(state.on_ptl, !running.is_empty(), "{}", context());
            prop_assert_eq!(state.next_breach.as_ref().map(|b| b.date), running.iter().min().copied(), "{}", context());
        }
    }

    /// Time only moves forward for periods too: an `open_breached`
    /// subsequent period is never open, met or not started again at a later
    /// as_of, and its days never go down, unless an event in between restarts
    /// or pauses it (a decision or an admitted decline of its plan).
    #[test]
    fn a_later_as_of_never_unbreaches_a_period(plan in plan(true), first in 0i64..=250, later in 1i64..=120) {
        let history = build(&plan);
        let early = plus(referred_on(&history), first);
        let late = plus(early, later);
        let window: Vec<EffectiveEvent> = effective(&history).into_iter().filter(|e| e.occurred_on > early && e.occurred_on <= late).collect();
        let resets = |plan: &str| window.iter().any(|e| match &*e.data {
            EventData::DecisionToTreat(d) => d.subsequent_plan() == Some(plan),
            EventData::TreatmentOfferDeclined(t) => t.setting == TreatmentSetting::Admitted && t.plan_id.as_deref() == Some(plan),
            _ => false,
        });
        let before = view(&history, early);
        let after = view(&history, late);
        for b in subsequent_periods(&before) {
            let plan = b.plan_id.as_deref().unwrap();
            if b.clock.status != ClockStatus::OpenBreached || resets(plan) {
                continue;
            }
            let a = subsequent_periods(&after).into_iter().find(|p| p.plan_id == b.plan_id);
            let context = || format!("{plan} {early} -> {late}\nbefore {b:?}\nafter  {a:?}\n{}", show(&history));
            prop_assert!(a.is_some(), "{}", context());
            let a = a.unwrap();
            prop_assert!(!matches!(a.clock.status, ClockStatus::Open | ClockStatus::Met | ClockStatus::NotStarted), "{}", context());
            prop_assert!(a.clock.days >= b.clock.days, "{}", context());
        }
    }
}

/// The generator reaches the rules of SPEC 2.12: among its pathways are
/// subsequent periods running, met, breached, closed and waiting for an ECAD.
#[test]
fn generated_pathways_reach_every_kind_of_subsequent_period() {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..1500 {
        let plan = plan(true).new_tree(&mut runner).unwrap().current();
        let history = build(&plan);
        let r = referred_on(&history);
        for as_of in [plus(r, 60), plus(r, 120), today()] {
            for p in subsequent_periods(&view(&history, as_of)) {
                seen.insert(p.clock.status.as_str());
            }
        }
    }
    for status in [
        "open",
        "open_breached",
        "met",
        "breached",
        "closed",
        "not_started",
    ] {
        assert!(
            seen.contains(status),
            "no generated subsequent period was {status}: {seen:?}"
        );
    }
}
