//! The breach-risk estimator and the month-end projection (issue 24)
//! against small examples worked by hand, censored clocks included.

use chrono::NaiveDate;
use openptl_rules::forecast::month_end::MonthEndOptions;
use openptl_rules::forecast::{project, Mark, Model, ModelOptions, Observation, Outcome};
use openptl_rules::report::{Performance, StandardsReport, Thresholds, TrustPerformance};
use openptl_rules::*;

fn day(n: u64) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 3, 1).unwrap() + chrono::Days::new(n)
}

fn clock(trust: &str, days: i64, target_days: i64, outcome: Outcome) -> Observation {
    Observation {
        kind: ClockKind::Fds,
        tumour_site: TumourSite::LowerGi,
        route: Route::UrgentSuspectedCancer,
        trust: OdsCode::parse(trust).unwrap(),
        start: day(0),
        days,
        target_days,
        outcome,
        mark: None,
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

fn no_pooling() -> ModelOptions {
    ModelOptions { prior_weight: 0.0 }
}

/// Five clocks with a 3-day target: stopped on days 1, 2 and 4, one still
/// running on day 2 (censored: at risk on days 0 and 1 only), one ended by
/// the pathway's closure on day 3 (a competing risk). Counted-stop hazards:
/// day 0 0/5, day 1 1/5, day 2 1/3 (B stops; D and E at risk; C is
/// censored), day 3 0/2, day 4 1/1; closure hazard on day 3: 1/2.
fn censored_example() -> Vec<Observation> {
    vec![
        clock("RXH", 1, 3, Outcome::Stopped),
        clock("RXH", 2, 3, Outcome::Stopped),
        clock("RXH", 2, 3, Outcome::Running),
        clock("RXH", 4, 3, Outcome::Stopped),
        clock("RXH", 3, 3, Outcome::Closed),
    ]
}

#[test]
fn the_risk_is_the_kaplan_meier_chance_of_outlasting_the_target() {
    let model = Model::fit(&censored_example(), no_pooling());
    // From day 0, still running after day 3 (the KM S(3), every ending
    // counted): (1 - 0)(1 - 1/5)(1 - 1/3)(1 - 0 - 1/2) = 4/15.
    let fresh = clock("RXH", 0, 3, Outcome::Running);
    assert!(close(model.probability(&fresh), 4.0 / 15.0));
    // Still running on day 2: (1 - 1/3)(1 - 1/2) = 1/3.
    let waiting = clock("RXH", 2, 3, Outcome::Running);
    assert!(close(model.probability(&waiting), 1.0 / 3.0));
    // On day 3 (its last day within target): 1 - 0 - 1/2.
    assert!(close(
        model.probability(&clock("RXH", 3, 3, Outcome::Running)),
        0.5
    ));
}

#[test]
fn past_its_target_the_risk_is_one_and_once_stopped_zero() {
    let model = Model::fit(&censored_example(), no_pooling());
    assert_eq!(
        model.probability(&clock("RXH", 4, 3, Outcome::Running)),
        1.0
    );
    assert_eq!(
        model.probability(&clock("RXH", 4, 3, Outcome::Stopped)),
        0.0
    );
    assert_eq!(
        model.probability(&clock("RXH", 1, 3, Outcome::Stopped)),
        0.0
    );
    assert_eq!(model.probability(&clock("RXH", 1, 3, Outcome::Closed)), 0.0);
    let risk = model.risk(&clock("RXH", 5, 3, Outcome::Running));
    assert_eq!(risk.reason, "already past its 3-day target on day 5");
}

#[test]
fn the_chance_of_each_stop_day_follows_the_hazards() {
    let model = Model::fit(&censored_example(), no_pooling());
    let chances = model.stop_chances(&clock("RXH", 1, 3, Outcome::Running), 3);
    // Days 1..=4, counted stops only (the closure on day 3 takes half out):
    // 1/5; (4/5)(1/3); (4/5)(2/3)(0); (4/5)(2/3)(1/2)(1).
    let expected = [0.2, 0.8 / 3.0, 0.0, 0.8 * 2.0 / 3.0 * 0.5];
    assert_eq!(chances.len(), 4);
    for (got, want) in chances.iter().zip(expected) {
        assert!(close(*got, want), "{chances:?}");
    }
}

/// A small trust borrows from its parents: with k = 2, day 0's hazard is
/// root 6/12 (smoothed toward 0, no earlier day), site (6 + 2·1/2)/12 =
/// 7/12, route (6 + 2·7/12)/12 = 43/72, and the trust with 2 of 2 stopped
/// (2 + 2·43/72)/4 = 115/144 rather than its own 1.
#[test]
fn a_small_stratum_is_shrunk_toward_its_parent() {
    let mut clocks = Vec::new();
    for d in [0, 0, 0, 0, 1, 1, 1, 1] {
        clocks.push(clock("RHM", d, 0, Outcome::Stopped));
    }
    for _ in 0..2 {
        clocks.push(clock("RXH", 0, 0, Outcome::Stopped));
    }
    let model = Model::fit(&clocks, ModelOptions { prior_weight: 2.0 });
    let small = model.probability(&clock("RXH", 0, 0, Outcome::Running));
    assert!(close(small, 1.0 - 115.0 / 144.0), "{small}");
    // Without pooling the small trust would say no clock ever breaches.
    let alone = Model::fit(&clocks, no_pooling());
    assert!(close(
        alone.probability(&clock("RXH", 0, 0, Outcome::Running)),
        0.0
    ));
}

fn marked(days: i64, met_day: Option<i64>, outcome: Outcome) -> Observation {
    Observation {
        mark: Some(Mark {
            name: "first_test".into(),
            due_day: 1,
            met_day,
        }),
        ..clock("RXH", days, 3, outcome)
    }
}

/// Past the milestone's due day (day 1), clocks late on it and clocks on
/// time have hazards of their own: late ones stop on days 4 and 3 (day 2:
/// 0/2, day 3: 1/2), on-time ones on days 2 and 3 (day 2: 1/2, day 3: 1/1).
#[test]
fn a_late_milestone_changes_the_risk_once_its_due_day_has_passed() {
    let clocks = vec![
        marked(2, Some(0), Outcome::Stopped),
        marked(3, Some(1), Outcome::Stopped),
        marked(4, None, Outcome::Stopped),
        marked(3, Some(3), Outcome::Stopped),
    ];
    let model = Model::fit(&clocks, no_pooling());
    let late = marked(2, None, Outcome::Running);
    assert!(close(model.probability(&late), 0.5));
    let on_time = marked(2, Some(1), Outcome::Running);
    assert!(close(model.probability(&on_time), 0.0));
    // Before the due day nobody knows yet: the pooled hazards, day 1 0/4,
    // day 2 1/4, day 3 2/3: (1)(3/4)(1/3) = 1/4.
    let undecided = marked(1, None, Outcome::Running);
    assert!(close(model.probability(&undecided), 0.25));
    let risk = model.risk(&late);
    assert_eq!(
        risk.reason,
        "first test not met by day 1, now day 2; about 50% of such lower GI pathways (2 seen at this point) went on to breach"
    );
}

fn report(within: f64, breached: f64) -> StandardsReport {
    let overall = Performance {
        total: within + breached,
        within_target: within,
        breached,
        percent: Some(within / (within + breached) * 100.0),
    };
    StandardsReport {
        standard: ClockKind::Fds,
        period: Period::of(day(0)),
        target_days: 3,
        thresholds: Thresholds {
            standard: 75.0,
            operational: Some(80.0),
        },
        overall: overall.clone(),
        by_trust: vec![TrustPerformance {
            trust: "RXH".into(),
            performance: overall,
            excluded: Some(0),
            excluded_by_reason: None,
        }],
        by_tumour_site: Vec::new(),
        by_outcome: None,
        excluded: None,
        excluded_by_reason: None,
        d31: None,
    }
}

/// Two clocks stopped within target and two breached so far; one clock
/// running on day 3 of 3 that certainly stops today (every clock seen
/// reaching day 3 stopped on it): (2 + 1) / (4 + 1) = 60%, with no doubt.
#[test]
fn the_month_end_adds_the_expected_stops_of_running_clocks() {
    let history = vec![
        clock("RXH", 3, 3, Outcome::Stopped),
        clock("RXH", 3, 3, Outcome::Stopped),
    ];
    let model = Model::fit(&history, no_pooling());
    let mut observations = history.clone();
    observations.push(clock("RXH", 3, 3, Outcome::Running));
    let options = MonthEndOptions {
        new_starts: false,
        ..MonthEndOptions::default()
    };
    let projection = project(
        &report(2.0, 2.0),
        &observations,
        &model,
        day(10),
        &|_| true,
        options,
    );
    assert_eq!(projection.overall.percent_so_far, Some(50.0));
    assert_eq!(projection.overall.running, 1);
    assert_eq!(projection.overall.expected_stops, 1.0);
    assert_eq!(projection.overall.percent, Some(60.0));
    assert_eq!(projection.overall.low, Some(60.0));
    assert_eq!(projection.overall.high, Some(60.0));
    assert_eq!(projection.by_trust[0].trust, "RXH");
    assert_eq!(projection.by_trust[0].figure.percent, Some(60.0));
}

/// A running clock that stops on a coin toss, within target or not: the
/// point is 2.5 of 5 and the 80% interval spans the two outcomes.
#[test]
fn the_interval_spans_the_outcomes_of_uncertain_clocks() {
    let history = vec![
        clock("RXH", 3, 3, Outcome::Stopped),
        clock("RXH", 4, 3, Outcome::Stopped),
    ];
    let model = Model::fit(&history, no_pooling());
    let mut observations = history.clone();
    observations.push(clock("RXH", 3, 3, Outcome::Running));
    let options = MonthEndOptions {
        new_starts: false,
        ..MonthEndOptions::default()
    };
    let projection = project(
        &report(2.0, 2.0),
        &observations,
        &model,
        day(10),
        &|_| true,
        options,
    );
    assert_eq!(projection.overall.percent, Some(50.0));
    assert_eq!(projection.overall.expected_breaches, 0.5);
    assert_eq!(projection.overall.low, Some(40.0));
    assert_eq!(projection.overall.high, Some(60.0));
}
