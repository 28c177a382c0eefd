//! Aggregate views (SPEC 4.4): performance against the standards, BPTP
//! milestone compliance and the weekly PTL return (the monthly CWT record
//! is `cwt`'s). Each is a pure function of pathway states evaluated as of one
//! date; the caller chooses which pathways the reader may see.

use std::borrow::Borrow;
use std::collections::BTreeMap;

use chrono::{Datelike, Days, NaiveDate};
use serde::Serialize;

use crate::codes::*;
use crate::config::RulesConfig;
use crate::d31::{self, D31Split};
use crate::first_seen::SeenMedium;
use crate::pathway::{Clock, PathwayState};
use crate::ptl::WaitBand;
use crate::tally;

/// A calendar month, `YYYY-MM` on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Period {
    pub year: i32,
    pub month: u32,
}

impl Period {
    pub fn parse(text: &str) -> Option<Period> {
        let (year, month) = text.split_once('-')?;
        if year.len() != 4 || month.len() != 2 {
            return None;
        }
        let period = Period {
            year: year.parse().ok()?,
            month: month.parse().ok()?,
        };
        NaiveDate::from_ymd_opt(period.year, period.month, 1)?;
        Some(period)
    }

    pub fn of(date: NaiveDate) -> Period {
        Period {
            year: date.year(),
            month: date.month(),
        }
    }

    /// The first day of the month.
    pub fn first_day(self) -> NaiveDate {
        NaiveDate::from_ymd_opt(self.year, self.month, 1).expect("a parsed or derived month")
    }

    /// The last day of the month.
    pub fn last_day(self) -> NaiveDate {
        let (year, month) = if self.month == 12 {
            (self.year + 1, 1)
        } else {
            (self.year, self.month + 1)
        };
        NaiveDate::from_ymd_opt(year, month, 1).expect("a valid month") - Days::new(1)
    }

    pub fn contains(self, date: NaiveDate) -> bool {
        Period::of(date) == self
    }

    /// The month as a number: consecutive months, consecutive numbers
    /// (months since January of year 0; wide enough for any year).
    pub fn number(self) -> i64 {
        i64::from(self.year) * 12 + i64::from(self.month) - 1
    }

    /// The month numbered `n` ([`Period::number`]).
    pub fn from_number(n: i32) -> Period {
        Period {
            year: n.div_euclid(12),
            month: n.rem_euclid(12) as u32 + 1,
        }
    }
}

impl std::fmt::Display for Period {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

impl Serialize for Period {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

pub(crate) fn percent(part: f64, whole: f64) -> Option<f64> {
    (whole > 0.0).then(|| (part / whole * 1000.0).round() / 10.0)
}

/// Clocks stopped in a period: how many, how many within target.
///
/// Counts are numbers, not integers: after a transfer the 62-day outcome is
/// shared between trusts (SPEC 2.4), so a trust may be credited half a patient.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Performance {
    pub total: f64,
    pub within_target: f64,
    pub breached: f64,
    pub percent: Option<f64>,
}

impl Performance {
    pub(crate) fn add(&mut self, share: f64, breached: bool) {
        self.total += share;
        if breached {
            self.breached += share;
        } else {
            self.within_target += share;
        }
        self.percent = percent(self.within_target, self.total);
    }
}

/// One trust's line of a standards view.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TrustPerformance {
    pub trust: String,
    #[serde(flatten)]
    pub performance: Performance,
    /// FDS only: clocks excluded from the standard in the period (SPEC 2.2).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub excluded: Option<u64>,
    /// FDS only: the same by the exclusion's reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub excluded_by_reason: Option<ExclusionCounts>,
}

/// FDS clocks excluded, by the reason given (SPEC 2.2: exclusions are
/// counted and shown by trust so they can be audited). Keys are the
/// `fds_excluded` reasons' codes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ExclusionCounts {
    pub patient_choice: u64,
    pub clinical_reason: u64,
    pub other: u64,
}

impl ExclusionCounts {
    pub fn add(&mut self, reason: ExclusionReason, count: u64) {
        *match reason {
            ExclusionReason::PatientChoice => &mut self.patient_choice,
            ExclusionReason::ClinicalReason => &mut self.clinical_reason,
            ExclusionReason::Other => &mut self.other,
        } += count;
    }

    pub fn total(&self) -> u64 {
        self.patient_choice + self.clinical_reason + self.other
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SitePerformance {
    pub tumour_site: TumourSite,
    #[serde(flatten)]
    pub performance: Performance,
}

/// FDS performance by what the patient was told.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FdsOutcomes {
    /// Told they have cancer, or stopped by a decision to treat or treatment.
    pub diagnosed: Performance,
    pub ruled_out: Performance,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Thresholds {
    pub standard: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operational: Option<f64>,
}

/// Performance against one standard for clocks stopped in a period (SPEC 4.4).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StandardsReport {
    pub standard: ClockKind,
    pub period: Period,
    pub target_days: i64,
    pub thresholds: Thresholds,
    #[serde(flatten)]
    pub overall: Performance,
    pub by_trust: Vec<TrustPerformance>,
    pub by_tumour_site: Vec<SitePerformance>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by_outcome: Option<FdsOutcomes>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub excluded: Option<u64>,
    /// FDS only: the excluded clocks by the exclusion's reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub excluded_by_reason: Option<ExclusionCounts>,
    /// 31-day only: the split by treatment and modality group (SPEC 4.4).
    #[serde(flatten)]
    pub d31: Option<D31Split>,
}

fn clock_of(state: &PathwayState, kind: ClockKind) -> &Clock {
    match kind {
        ClockKind::Fds => &state.clocks.fds,
        ClockKind::D31 => &state.clocks.d31,
        ClockKind::D62 => &state.clocks.d62,
    }
}

/// Whether a pathway's `standard` clock counts towards `period`'s
/// performance: stopped (met or breached) or excluded in it.
pub fn counts_in(state: &PathwayState, standard: ClockKind, period: Period) -> bool {
    let clock = clock_of(state, standard);
    match clock.status {
        ClockStatus::Excluded => state.fds_excluded_on().is_some_and(|d| period.contains(d)),
        ClockStatus::Met | ClockStatus::Breached => clock.stop.is_some_and(|d| period.contains(d)),
        _ => false,
    }
}

/// Whether a pathway counts towards `standard`'s performance in `period`:
/// [`counts_in`] for the FDS and 62-day clocks; for the combined 31-day
/// standard, any treatment period treated in the period (SPEC 4.4).
pub fn counts_in_standard(state: &PathwayState, standard: ClockKind, period: Period) -> bool {
    match standard {
        ClockKind::D31 => d31::counts_in(state, period),
        _ => counts_in(state, standard, period),
    }
}

/// Performance against `standard` of the clocks stopped (met or breached) in
/// `period`; for `d31`, of every treatment period treated in it, under the
/// trust at the treatment (SPEC 2.12, 4.4). `trust_visible` says which
/// trusts' shares count.
pub fn standards(
    states: impl IntoIterator<Item = impl Borrow<PathwayState>>,
    standard: ClockKind,
    period: Period,
    trust_visible: &dyn Fn(&str) -> bool,
    config: &RulesConfig,
) -> StandardsReport {
    let mut count = tally::StandardsCount::new(standard, period);
    for state in states {
        count.add(state.borrow());
    }
    count.report(trust_visible, config)
}

/// Counts of one milestone's statuses.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct MilestoneCounts {
    pub name: String,
    pub due_day: i64,
    pub met: u64,
    pub missed: u64,
    pub overdue: u64,
    pub pending: u64,
    pub not_applicable: u64,
    /// Met as a share of the decided ones (met, missed, overdue).
    pub percent_met: Option<f64>,
}

/// Pathways meeting every milestone (SPEC 2.9) among those whose milestones
/// are all decided (none pending).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct MeetingAll {
    pub pathways: u64,
    pub decided: u64,
    pub meeting_all: u64,
    pub percent: Option<f64>,
}

impl MeetingAll {
    /// Counts `pathways` with milestones, `decided` of them with none
    /// pending, `meeting_all` of those meeting every milestone.
    pub(crate) fn add_counts(&mut self, pathways: i64, decided: i64, meeting_all: i64) {
        self.pathways = (self.pathways as i64 + pathways) as u64;
        self.decided = (self.decided as i64 + decided) as u64;
        self.meeting_all = (self.meeting_all as i64 + meeting_all) as u64;
        self.percent = percent(self.meeting_all as f64, self.decided as f64);
    }
}

impl MilestoneCounts {
    /// Counts `n` milestones of `status`.
    pub(crate) fn add(&mut self, status: MilestoneStatus, n: u64) {
        match status {
            MilestoneStatus::Met => self.met += n,
            MilestoneStatus::Missed => self.missed += n,
            MilestoneStatus::Overdue => self.overdue += n,
            MilestoneStatus::Pending => self.pending += n,
            MilestoneStatus::NotApplicable => self.not_applicable += n,
        }
        self.percent_met = percent(
            self.met as f64,
            (self.met + self.missed + self.overdue) as f64,
        );
    }
}

/// Every milestone met or not applicable, and at least one met (SPEC 2.9).
pub fn meets_all(state: &PathwayState) -> bool {
    let ms = &state.milestones;
    ms.iter().any(|m| m.status == MilestoneStatus::Met)
        && ms.iter().all(|m| {
            matches!(
                m.status,
                MilestoneStatus::Met | MilestoneStatus::NotApplicable
            )
        })
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SiteMilestones {
    pub tumour_site: TumourSite,
    #[serde(flatten)]
    pub meeting_all: MeetingAll,
    pub milestones: Vec<MilestoneCounts>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrustMilestones {
    pub trust: String,
    #[serde(flatten)]
    pub meeting_all: MeetingAll,
}

/// The lower GI FIT indicator (CAN-04) and band mix (SPEC 2.6).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FitIndicator {
    pub lower_gi_urgent_referrals: u64,
    pub with_fit_before_referral: u64,
    pub indicator_days: i64,
    pub percent: Option<f64>,
    pub bands: BTreeMap<&'static str, u64>,
}

/// BPTP milestone compliance (SPEC 4.4).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MilestonesReport {
    pub period: Option<Period>,
    #[serde(flatten)]
    pub overall: MeetingAll,
    pub by_tumour_site: Vec<SiteMilestones>,
    pub by_trust: Vec<TrustMilestones>,
    pub fit: FitIndicator,
}

/// Milestone compliance of the pathways referred in `period` (all when none)
/// that have milestones (an FDS clock).
pub fn milestones(
    states: impl IntoIterator<Item = impl Borrow<PathwayState>>,
    period: Option<Period>,
    config: &RulesConfig,
) -> MilestonesReport {
    let mut count = tally::MilestonesCount::new(period);
    for state in states {
        count.add(state.borrow(), config);
    }
    count.report(config)
}

/// Adds `from`'s counts to `into`'s, key by key.
fn add_counts(into: &mut BTreeMap<&'static str, u64>, from: BTreeMap<&'static str, u64>) {
    for (key, n) in from {
        *into.entry(key).or_insert(0) += n;
    }
}

/// [`add_counts`] one level down.
fn add_nested_counts(
    into: &mut BTreeMap<&'static str, BTreeMap<&'static str, u64>>,
    from: BTreeMap<&'static str, BTreeMap<&'static str, u64>>,
) {
    for (key, counts) in from {
        add_counts(into.entry(key).or_default(), counts);
    }
}

/// Open 62-day pathways by wait band.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct BandCounts {
    pub total: u64,
    pub by_band: BTreeMap<&'static str, u64>,
    pub by_tumour_site: BTreeMap<&'static str, BTreeMap<&'static str, u64>>,
}

impl BandCounts {
    fn empty() -> BandCounts {
        BandCounts {
            by_band: WaitBand::ALL.iter().map(|b| (b.as_str(), 0)).collect(),
            ..BandCounts::default()
        }
    }

    fn merge(&mut self, other: BandCounts) {
        self.total += other.total;
        add_counts(&mut self.by_band, other.by_band);
        add_nested_counts(&mut self.by_tumour_site, other.by_tumour_site);
    }

    fn add(&mut self, site: TumourSite, band: WaitBand, n: u64) {
        self.total += n;
        *self.by_band.entry(band.as_str()).or_insert(0) += n;
        *self
            .by_tumour_site
            .entry(site.as_str())
            .or_default()
            .entry(band.as_str())
            .or_insert(0) += n;
    }
}

/// The weekly national PTL return (SPEC 2.10, 4.4).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CanptlReturn {
    #[serde(with = "crate::date")]
    pub week_ending: NaiveDate,
    #[serde(with = "crate::date")]
    pub week_starting: NaiveDate,
    pub with_decision_to_treat: BandCounts,
    pub without_decision_to_treat: BandCounts,
    /// Over 62 days (the backlog), and of those over 104.
    pub backlog_over_62: u64,
    pub over_104: u64,
    /// FDS clocks that passed day 28 during the week, by tumour site.
    pub passed_28_days: u64,
    pub passed_28_days_by_tumour_site: BTreeMap<&'static str, u64>,
    /// Referrals received during the week on the three cancer routes, by
    /// route, and consultant upgrades: routine referrals (route `other`)
    /// and recurrences are not part of the return (SPEC 4.4).
    pub referrals_by_route: BTreeMap<&'static str, u64>,
    pub upgrades: u64,
    /// Patients first seen during the week on the three cancer routes
    /// (SPEC 2.12), by how they were seen, in all and by route.
    pub first_seen: FirstSeenCounts,
}

/// First-seen patients by medium: face to face, virtual, not recorded.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FirstSeenCounts {
    pub total: u64,
    pub by_medium: BTreeMap<&'static str, u64>,
    pub by_route: BTreeMap<&'static str, BTreeMap<&'static str, u64>>,
}

impl FirstSeenCounts {
    fn empty() -> FirstSeenCounts {
        let media = || -> BTreeMap<&'static str, u64> {
            SeenMedium::ALL.iter().map(|m| (m.as_str(), 0)).collect()
        };
        FirstSeenCounts {
            total: 0,
            by_medium: media(),
            by_route: Route::ALL
                .iter()
                .filter(|r| r.is_cancer_route())
                .map(|r| (r.as_str(), media()))
                .collect(),
        }
    }

    fn merge(&mut self, other: FirstSeenCounts) {
        self.total += other.total;
        add_counts(&mut self.by_medium, other.by_medium);
        add_nested_counts(&mut self.by_route, other.by_route);
    }

    fn add(&mut self, route: Route, medium: SeenMedium, n: u64) {
        self.total += n;
        *self.by_medium.entry(medium.as_str()).or_insert(0) += n;
        *self
            .by_route
            .entry(route.as_str())
            .or_default()
            .entry(medium.as_str())
            .or_insert(0) += n;
    }
}

/// The weekly return for the week ending on `week_ending` (a Sunday); the
/// states must be evaluated as of that Sunday.
pub fn canptl(
    states: impl IntoIterator<Item = impl Borrow<PathwayState>>,
    week_ending: NaiveDate,
) -> CanptlReturn {
    let mut report = CanptlReturn::new(week_ending);
    for state in states {
        report.add(state.borrow());
    }
    report
}

impl CanptlReturn {
    /// The return of the week ending on `week_ending` with nothing counted.
    pub fn new(week_ending: NaiveDate) -> CanptlReturn {
        CanptlReturn {
            week_ending,
            week_starting: week_ending - Days::new(6),
            with_decision_to_treat: BandCounts::empty(),
            without_decision_to_treat: BandCounts::empty(),
            backlog_over_62: 0,
            over_104: 0,
            passed_28_days: 0,
            passed_28_days_by_tumour_site: BTreeMap::new(),
            referrals_by_route: Route::ALL
                .iter()
                .filter(|r| r.is_cancer_route())
                .map(|r| (r.as_str(), 0))
                .collect(),
            upgrades: 0,
            first_seen: FirstSeenCounts::empty(),
        }
    }

    /// Adds the counts of another return of the same week (states counted
    /// apart, on several threads): the return of all their states.
    pub fn merge(&mut self, other: CanptlReturn) {
        self.with_decision_to_treat
            .merge(other.with_decision_to_treat);
        self.without_decision_to_treat
            .merge(other.without_decision_to_treat);
        self.backlog_over_62 += other.backlog_over_62;
        self.over_104 += other.over_104;
        self.passed_28_days += other.passed_28_days;
        add_counts(
            &mut self.passed_28_days_by_tumour_site,
            other.passed_28_days_by_tumour_site,
        );
        add_counts(&mut self.referrals_by_route, other.referrals_by_route);
        self.upgrades += other.upgrades;
        self.first_seen.merge(other.first_seen);
    }

    /// Counts one state, evaluated as of the week's Sunday.
    pub fn add(&mut self, state: &PathwayState) {
        CanptlReturn::cells(state, self.week_ending, |cell| self.add_cell(cell, 1));
    }

    /// The cells of the return of the week ending on `week_ending` one
    /// state, evaluated as of that day, counts in (each once): what
    /// [`CanptlReturn::add`] adds, kept apart so that the return can be
    /// summed from counts of cells (today's aggregates, issue 22).
    pub fn cells(state: &PathwayState, week_ending: NaiveDate, mut f: impl FnMut(CanptlCell)) {
        let week_starting = week_ending - Days::new(6);
        let in_week = |d: NaiveDate| d >= week_starting && d <= week_ending;
        let site = state.tumour_site;
        let d62 = &state.clocks.d62;
        if d62.status.is_running() {
            f(CanptlCell::Waiting {
                decided: state.clocks.d31.start.is_some(),
                site,
                band: WaitBand::of_days(d62.days),
            });
        }
        let fds = &state.clocks.fds;
        let fds_breached = matches!(
            fds.status,
            ClockStatus::OpenBreached | ClockStatus::Breached
        );
        if let (true, Some(target)) = (fds_breached, fds.target_date) {
            if in_week(target + Days::new(1)) {
                f(CanptlCell::Passed28Days(site));
            }
        }
        if let Some(seen) = &state.first_seen {
            if state.route.is_cancer_route() && in_week(seen.date) {
                f(CanptlCell::FirstSeen(state.route, seen.medium));
            }
        }
        if state.route.is_cancer_route() && in_week(state.referred_on) {
            f(CanptlCell::Referral(state.route));
        }
        if state.route == Route::Other && d62.start.is_some_and(in_week) {
            f(CanptlCell::Upgrade);
        }
    }

    /// Counts `n` pathways in `cell`.
    pub fn add_cell(&mut self, cell: CanptlCell, n: u64) {
        match cell {
            CanptlCell::Waiting {
                decided,
                site,
                band,
            } => {
                let counts = match decided {
                    true => &mut self.with_decision_to_treat,
                    false => &mut self.without_decision_to_treat,
                };
                counts.add(site, band, n);
                if band.is_backlog() {
                    self.backlog_over_62 += n;
                }
                if band == WaitBand::From105 {
                    self.over_104 += n;
                }
            }
            CanptlCell::Passed28Days(site) => {
                self.passed_28_days += n;
                *self
                    .passed_28_days_by_tumour_site
                    .entry(site.as_str())
                    .or_insert(0) += n;
            }
            CanptlCell::FirstSeen(route, medium) => self.first_seen.add(route, medium, n),
            CanptlCell::Referral(route) => {
                *self.referrals_by_route.entry(route.as_str()).or_insert(0) += n;
            }
            CanptlCell::Upgrade => self.upgrades += n,
        }
    }
}

/// A cell of the weekly return (SPEC 2.10, 4.4) a pathway counts in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CanptlCell {
    /// On the 62-day waiting list at the week's end, with or without a
    /// decision to treat, in its wait band.
    Waiting {
        decided: bool,
        site: TumourSite,
        band: WaitBand,
    },
    /// Its FDS clock passed day 28 during the week.
    Passed28Days(TumourSite),
    /// First seen during the week, on a cancer route.
    FirstSeen(Route, SeenMedium),
    /// Referred during the week, on a cancer route.
    Referral(Route),
    /// Upgraded by a consultant during the week.
    Upgrade,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn month_numbers_are_consecutive_and_read_back() {
        let mut month = Period::parse("1999-11").unwrap();
        for _ in 0..30 {
            let next = Period::of(month.last_day() + Days::new(1));
            assert_eq!(next.number(), month.number() + 1, "{month}");
            assert_eq!(Period::from_number(month.number() as i32), month);
            month = next;
        }
        assert_eq!(Period::parse("0000-01").unwrap().number(), 0);
        assert_eq!(
            Period::from_number(-1),
            Period {
                year: -1,
                month: 12
            }
        );
        for n in [i32::MIN, i32::MAX] {
            assert_eq!(Period::from_number(n).number(), i64::from(n));
        }
    }

    #[test]
    fn periods_parse_strictly() {
        assert_eq!(
            Period::parse("2025-03"),
            Some(Period {
                year: 2025,
                month: 3
            })
        );
        for bad in ["2025-3", "2025-13", "25-03", "2025-03-01", "", "2025-00"] {
            assert_eq!(Period::parse(bad), None, "{bad}");
        }
        let feb = Period::parse("2024-02").unwrap();
        assert_eq!(
            feb.last_day(),
            NaiveDate::from_ymd_opt(2024, 2, 29).unwrap()
        );
        let dec = Period::parse("2025-12").unwrap();
        assert_eq!(
            dec.last_day(),
            NaiveDate::from_ymd_opt(2025, 12, 31).unwrap()
        );
        assert_eq!(dec.to_string(), "2025-12");
    }
}
