//! The combined 31-day standard (SPEC 2.12, 4.4) as data: each case is a
//! small alliance of pathways, a month and the figures the standards view
//! must show for it (overall, first definitive vs subsequent, modality
//! groups, by trust). Every figure was worked out by hand.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use openptl_rules::report::{self, StandardsReport};
use openptl_rules::{
    check_event, effective_events, evaluate, ClockKind, NewEvent, PathwayState, Period,
    RecordedEvent, RulesConfig,
};
use serde_json::{json, Value};
use uuid::Uuid;

const AS_OF: &str = "2025-06-30";

fn date(text: &str) -> NaiveDate {
    openptl_rules::date::parse(text).unwrap()
}

/// One pathway's state from its events (each checked as the service checks it).
fn state_of(events: &[(&str, &str, Value)]) -> PathwayState {
    let config = RulesConfig::defaults();
    let base: DateTime<Utc> = "2025-07-01T00:00:00Z".parse().unwrap();
    let mut history: Vec<RecordedEvent> = Vec::new();
    for (event_type, on, data) in events {
        let new = NewEvent::from_json(json!({
            "pathway_id": "P", "type": event_type, "occurred_on": on, "data": data,
        }))
        .unwrap_or_else(|e| panic!("{event_type} {on}: {e}"));
        check_event(&history, new.occurred_on, &new.data, date(AS_OF), &config)
            .unwrap_or_else(|e| panic!("{event_type} {on}: {e}"));
        let version = history.len() as u64 + 1;
        history.push(RecordedEvent {
            event_id: Uuid::new_v4(),
            version,
            recorded_at: base + Duration::seconds(version as i64),
            occurred_on: new.occurred_on,
            data: new.data,
        });
    }
    let effective = effective_events(&history).unwrap();
    evaluate(&effective, date(AS_OF), &config).expect("a referral")
}

fn referral(on: &str, trust: &str, route: &str) -> (&'static str, String, Value) {
    (
        "referral_received",
        on.to_string(),
        json!({ "nhs_number": "9434765919", "trust": trust, "tumour_site": "breast", "route": route }),
    )
}

/// A pathway: referral, then (type, date, data) events.
fn pathway(trust: &str, route: &str, events: &[(&str, &str, Value)]) -> PathwayState {
    let (t, on, data) = referral("2025-01-06", trust, route);
    let mut all: Vec<(&str, &str, Value)> = vec![(t, &on, data)];
    all.extend(events.iter().cloned());
    state_of(&all)
}

fn decided(on: &'static str, modality: &str) -> (&'static str, &'static str, Value) {
    ("decision_to_treat", on, json!({ "modality": modality }))
}

fn treated(on: &'static str, modality: &str) -> (&'static str, &'static str, Value) {
    ("treatment_started", on, json!({ "modality": modality }))
}

fn decided_plan(
    on: &'static str,
    plan: &str,
    modality: &str,
    ecad: Option<&str>,
) -> (&'static str, &'static str, Value) {
    let mut data = json!({ "modality": modality, "treatment": "subsequent", "plan_id": plan });
    if let Some(ecad) = ecad {
        data["earliest_clinically_appropriate_date"] = json!(ecad);
    }
    ("decision_to_treat", on, data)
}

fn treated_plan(
    on: &'static str,
    plan: &str,
    modality: &str,
) -> (&'static str, &'static str, Value) {
    (
        "treatment_started",
        on,
        json!({ "modality": modality, "treatment": "subsequent", "plan_id": plan }),
    )
}

fn d31(states: &[PathwayState], month: &str) -> StandardsReport {
    report::standards(
        states,
        ClockKind::D31,
        Period::parse(month).unwrap(),
        &|_| true,
        &RulesConfig::defaults(),
    )
}

/// (total, within target) of a performance object of the JSON report.
fn figures(v: &Value) -> (f64, f64) {
    (
        v["total"].as_f64().unwrap(),
        v["within_target"].as_f64().unwrap(),
    )
}

struct Case {
    name: &'static str,
    pathways: Vec<PathwayState>,
    month: &'static str,
    overall: (f64, f64),
    first: (f64, f64),
    subsequent: (f64, f64),
    /// (modality group, total, within) over both halves; groups not named are zero.
    modalities: Vec<(&'static str, f64, f64)>,
    /// (trust, total, within)
    trusts: Vec<(&'static str, f64, f64)>,
}

fn usc() -> &'static str {
    "urgent_suspected_cancer"
}

fn cases() -> Vec<Case> {
    // Surgery 02-03 → 02-17 (14 days, met), then adjuvant radiotherapy
    // decided 03-03 with an ECAD of 03-24, treated 04-28 (35 days from the
    // ECAD: breached), and chemotherapy decided 03-03, treated 03-20 (17, met).
    let adjuvant = || {
        pathway(
            "RXH",
            usc(),
            &[
                decided("2025-02-03", "surgery"),
                treated("2025-02-17", "surgery"),
                decided_plan("2025-03-03", "rt", "radiotherapy", Some("2025-03-24")),
                decided_plan("2025-03-03", "chemo", "anticancer_drug", None),
                treated_plan("2025-03-20", "chemo", "anticancer_drug"),
                treated_plan("2025-04-28", "rt", "radiotherapy"),
            ],
        )
    };
    // Transferred to RHM on 03-01; first treatment there on 03-10 (decided
    // 02-10: 28 days, met) counts for RHM, whatever the trust at referral.
    let transferred = pathway(
        "RXH",
        usc(),
        &[
            decided("2025-02-10", "chemoradiotherapy"),
            (
                "pathway_transferred",
                "2025-03-01",
                json!({ "to_trust": "RHM" }),
            ),
            treated("2025-03-10", "chemoradiotherapy"),
        ],
    );
    // A recurrence: its first treatment is a subsequent one (decided 03-03,
    // treated 04-07: 35 days, breached).
    let recurrence = {
        let (t, _, data) = referral("2025-03-03", "RTH", "recurrence");
        state_of(&[
            (t, "2025-03-03", data),
            decided("2025-03-03", "anticancer_drug"),
            treated("2025-04-07", "anticancer_drug"),
        ])
    };
    // Surgery decided 03-10, given 03-31 (21 days, met); a subsequent period
    // ended by the pathway's closure counts nowhere.
    let closed = pathway(
        "RXH",
        usc(),
        &[
            decided("2025-03-10", "surgery"),
            treated("2025-03-31", "surgery"),
            decided_plan("2025-04-01", "rt", "radiotherapy", None),
            (
                "pathway_closed",
                "2025-04-15",
                json!({ "reason": "patient_died" }),
            ),
        ],
    );
    // Active monitoring (other group) on route `other`: first definitive.
    let monitoring = pathway(
        "RBD",
        "other",
        &[
            decided("2025-04-01", "active_monitoring"),
            treated("2025-04-02", "active_monitoring"),
        ],
    );
    vec![
        Case {
            name: "february: the first treatment only",
            pathways: vec![adjuvant()],
            month: "2025-02",
            overall: (1.0, 1.0),
            first: (1.0, 1.0),
            subsequent: (0.0, 0.0),
            modalities: vec![("surgery", 1.0, 1.0)],
            trusts: vec![("RXH", 1.0, 1.0)],
        },
        Case {
            name: "march: a subsequent drug, a transferred chemoradiotherapy",
            pathways: vec![adjuvant(), transferred.clone(), closed.clone()],
            month: "2025-03",
            overall: (3.0, 3.0),
            first: (2.0, 2.0),
            subsequent: (1.0, 1.0),
            modalities: vec![
                ("anticancer_drug", 1.0, 1.0),
                ("radiotherapy", 1.0, 1.0),
                ("surgery", 1.0, 1.0),
            ],
            trusts: vec![("RHM", 1.0, 1.0), ("RXH", 2.0, 2.0)],
        },
        Case {
            name: "april: a breached ECAD period, a recurrence, a closure, monitoring",
            pathways: vec![adjuvant(), recurrence, closed, monitoring, transferred],
            month: "2025-04",
            overall: (3.0, 1.0),
            first: (1.0, 1.0),
            subsequent: (2.0, 0.0),
            modalities: vec![
                ("anticancer_drug", 1.0, 0.0),
                ("radiotherapy", 1.0, 0.0),
                ("other", 1.0, 1.0),
            ],
            trusts: vec![("RBD", 1.0, 1.0), ("RTH", 1.0, 0.0), ("RXH", 1.0, 0.0)],
        },
        Case {
            name: "a month with no treatment",
            pathways: vec![adjuvant()],
            month: "2025-05",
            overall: (0.0, 0.0),
            first: (0.0, 0.0),
            subsequent: (0.0, 0.0),
            modalities: vec![],
            trusts: vec![],
        },
    ]
}

#[test]
fn the_31_day_standard_counts_every_treatment_period() {
    let mut failures = Vec::new();
    for case in cases() {
        let report = d31(&case.pathways, case.month);
        let v = serde_json::to_value(&report).unwrap();
        let mut check = |what: &str, actual: (f64, f64), expected: (f64, f64)| {
            if actual != expected {
                failures.push(format!(
                    "{}: {what}: {actual:?}, expected {expected:?}",
                    case.name
                ));
            }
        };
        check("overall", figures(&v), case.overall);
        let halves = ["first_definitive", "subsequent"].map(|h| figures(&v["by_treatment"][h]));
        check(
            "halves",
            (halves[0].0 + halves[1].0, halves[0].1 + halves[1].1),
            case.overall,
        );
        check(
            "first_definitive",
            figures(&v["by_treatment"]["first_definitive"]),
            case.first,
        );
        check(
            "subsequent",
            figures(&v["by_treatment"]["subsequent"]),
            case.subsequent,
        );
        for group in ["surgery", "anticancer_drug", "radiotherapy", "other"] {
            let expected = case
                .modalities
                .iter()
                .find(|(g, _, _)| *g == group)
                .map_or((0.0, 0.0), |(_, t, w)| (*t, *w));
            check(group, figures(&v["by_modality"][group]), expected);
            // Each half's modality groups add up to the whole.
            let halves = ["first_definitive", "subsequent"]
                .map(|h| figures(&v["by_treatment"][h]["by_modality"][group]));
            check(
                &format!("{group} halves"),
                (halves[0].0 + halves[1].0, halves[0].1 + halves[1].1),
                expected,
            );
        }
        let trusts: Vec<(String, f64, f64)> = report
            .by_trust
            .iter()
            .map(|t| {
                (
                    t.trust.clone(),
                    t.performance.total,
                    t.performance.within_target,
                )
            })
            .collect();
        let expected: Vec<(String, f64, f64)> = case
            .trusts
            .iter()
            .map(|(t, n, w)| (t.to_string(), *n, *w))
            .collect();
        if trusts != expected {
            failures.push(format!(
                "{}: by trust {trusts:?}, expected {expected:?}",
                case.name
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_split_is_only_on_the_31_day_report() {
    let states = [pathway(
        "RXH",
        usc(),
        &[
            decided("2025-02-03", "surgery"),
            treated("2025-02-17", "surgery"),
        ],
    )];
    let month = Period::parse("2025-02").unwrap();
    for standard in [ClockKind::Fds, ClockKind::D62] {
        let report = report::standards(
            &states,
            standard,
            month,
            &|_| true,
            &RulesConfig::defaults(),
        );
        let v = serde_json::to_value(&report).unwrap();
        assert!(v.get("by_treatment").is_none(), "{standard}: {v}");
        assert!(v.get("by_modality").is_none(), "{standard}: {v}");
    }
    let v = serde_json::to_value(d31(&states, "2025-02")).unwrap();
    assert_eq!(v["by_treatment"]["subsequent"]["percent"], Value::Null);
    assert_eq!(v["by_treatment"]["first_definitive"]["percent"], 100.0);
}

#[test]
fn a_trust_filter_counts_the_trust_at_treatment() {
    let states = [pathway(
        "RXH",
        usc(),
        &[
            decided("2025-02-03", "surgery"),
            treated("2025-02-17", "surgery"),
            (
                "pathway_transferred",
                "2025-03-01",
                json!({ "to_trust": "RHM" }),
            ),
            decided_plan("2025-03-03", "rt", "radiotherapy", None),
            treated_plan("2025-03-20", "rt", "radiotherapy"),
        ],
    )];
    let only = |trust: &'static str, month: &str| {
        report::standards(
            &states,
            ClockKind::D31,
            Period::parse(month).unwrap(),
            &|t| t == trust,
            &RulesConfig::defaults(),
        )
        .overall
        .total
    };
    assert_eq!(only("RXH", "2025-02"), 1.0, "surgery before the transfer");
    assert_eq!(only("RHM", "2025-02"), 0.0);
    assert_eq!(only("RHM", "2025-03"), 1.0, "radiotherapy after it");
    assert_eq!(only("RXH", "2025-03"), 0.0);
    assert!(report::counts_in_standard(
        &states[0],
        ClockKind::D31,
        Period::parse("2025-03").unwrap()
    ));
    assert!(!report::counts_in(
        &states[0],
        ClockKind::D31,
        Period::parse("2025-03").unwrap()
    ));
}

/// A transfer dated a treatment's day but recorded after it comes after it
/// (SPEC 3.2, decision 192): the trust at the treatment is the one holding
/// the pathway before the transfer, for the 31-day standard, the 62-day
/// allocation and the CWT record alike. Recorded before it, the receiving
/// trust treated.
#[test]
fn a_transfer_recorded_after_its_days_treatment_comes_after_it() {
    let transfer = (
        "pathway_transferred",
        "2025-03-20",
        json!({ "to_trust": "RHM" }),
    );
    let first = [
        decided("2025-02-03", "surgery"),
        treated("2025-02-17", "surgery"),
        decided_plan("2025-03-03", "rt", "radiotherapy", None),
    ];
    let mut after = first.to_vec();
    after.extend([
        treated_plan("2025-03-20", "rt", "radiotherapy"),
        transfer.clone(),
    ]);
    let mut before = first.to_vec();
    before.extend([transfer, treated_plan("2025-03-20", "rt", "radiotherapy")]);
    for (events, treating) in [(after, "RXH"), (before, "RHM")] {
        let states = [pathway("RXH", usc(), &events)];
        assert_eq!(states[0].trust.as_str(), "RHM");
        let only = |trust: &'static str| {
            report::standards(
                &states,
                ClockKind::D31,
                Period::parse("2025-03").unwrap(),
                &|t| t == trust,
                &RulesConfig::defaults(),
            )
            .overall
            .total
        };
        assert_eq!(only(treating), 1.0, "treated at {treating}");
        let records =
            openptl_rules::cwt::cwt_records(&states[0], Period::parse("2025-03").unwrap());
        assert_eq!(records.len(), 1);
        let at = openptl_rules::cwt::COLUMNS
            .iter()
            .position(|c| c.contains("(TREATMENT START DATE CANCER)"))
            .unwrap();
        assert_eq!(records[0].item(at), treating);
    }
}

/// Transfers recorded after the treatment on its day do not move the
/// handover to the treating trust (SPEC 2.4, decision 192): the 62-day
/// allocation and the CWT record's transfer date are those of the transfer
/// folded before the treatment.
#[test]
fn transfers_after_the_treatment_on_its_day_leave_the_handover_as_it_was() {
    let transfer =
        |on: &'static str, to: &str| ("pathway_transferred", on, json!({ "to_trust": to }));
    let before = vec![
        transfer("2025-02-01", "RHM"),
        decided("2025-03-03", "surgery"),
        treated("2025-03-20", "surgery"),
    ];
    let mut after = before.clone();
    after.extend([transfer("2025-03-20", "RXH"), transfer("2025-03-20", "RHM")]);
    let [plain, doubled] = [before, after].map(|events| pathway("RXH", usc(), &events));
    let allocation = |s: &PathwayState| s.clocks.d62.allocation.clone();
    assert!(allocation(&plain).is_some());
    assert_eq!(allocation(&doubled), allocation(&plain));
    let transfer_date = |s: &PathwayState| {
        let records = openptl_rules::cwt::cwt_records(s, Period::parse("2025-03").unwrap());
        let at = openptl_rules::cwt::COLUMNS
            .iter()
            .position(|c| *c == "TRANSFER TO TREATMENT DATE")
            .unwrap();
        records[0].item(at).to_string()
    };
    assert_eq!(transfer_date(&plain), "2025-02-01");
    assert_eq!(transfer_date(&doubled), "2025-02-01");
}
