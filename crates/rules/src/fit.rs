//! FIT and the lower GI pathway (SPEC 2.6, issue 25): what a pathway's
//! state keeps of its FIT results, triage and lower GI tests
//! ([`LowerGiFacts`], derived once in the fold), and the monthly FIT
//! report an alliance is held to: referrals accompanied by a FIT, the
//! 21-day primary-care indicator, the FIT band at triage, and colonoscopies
//! (flexible sigmoidoscopy and CT colonography beside them) by the FIT band
//! known on the day of the test, each against its target.
//!
//! Pure functions of pathway states; the caller chooses which pathways the
//! reader may see. Counting rules where the SPEC is silent: decisions
//! 123–127 in docs/decisions.md.

use std::borrow::Borrow;
use std::collections::BTreeMap;

use chrono::{Days, NaiveDate};
use serde::Serialize;

use crate::codes::*;
use crate::config::RulesConfig;
use crate::event::EventData;
use crate::history::EffectiveEvent;
use crate::ids::OdsCode;
use crate::pathway::PathwayState;
use crate::report::Period;

/// The lower GI tests the report counts, colonoscopy first (SPEC 2.7).
pub const GI_TESTS: [DiagnosticTest; 3] = [
    DiagnosticTest::Colonoscopy,
    DiagnosticTest::FlexibleSigmoidoscopy,
    DiagnosticTest::CtColonography,
];

/// The report's FIT bands, in the order the plan reports them.
pub const REPORT_BANDS: [FitBand; 5] = [
    FitBand::Below10,
    FitBand::From10To100,
    FitBand::Above100,
    FitBand::None,
    FitBand::NotAppropriate,
];

/// One FIT result: its date and band.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FitResult {
    pub on: NaiveDate,
    pub band: FitBand,
}

/// How far a lower GI test has gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TestStage {
    Requested,
    Performed,
}

impl TestStage {
    pub fn as_str(self) -> &'static str {
        match self {
            TestStage::Requested => "requested",
            TestStage::Performed => "performed",
        }
    }
}

impl Serialize for TestStage {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// The first request or the first performance of one lower GI test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GiTest {
    pub on: NaiveDate,
    pub test: DiagnosticTest,
    pub stage: TestStage,
}

/// What the FIT report and the `fit_below_10` worklist need of a pathway:
/// every effective FIT result (in `occurred_on` order, as the fold applies
/// them), the date of the first triage, and the first request and first
/// performance of each of [`GI_TESTS`] (at most six entries).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LowerGiFacts {
    pub fit_results: Vec<FitResult>,
    pub triaged_on: Option<NaiveDate>,
    pub tests: Vec<GiTest>,
}

impl LowerGiFacts {
    /// The facts of a pathway's effective events (in `occurred_on` order).
    pub fn of(events: &[&EffectiveEvent]) -> LowerGiFacts {
        let mut facts = LowerGiFacts::default();
        for e in events {
            let (test, stage) = match &*e.data {
                EventData::FitResultRecorded(f) => {
                    facts.fit_results.push(FitResult {
                        on: e.occurred_on,
                        band: f.band(),
                    });
                    continue;
                }
                EventData::TriageCompleted(_) => {
                    facts.triaged_on.get_or_insert(e.occurred_on);
                    continue;
                }
                EventData::DiagnosticRequested(d) => (d.test, TestStage::Requested),
                EventData::DiagnosticPerformed(d) => (d.test, TestStage::Performed),
                _ => continue,
            };
            let counted = GI_TESTS.contains(&test);
            let seen = facts
                .tests
                .iter()
                .any(|t| t.test == test && t.stage == stage);
            if counted && !seen {
                facts.tests.push(GiTest {
                    on: e.occurred_on,
                    test,
                    stage,
                });
            }
        }
        facts
    }

    /// The band known on `day`: the latest result dated on or before it
    /// (on the same date, the one applied last), else `none`.
    pub fn band_on(&self, day: NaiveDate) -> FitBand {
        self.fit_results
            .iter()
            .rev()
            .find(|r| r.on <= day)
            .map_or(FitBand::None, |r| r.band)
    }

    /// The band of the latest result (what `fit_band` shows).
    pub fn latest_band(&self) -> FitBand {
        self.fit_results.last().map_or(FitBand::None, |r| r.band)
    }

    /// The FIT band at triage: on the first triage date, or the latest
    /// result for a pathway not triaged (issue 25).
    pub fn band_at_triage(&self) -> FitBand {
        match self.triaged_on {
            Some(day) => self.band_on(day),
            None => self.latest_band(),
        }
    }

    /// The first time `test` reached `stage`.
    pub fn test(&self, test: DiagnosticTest, stage: TestStage) -> Option<NaiveDate> {
        self.tests
            .iter()
            .find(|t| t.test == test && t.stage == stage)
            .map(|t| t.on)
    }

    /// How far the colonoscopy has gone: performed, else requested.
    pub fn colonoscopy(&self) -> Option<TestStage> {
        [TestStage::Performed, TestStage::Requested]
            .into_iter()
            .find(|s| self.test(DiagnosticTest::Colonoscopy, *s).is_some())
    }

    /// Every date held (for [`PathwayState::date_span`]).
    pub fn dates(&self) -> impl Iterator<Item = NaiveDate> + '_ {
        self.fit_results
            .iter()
            .map(|r| r.on)
            .chain(self.triaged_on)
            .chain(self.tests.iter().map(|t| t.on))
    }
}

/// A lower GI urgent referral (SPEC 2.6): route `urgent_suspected_cancer`,
/// current tumour site `lower_gi` (SPEC 2.5: views report by the current
/// site, so a re-classified pathway counts where it is now).
pub fn is_lower_gi_urgent(state: &PathwayState) -> bool {
    state.tumour_site == TumourSite::LowerGi && state.route == Route::UrgentSuspectedCancer
}

/// Open lower GI pathways whose latest FIT is below 10: the `fit_below_10`
/// PTL worklist (the safety-netting review).
pub fn on_fit_below_10_worklist(tumour_site: TumourSite, latest: FitBand) -> bool {
    tumour_site == TumourSite::LowerGi && latest == FitBand::Below10
}

/// A FIT result of a value (not "not appropriate") dated on or before the
/// referral, within `days` of it (decision 123).
pub fn has_result_within(facts: &LowerGiFacts, referred_on: NaiveDate, days: i64) -> bool {
    let from = referred_on - Days::new(days.max(0) as u64);
    facts
        .fit_results
        .iter()
        .any(|r| r.band.has_value() && r.on >= from && r.on <= referred_on)
}

fn percent(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| (part as f64 / whole as f64 * 1000.0).round() / 10.0)
}

/// The configured targets, as the report shows them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FitTargets {
    /// At least this share of referrals accompanied by a FIT result.
    pub with_fit_percent: f64,
    /// Fewer than this share of colonoscopies without a FIT result.
    pub colonoscopies_without_fit_percent: f64,
}

/// Counts by FIT band, with each band's share.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BandMix {
    pub counts: BTreeMap<&'static str, u64>,
    pub percent: BTreeMap<&'static str, Option<f64>>,
}

impl BandMix {
    fn empty() -> BandMix {
        BandMix {
            counts: REPORT_BANDS.iter().map(|b| (b.as_str(), 0)).collect(),
            percent: REPORT_BANDS.iter().map(|b| (b.as_str(), None)).collect(),
        }
    }

    fn add(&mut self, band: FitBand) {
        *self.counts.entry(band.as_str()).or_insert(0) += 1;
    }

    fn total(&self) -> u64 {
        self.counts.values().sum()
    }

    fn combine(&mut self, other: &BandMix, sign: i64) {
        for (band, n) in &other.counts {
            let mine = self.counts.entry(band).or_insert(0);
            *mine = mine.wrapping_add_signed(sign * *n as i64);
        }
    }

    fn finish(&mut self) {
        let total = self.total();
        for (band, count) in &self.counts {
            self.percent.insert(band, percent(*count, total));
        }
    }
}

/// One lower GI test on the month's referrals: pathways on which it was
/// performed, by the FIT band known on the day of the (first) test.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TestFigures {
    pub test: DiagnosticTest,
    pub pathways: u64,
    pub bands: BandMix,
    /// No FIT result of a value on the day: band `none` or `not_appropriate`.
    pub without_fit: u64,
    pub without_fit_percent: Option<f64>,
    /// On a FIT below 10 µg/g.
    pub on_fit_below_10: u64,
    /// Colonoscopy only: `without_fit_percent` below its target.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub without_fit_target_met: Option<bool>,
}

impl TestFigures {
    fn empty(test: DiagnosticTest) -> TestFigures {
        TestFigures {
            test,
            pathways: 0,
            bands: BandMix::empty(),
            without_fit: 0,
            without_fit_percent: None,
            on_fit_below_10: 0,
            without_fit_target_met: None,
        }
    }
}

/// The FIT figures of a set of lower GI urgent referrals.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FitFigures {
    pub referrals: u64,
    /// With a FIT result of a value dated on or before the referral
    /// (at most `days_before_referral` before it, SPEC 2.6).
    pub with_fit: u64,
    pub with_fit_percent: Option<f64>,
    pub with_fit_target_met: Option<bool>,
    /// FIT recorded as not appropriate on or before the referral.
    pub not_appropriate: u64,
    /// The first FIT result of a value is dated after the referral.
    pub fit_after_referral: u64,
    /// The primary-care indicator: a result within `indicator_days` before referral.
    pub within_indicator_days: u64,
    pub indicator_percent: Option<f64>,
    /// The FIT band at triage (referrals not triaged: the latest result).
    pub at_triage: BandMix,
    /// Colonoscopy, flexible sigmoidoscopy, CT colonography.
    pub tests: Vec<TestFigures>,
}

impl FitFigures {
    pub fn empty() -> FitFigures {
        FitFigures {
            referrals: 0,
            with_fit: 0,
            with_fit_percent: None,
            with_fit_target_met: None,
            not_appropriate: 0,
            fit_after_referral: 0,
            within_indicator_days: 0,
            indicator_percent: None,
            at_triage: BandMix::empty(),
            tests: GI_TESTS.iter().map(|t| TestFigures::empty(*t)).collect(),
        }
    }

    fn add(&mut self, state: &PathwayState, config: &RulesConfig) {
        let facts = &state.lower_gi;
        let referred_on = state.referred_on;
        self.referrals += 1;
        if has_result_within(facts, referred_on, config.fit.days_before_referral) {
            self.with_fit += 1;
        } else if facts
            .fit_results
            .iter()
            .any(|r| r.band.has_value() && r.on > referred_on)
        {
            self.fit_after_referral += 1;
        }
        if facts
            .fit_results
            .iter()
            .any(|r| r.band == FitBand::NotAppropriate && r.on <= referred_on)
        {
            self.not_appropriate += 1;
        }
        if has_result_within(facts, referred_on, config.fit.indicator_days) {
            self.within_indicator_days += 1;
        }
        self.at_triage.add(facts.band_at_triage());
        for figures in &mut self.tests {
            let Some(day) = facts.test(figures.test, TestStage::Performed) else {
                continue;
            };
            let band = facts.band_on(day);
            figures.pathways += 1;
            figures.bands.add(band);
            if !band.has_value() {
                figures.without_fit += 1;
            }
            if band == FitBand::Below10 {
                figures.on_fit_below_10 += 1;
            }
        }
    }

    /// Adds (`sign` 1) or takes away (`sign` -1) every count of `other`
    /// (counts of states added before; none is ever left below zero).
    pub fn combine(&mut self, other: &FitFigures, sign: i64) {
        let add =
            |mine: &mut u64, theirs: u64| *mine = mine.wrapping_add_signed(sign * theirs as i64);
        add(&mut self.referrals, other.referrals);
        add(&mut self.with_fit, other.with_fit);
        add(&mut self.not_appropriate, other.not_appropriate);
        add(&mut self.fit_after_referral, other.fit_after_referral);
        add(&mut self.within_indicator_days, other.within_indicator_days);
        self.at_triage.combine(&other.at_triage, sign);
        for (mine, theirs) in self.tests.iter_mut().zip(&other.tests) {
            add(&mut mine.pathways, theirs.pathways);
            add(&mut mine.without_fit, theirs.without_fit);
            add(&mut mine.on_fit_below_10, theirs.on_fit_below_10);
            mine.bands.combine(&theirs.bands, sign);
        }
    }

    fn finish(&mut self, targets: &FitTargets) {
        self.with_fit_percent = percent(self.with_fit, self.referrals);
        self.with_fit_target_met = self.with_fit_percent.map(|p| p >= targets.with_fit_percent);
        self.indicator_percent = percent(self.within_indicator_days, self.referrals);
        self.at_triage.finish();
        for figures in &mut self.tests {
            figures.bands.finish();
            figures.without_fit_percent = percent(figures.without_fit, figures.pathways);
            if figures.test == DiagnosticTest::Colonoscopy {
                figures.without_fit_target_met = figures
                    .without_fit_percent
                    .map(|p| p < targets.colonoscopies_without_fit_percent);
            }
        }
    }
}

/// One trust's FIT figures (the trust at referral).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrustFit {
    pub trust: String,
    #[serde(flatten)]
    pub figures: FitFigures,
}

/// The FIT report of one month (issue 25).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FitReport {
    pub period: Period,
    pub days_before_referral: i64,
    pub indicator_days: i64,
    pub targets: FitTargets,
    #[serde(flatten)]
    pub overall: FitFigures,
    pub by_trust: Vec<TrustFit>,
}

/// The FIT figures of the lower GI urgent referrals received in `period`,
/// overall and by the trust at referral, among the trusts `allows` admits.
/// Tests and FIT results count whenever they are dated (up to the states'
/// `as_of`): the report follows the month's referrals, not the month's tests.
pub fn report(
    states: impl IntoIterator<Item = impl Borrow<PathwayState>>,
    period: Period,
    allows: &dyn Fn(&str) -> bool,
    config: &RulesConfig,
) -> FitReport {
    let mut count = FitCount::new(period);
    for state in states {
        count.add(state.borrow(), config);
    }
    count.report(allows, config)
}

/// The FIT report of the referrals received in a month, counted a state at
/// a time: states counted apart (a past view counts them on every core,
/// where they are moved) and merged give the report of them all.
#[derive(Debug, Clone, PartialEq)]
pub struct FitCount {
    period: Period,
    cells: BTreeMap<(Period, OdsCode), FitFigures>,
}

impl FitCount {
    pub fn new(period: Period) -> FitCount {
        FitCount {
            period,
            cells: BTreeMap::new(),
        }
    }

    /// The counts of the cells given (those of other months are left
    /// out): a view that starts from cells kept elsewhere.
    pub fn from_cells(
        period: Period,
        cells: impl IntoIterator<Item = ((Period, OdsCode), FitFigures)>,
    ) -> FitCount {
        let cells = cells
            .into_iter()
            .filter(|((month, _), _)| *month == period)
            .collect();
        FitCount { period, cells }
    }

    /// Counts a pathway, if it is a lower GI urgent referral received in
    /// the month.
    pub fn add(&mut self, state: &PathwayState, config: &RulesConfig) {
        self.add_signed(state, config, 1);
    }

    /// Takes a pathway away again (from cells it was counted in).
    pub fn take_away(&mut self, state: &PathwayState, config: &RulesConfig) {
        self.add_signed(state, config, -1);
    }

    fn add_signed(&mut self, state: &PathwayState, config: &RulesConfig, sign: i64) {
        if !self.period.contains(state.referred_on) {
            return;
        }
        if let Some((key, figures)) = contribution(state, config) {
            self.cells
                .entry(key)
                .or_insert_with(FitFigures::empty)
                .combine(&figures, sign);
        }
    }

    /// Adds the states `other` counted.
    pub fn merge(&mut self, other: FitCount) {
        for (key, figures) in other.cells {
            self.cells
                .entry(key)
                .or_insert_with(FitFigures::empty)
                .combine(&figures, 1);
        }
    }

    /// The report of the states counted, of the trusts `allows` admits.
    pub fn report(&self, allows: &dyn Fn(&str) -> bool, config: &RulesConfig) -> FitReport {
        report_from_cells(&self.cells, self.period, allows, config)
    }
}

/// What a pathway adds to the FIT report of its referral month, under its
/// trust at referral (`None`: not a lower GI urgent referral).
pub fn contribution(
    state: &PathwayState,
    config: &RulesConfig,
) -> Option<((Period, OdsCode), FitFigures)> {
    if !is_lower_gi_urgent(state) {
        return None;
    }
    let mut figures = FitFigures::empty();
    figures.add(state, config);
    Some((
        (Period::of(state.referred_on), state.referring_trust),
        figures,
    ))
}

/// The FIT report of `period` from its cells (referral month × trust at
/// referral; cells of other months, or counting no referral, are ignored).
pub fn report_from_cells<'a>(
    cells: impl IntoIterator<Item = (&'a (Period, OdsCode), &'a FitFigures)>,
    period: Period,
    allows: &dyn Fn(&str) -> bool,
    config: &RulesConfig,
) -> FitReport {
    let targets = FitTargets {
        with_fit_percent: config.fit.target_with_fit_percent,
        colonoscopies_without_fit_percent: config.fit.target_colonoscopies_without_fit_percent,
    };
    let mut overall = FitFigures::empty();
    let mut by_trust: BTreeMap<String, FitFigures> = BTreeMap::new();
    for ((month, trust), figures) in cells {
        if *month != period || figures.referrals == 0 || !allows(trust.as_str()) {
            continue;
        }
        overall.combine(figures, 1);
        by_trust
            .entry(trust.as_str().to_string())
            .or_insert_with(FitFigures::empty)
            .combine(figures, 1);
    }
    overall.finish(&targets);
    let by_trust = by_trust
        .into_iter()
        .map(|(trust, mut figures)| {
            figures.finish(&targets);
            TrustFit { trust, figures }
        })
        .collect();
    FitReport {
        period,
        days_before_referral: config.fit.days_before_referral,
        indicator_days: config.fit.indicator_days,
        targets,
        overall,
        by_trust,
    }
}
