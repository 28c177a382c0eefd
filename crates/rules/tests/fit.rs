//! The FIT report (issue 25) as data: each case is a few hand-made
//! pathways, and the figures of the March 2025 report that must follow
//! (only the fields a case names are compared). Every figure was worked out
//! by hand.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use openptl_rules::fit;
use openptl_rules::{
    check_event, effective_events, evaluate, NewEvent, PathwayState, Period, RecordedEvent,
    RulesConfig,
};
use serde_json::{json, Value};
use uuid::Uuid;

const AS_OF: &str = "2025-06-30";
const REFERRED: &str = "2025-03-10";

fn date(text: &str) -> NaiveDate {
    openptl_rules::date::parse(text).unwrap()
}

type Ev = (&'static str, &'static str, Value);

/// One pathway's state from its events, each checked as the service checks it.
fn state_of(events: &[Ev], config: &RulesConfig) -> PathwayState {
    let base: DateTime<Utc> = "2025-07-01T00:00:00Z".parse().unwrap();
    let mut history: Vec<RecordedEvent> = Vec::new();
    for (event_type, on, data) in events {
        let new = NewEvent::from_json(json!({
            "pathway_id": "P", "type": event_type, "occurred_on": on, "data": data,
        }))
        .unwrap_or_else(|e| panic!("{event_type} {on}: {e}"));
        check_event(&history, new.occurred_on, &new.data, date(AS_OF), config)
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
    evaluate(&effective_events(&history).unwrap(), date(AS_OF), config).expect("a referral")
}

fn referral(trust: &str, site: &str, route: &str, on: &'static str) -> Ev {
    (
        "referral_received",
        on,
        json!({ "nhs_number": "9434765919", "trust": trust, "tumour_site": site, "route": route }),
    )
}

/// A lower GI urgent referral to RXH on 10 March, then `events`.
fn lgi(events: &[Ev]) -> Vec<Ev> {
    lgi_at("RXH", events)
}

fn lgi_at(trust: &str, events: &[Ev]) -> Vec<Ev> {
    let mut all = vec![referral(
        trust,
        "lower_gi",
        "urgent_suspected_cancer",
        REFERRED,
    )];
    all.extend(events.iter().cloned());
    all
}

fn fit_value(on: &'static str, value: f64) -> Ev {
    (
        "fit_result_recorded",
        on,
        json!({ "value_ug_per_g": value }),
    )
}

fn fit_not_appropriate(on: &'static str) -> Ev {
    (
        "fit_result_recorded",
        on,
        json!({ "not_appropriate": true }),
    )
}

fn triage(on: &'static str) -> Ev {
    (
        "triage_completed",
        on,
        json!({ "outcome": "straight_to_test" }),
    )
}

fn performed(on: &'static str, test: &str) -> Ev {
    ("diagnostic_performed", on, json!({ "test": test }))
}

fn requested(on: &'static str, test: &str) -> Ev {
    ("diagnostic_requested", on, json!({ "test": test }))
}

/// `actual` holds every field of `expected` with the same value (objects
/// compared field by field, arrays item by item over the items `expected`
/// names, recursively).
fn assert_within(case: &str, path: &str, actual: &Value, expected: &Value) {
    match expected {
        Value::Object(fields) => {
            for (key, want) in fields {
                let got = actual.get(key).unwrap_or(&Value::Null);
                assert_within(case, &format!("{path}.{key}"), got, want);
            }
        }
        Value::Array(items) => {
            let got = actual
                .as_array()
                .unwrap_or_else(|| panic!("{case}: {path} is {actual}"));
            assert!(
                got.len() >= items.len(),
                "{case}: {path} has {} items",
                got.len()
            );
            for (i, want) in items.iter().enumerate() {
                assert_within(case, &format!("{path}[{i}]"), &got[i], want);
            }
        }
        _ => assert_eq!(actual, expected, "{case}: {path}"),
    }
}

/// The one helper: the March report over `pathways`, against `expected`.
fn check(case: &str, pathways: &[Vec<Ev>], expected: Value) {
    let config = RulesConfig::defaults();
    let states: Vec<PathwayState> = pathways.iter().map(|p| state_of(p, &config)).collect();
    let period = Period::parse("2025-03").unwrap();
    let report = fit::report(&states, period, &|_| true, &config);
    let actual = serde_json::to_value(&report).unwrap();
    assert_within(case, "report", &actual, &expected);
}

fn colonoscopy(actual_bands: Value, extra: Value) -> Value {
    let mut v = json!({ "test": "colonoscopy", "bands": { "counts": actual_bands } });
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    v
}

#[test]
fn fit_before_and_after_referral() {
    check(
        "11 days before: with FIT and within the 21-day indicator",
        &[lgi(&[fit_value("2025-02-27", 5.0), triage("2025-03-12")])],
        json!({ "referrals": 1, "with_fit": 1, "with_fit_percent": 100.0, "with_fit_target_met": true,
                "within_indicator_days": 1, "indicator_percent": 100.0, "fit_after_referral": 0,
                "at_triage": { "counts": { "below_10": 1, "none": 0 } } }),
    );
    check(
        "40 days before: with FIT, outside the 21-day indicator",
        &[lgi(&[fit_value("2025-01-29", 50.0), triage("2025-03-12")])],
        json!({ "with_fit": 1, "within_indicator_days": 0, "indicator_percent": 0.0,
                "at_triage": { "counts": { "10_to_100": 1 } } }),
    );
    check(
        "on the referral date: with FIT",
        &[lgi(&[fit_value(REFERRED, 120.0)])],
        json!({ "with_fit": 1, "within_indicator_days": 1,
                "at_triage": { "counts": { "above_100": 1 } } }),
    );
    check(
        "after referral (and after triage): not with FIT; band at triage none",
        &[lgi(&[triage("2025-03-12"), fit_value("2025-03-20", 150.0)])],
        json!({ "with_fit": 0, "fit_after_referral": 1, "within_indicator_days": 0,
                "with_fit_percent": 0.0, "with_fit_target_met": false,
                "at_triage": { "counts": { "none": 1, "above_100": 0 }, "percent": { "none": 100.0 } } }),
    );
    check(
        "after referral but before triage: counts at triage",
        &[lgi(&[fit_value("2025-03-11", 7.0), triage("2025-03-14")])],
        json!({ "with_fit": 0, "fit_after_referral": 1,
                "at_triage": { "counts": { "below_10": 1 } } }),
    );
}

#[test]
fn several_results_and_no_triage() {
    check(
        "the latest on or before triage counts, not a later one",
        &[lgi(&[
            fit_value("2025-02-01", 200.0),
            fit_value("2025-03-01", 4.0),
            triage("2025-03-11"),
            fit_value("2025-03-15", 50.0),
        ])],
        json!({ "with_fit": 1, "within_indicator_days": 1,
                "at_triage": { "counts": { "below_10": 1, "10_to_100": 0, "above_100": 0 } } }),
    );
    check(
        "an earlier result within 21 days counts even when a later one is outside the window",
        &[lgi(&[
            fit_value("2025-02-20", 30.0),
            fit_value("2025-04-01", 3.0),
        ])],
        json!({ "with_fit": 1, "within_indicator_days": 1, "fit_after_referral": 0 }),
    );
    check(
        "no triage: the latest result",
        &[lgi(&[
            fit_value("2025-03-01", 50.0),
            fit_value("2025-04-01", 3.0),
        ])],
        json!({ "at_triage": { "counts": { "below_10": 1, "10_to_100": 0 } } }),
    );
    check(
        "no FIT at all",
        &[lgi(&[triage("2025-03-12")]), lgi(&[])],
        json!({ "referrals": 2, "with_fit": 0, "at_triage": { "counts": { "none": 2 }, "percent": { "none": 100.0, "below_10": 0.0 } } }),
    );
    check(
        "not appropriate: its own band, not a FIT result",
        &[lgi(&[
            fit_not_appropriate("2025-03-05"),
            triage("2025-03-12"),
        ])],
        json!({ "with_fit": 0, "not_appropriate": 1, "within_indicator_days": 0,
                "at_triage": { "counts": { "not_appropriate": 1 } } }),
    );
}

#[test]
fn colonoscopies_by_the_band_known_on_the_day() {
    check(
        "a colonoscopy on a FIT<10 patient",
        &[lgi(&[
            fit_value("2025-03-01", 3.0),
            requested("2025-03-12", "colonoscopy"),
            performed("2025-03-25", "colonoscopy"),
        ])],
        json!({ "tests": [colonoscopy(json!({ "below_10": 1 }),
                json!({ "pathways": 1, "on_fit_below_10": 1, "without_fit": 0,
                        "without_fit_percent": 0.0, "without_fit_target_met": true }))] }),
    );
    check(
        "a colonoscopy before the FIT: without FIT",
        &[lgi(&[
            performed("2025-03-20", "colonoscopy"),
            fit_value("2025-04-01", 60.0),
        ])],
        json!({ "tests": [colonoscopy(json!({ "none": 1, "10_to_100": 0 }),
                json!({ "pathways": 1, "without_fit": 1, "on_fit_below_10": 0,
                        "without_fit_percent": 100.0, "without_fit_target_met": false }))] }),
    );
    check(
        "one pathway, two colonoscopies: counted once, at the first",
        &[
            lgi(&[
                fit_value("2025-03-01", 150.0),
                performed("2025-03-20", "colonoscopy"),
                fit_value("2025-04-02", 5.0),
                performed("2025-04-10", "colonoscopy"),
            ]),
            lgi(&[fit_value("2025-03-01", 20.0)]),
            lgi(&[fit_value("2025-03-01", 20.0)]),
            lgi(&[fit_value("2025-03-01", 20.0)]),
            lgi(&[
                fit_value("2025-03-01", 20.0),
                performed("2025-03-30", "ct_colonography"),
            ]),
        ],
        json!({ "referrals": 5, "with_fit": 5, "with_fit_target_met": true,
                "tests": [
                    colonoscopy(json!({ "above_100": 1, "below_10": 0 }), json!({ "pathways": 1, "on_fit_below_10": 0 })),
                    { "test": "flexible_sigmoidoscopy", "pathways": 0, "without_fit_percent": null },
                    { "test": "ct_colonography", "pathways": 1, "bands": { "counts": { "10_to_100": 1 } } },
                ] }),
    );
    check(
        "a requested colonoscopy is not a colonoscopy done",
        &[lgi(&[requested("2025-03-12", "colonoscopy")])],
        json!({ "tests": [colonoscopy(json!({ "none": 0 }), json!({ "pathways": 0, "without_fit_percent": null }))] }),
    );
}

#[test]
fn which_pathways_count_and_where() {
    let breast_to_lgi = vec![
        referral("RXH", "breast", "urgent_suspected_cancer", REFERRED),
        fit_value("2025-03-01", 12.0),
        (
            "tumour_site_changed",
            "2025-03-15",
            json!({ "tumour_site": "lower_gi" }),
        ),
    ];
    let lgi_to_upper = lgi(&[
        fit_value("2025-03-01", 12.0),
        (
            "tumour_site_changed",
            "2025-03-15",
            json!({ "tumour_site": "upper_gi" }),
        ),
    ]);
    check(
        "re-classified: counted by the current tumour site",
        &[breast_to_lgi, lgi_to_upper],
        json!({ "referrals": 1, "with_fit": 1, "by_trust": [ { "trust": "RXH", "referrals": 1 } ] }),
    );
    check(
        "another month, another route: not counted",
        &[
            vec![referral(
                "RXH",
                "lower_gi",
                "urgent_suspected_cancer",
                "2025-04-02",
            )],
            vec![referral("RXH", "lower_gi", "other", REFERRED)],
            vec![referral("RXH", "lower_gi", "screening", REFERRED)]
                .into_iter()
                .map(|(t, on, mut d)| {
                    d["screening_programme"] = json!("bowel");
                    (t, on, d)
                })
                .collect(),
        ],
        json!({ "referrals": 0, "with_fit_percent": null, "with_fit_target_met": null }),
    );
    check(
        "under the trust at referral, after a transfer",
        &[
            lgi_at(
                "RXH",
                &[
                    fit_value("2025-03-01", 12.0),
                    (
                        "pathway_transferred",
                        "2025-03-20",
                        json!({ "to_trust": "RHM" }),
                    ),
                ],
            ),
            lgi_at("RHM", &[]),
        ],
        json!({ "referrals": 2, "with_fit": 1, "with_fit_percent": 50.0,
                "by_trust": [
                    { "trust": "RHM", "referrals": 1, "with_fit": 0 },
                    { "trust": "RXH", "referrals": 1, "with_fit": 1, "with_fit_percent": 100.0 },
                ] }),
    );
}

#[test]
fn targets_come_from_the_rules_file() {
    let config = RulesConfig::defaults();
    assert_eq!(config.fit.target_with_fit_percent, 80.0);
    assert_eq!(config.fit.target_colonoscopies_without_fit_percent, 20.0);
    // A file written before the targets existed still loads, with the defaults.
    let old = openptl_rules::config::DEFAULT_RULES_TOML
        .replace("target_with_fit_percent = 80.0\n", "")
        .replace("target_colonoscopies_without_fit_percent = 20.0\n", "");
    assert!(!old.contains("target_with_fit_percent ="));
    let loaded = RulesConfig::from_toml(&old).unwrap();
    assert_eq!(loaded, config);
    let strict = openptl_rules::config::DEFAULT_RULES_TOML.replace(
        "target_with_fit_percent = 80.0",
        "target_with_fit_percent = 75.0",
    );
    let strict = RulesConfig::from_toml(&strict).unwrap();
    let states = [state_of(&lgi(&[fit_value("2025-03-01", 5.0)]), &strict)];
    let report = fit::report(
        &states,
        Period::parse("2025-03").unwrap(),
        &|_| true,
        &strict,
    );
    assert_eq!(report.targets.with_fit_percent, 75.0);
    let bad = openptl_rules::config::DEFAULT_RULES_TOML.replace(
        "target_with_fit_percent = 80.0",
        "target_with_fit_percent = 180.0",
    );
    assert!(RulesConfig::from_toml(&bad).is_err());
}

#[test]
fn a_trust_filter_leaves_other_trusts_out() {
    let config = RulesConfig::defaults();
    let states: Vec<PathwayState> = [lgi_at("RXH", &[]), lgi_at("RHM", &[])]
        .iter()
        .map(|p| state_of(p, &config))
        .collect();
    let report = fit::report(
        &states,
        Period::parse("2025-03").unwrap(),
        &|t| t == "RHM",
        &config,
    );
    assert_eq!(report.overall.referrals, 1);
    assert_eq!(report.by_trust.len(), 1);
    assert_eq!(report.by_trust[0].trust, "RHM");
}
