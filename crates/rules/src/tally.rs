//! The standards and milestone views as sums of per-pathway contributions
//! (issue 22). A pathway contributes to a few cells (standard × month ×
//! trust × tumour site × outcome for the standards; referral month × trust
//! × tumour site for the milestones); a view is the sum of the cells it
//! shows. `report::standards` and `report::milestones` are this module's
//! contributions summed over the states given, so the application can keep
//! the same cells current as pathways change (subtract the old state's
//! contributions, add the new one's) and answer from them alone.
//!
//! Shares are 0, ½ or 1 (the national breach allocation), so every sum is
//! exact in `f64`, whatever the order of additions and subtractions.

use std::collections::BTreeMap;

use chrono::NaiveDate;

use crate::codes::*;
use crate::config::RulesConfig;
use crate::d31::{self, D31Split, ModalityGroup, TreatmentGroup};
use crate::ids::OdsCode;
use crate::pathway::{Clock, PathwayState};
use crate::period::TreatmentPeriod;
use crate::report::{
    ExclusionCounts, FdsOutcomes, FitIndicator, MeetingAll, MilestoneCounts, MilestonesReport,
    Performance, Period, SiteMilestones, SitePerformance, StandardsReport, Thresholds,
    TrustMilestones, TrustPerformance,
};

/// What a standards cell counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StandardsCell {
    /// An FDS clock excluded in the month (SPEC 2.2), under the current
    /// trust, by the exclusion's reason (they are audited).
    Excluded { reason: ExclusionReason },
    /// A stopped FDS or 62-day clock (a trust's share of it); `ruled_out`
    /// only for the FDS (its outcome split).
    Stopped { breached: bool, ruled_out: bool },
    /// A 31-day treatment period treated in the month, under the trust at
    /// the treatment.
    Treated {
        breached: bool,
        group: TreatmentGroup,
        modality: ModalityGroup,
    },
}

/// Where a contribution to a standards view is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StandardsKey {
    pub standard: ClockKind,
    pub month: Period,
    pub trust: OdsCode,
    pub site: TumourSite,
    pub cell: StandardsCell,
}

/// A standards cell: how many contributions, and the sum of their shares.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Tally {
    pub count: i64,
    pub share: f64,
}

impl Tally {
    /// Adds (`sign` 1) or takes away (`sign` -1) `share` once.
    pub fn add(&mut self, share: f64, sign: i64) {
        self.count += sign;
        self.share += share * sign as f64;
    }

    /// Adds every contribution `other` counted.
    pub fn merge(&mut self, other: &Tally) {
        self.count += other.count;
        self.share += other.share;
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

fn clock_of(state: &PathwayState, kind: ClockKind) -> &Clock {
    match kind {
        ClockKind::Fds => &state.clocks.fds,
        ClockKind::D31 => &state.clocks.d31,
        ClockKind::D62 => &state.clocks.d62,
    }
}

/// One contribution of a pathway to the standards views: where it is
/// counted, its share, and the clock counted (the FDS or 62-day clock, or a
/// treatment period's 31-day clock), so a figure can list what it counts.
#[derive(Debug, Clone, Copy)]
pub struct Contribution<'s> {
    pub key: StandardsKey,
    pub share: f64,
    pub clock: &'s Clock,
    /// The treatment period counted, for the 31-day standard.
    pub treatment_period: Option<&'s TreatmentPeriod>,
}

/// Every contribution of a pathway to the standards views: each standard,
/// each month it counts in (a stop, an exclusion, a treatment), each
/// trust's share.
pub fn standards_contributions(state: &PathwayState, out: &mut dyn FnMut(StandardsKey, f64)) {
    each_contribution(state, &mut |c| out(c.key, c.share));
}

/// [`standards_contributions`] with the clock each counts: what the
/// figures add up and what their lists show come from here alone.
pub fn each_contribution<'s>(state: &'s PathwayState, out: &mut dyn FnMut(Contribution<'s>)) {
    let site = state.tumour_site;
    // The 31-day standard: every month a treatment period was treated in.
    let mut months: Vec<Period> = state
        .treatment_periods
        .iter()
        .filter_map(|p| p.clock.stop.map(Period::of))
        .collect();
    months.sort_unstable();
    months.dedup();
    for month in months {
        for counted in d31::counted_periods(state, month) {
            let cell = StandardsCell::Treated {
                breached: counted.breached,
                group: counted.group,
                modality: counted.modality,
            };
            let key = StandardsKey {
                standard: ClockKind::D31,
                month,
                trust: counted.trust,
                site,
                cell,
            };
            out(Contribution {
                key,
                share: 1.0,
                clock: &counted.period.clock,
                treatment_period: Some(counted.period),
            });
        }
    }
    for standard in [ClockKind::Fds, ClockKind::D62] {
        let clock = clock_of(state, standard);
        let date: Option<NaiveDate> = match clock.status {
            ClockStatus::Excluded => state.fds_excluded_on(),
            ClockStatus::Met | ClockStatus::Breached => clock.stop,
            _ => None,
        };
        let Some(month) = date.map(Period::of) else {
            continue;
        };
        if !crate::report::counts_in(state, standard, month) {
            continue;
        }
        let mut counted = |trust: OdsCode, cell: StandardsCell, share: f64| {
            out(Contribution {
                key: StandardsKey {
                    standard,
                    month,
                    trust,
                    site,
                    cell,
                },
                share,
                clock,
                treatment_period: None,
            })
        };
        if let (ClockStatus::Excluded, Some(exclusion)) = (clock.status, state.fds_exclusion) {
            let cell = StandardsCell::Excluded {
                reason: exclusion.reason,
            };
            counted(state.trust, cell, 0.0);
            continue;
        }
        let cell = StandardsCell::Stopped {
            breached: clock.status == ClockStatus::Breached,
            ruled_out: standard == ClockKind::Fds
                && clock.stop_reason == Some(StopReason::CancerRuledOut),
        };
        match &clock.allocation {
            Some(allocation) => {
                for a in allocation {
                    counted(a.trust, cell, a.share);
                }
            }
            None => counted(state.trust, cell, 1.0),
        }
    }
}

/// The standards report of `standard` in `period` from its cells (cells
/// of other standards or months are ignored). `trust_visible` says which
/// trusts' shares count.
pub fn standards_from_cells<'a>(
    cells: impl IntoIterator<Item = (&'a StandardsKey, &'a Tally)>,
    standard: ClockKind,
    period: Period,
    trust_visible: &dyn Fn(&str) -> bool,
    config: &RulesConfig,
) -> StandardsReport {
    let mut overall = Performance::default();
    let mut by_trust: BTreeMap<String, TrustPerformance> = BTreeMap::new();
    let mut by_site: BTreeMap<TumourSite, Performance> = BTreeMap::new();
    let mut outcomes = FdsOutcomes::default();
    let mut excluded = ExclusionCounts::default();
    let mut split = D31Split::default();
    for (key, tally) in cells {
        if key.standard != standard || key.month != period || tally.is_empty() {
            continue;
        }
        let trust = key.trust.as_str();
        if !trust_visible(trust) {
            continue;
        }
        let line = by_trust.entry(trust.to_string()).or_default();
        match key.cell {
            StandardsCell::Excluded { reason } => {
                let count = tally.count as u64;
                excluded.add(reason, count);
                *line.excluded.get_or_insert(0) += count;
                line.excluded_by_reason
                    .get_or_insert_with(ExclusionCounts::default)
                    .add(reason, count);
            }
            StandardsCell::Stopped {
                breached,
                ruled_out,
            } => {
                overall.add(tally.share, breached);
                by_site
                    .entry(key.site)
                    .or_default()
                    .add(tally.share, breached);
                line.performance.add(tally.share, breached);
                if standard == ClockKind::Fds {
                    if ruled_out {
                        outcomes.ruled_out.add(tally.share, breached);
                    } else {
                        outcomes.diagnosed.add(tally.share, breached);
                    }
                }
            }
            StandardsCell::Treated {
                breached,
                group,
                modality,
            } => {
                overall.add(tally.share, breached);
                by_site
                    .entry(key.site)
                    .or_default()
                    .add(tally.share, breached);
                line.performance.add(tally.share, breached);
                split.add_share(group, modality, tally.share, breached);
            }
        }
    }
    let is_fds = standard == ClockKind::Fds;
    let thresholds = &config.thresholds;
    let (target_days, thresholds) = match standard {
        ClockKind::Fds => (
            config.targets.fds_days,
            Thresholds {
                standard: thresholds.fds_standard,
                operational: Some(thresholds.fds_operational),
            },
        ),
        ClockKind::D31 => (
            config.targets.d31_days,
            Thresholds {
                standard: thresholds.d31_standard,
                operational: None,
            },
        ),
        ClockKind::D62 => (
            config.targets.d62_days,
            Thresholds {
                standard: thresholds.d62_standard,
                operational: Some(thresholds.d62_operational),
            },
        ),
    };
    StandardsReport {
        standard,
        period,
        target_days,
        thresholds,
        overall,
        by_trust: by_trust
            .into_iter()
            .map(|(trust, mut line)| {
                line.trust = trust;
                if is_fds {
                    line.excluded.get_or_insert(0);
                    line.excluded_by_reason
                        .get_or_insert_with(ExclusionCounts::default);
                }
                line
            })
            .collect(),
        by_tumour_site: by_site
            .into_iter()
            .map(|(tumour_site, performance)| SitePerformance {
                tumour_site,
                performance,
            })
            .collect(),
        by_outcome: is_fds.then_some(outcomes),
        excluded: is_fds.then_some(excluded.total()),
        excluded_by_reason: is_fds.then_some(excluded),
        d31: (standard == ClockKind::D31).then_some(split),
    }
}

/// Where a pathway counts in the milestone view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MilestonesKey {
    pub referred: Period,
    pub trust: OdsCode,
    pub site: TumourSite,
}

/// A milestone cell: pathways with milestones (decided, meeting all), their
/// milestones by place and status, and the FIT indicator's counts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MilestonesTally {
    pub pathways: i64,
    pub decided: i64,
    pub meeting_all: i64,
    /// By milestone (its place in the template), by status (its index).
    pub statuses: Vec<[i64; MILESTONE_STATUSES]>,
    pub lower_gi_urgent: i64,
    pub with_fit_before_referral: i64,
    /// By FIT band (its index).
    pub fit_bands: [i64; FIT_BANDS],
}

/// How many milestone statuses and FIT bands there are.
pub const MILESTONE_STATUSES: usize = 5;
pub const FIT_BANDS: usize = 5;

impl MilestonesTally {
    /// Adds (`sign` 1) or takes away (`sign` -1) `other`.
    pub fn add(&mut self, other: &MilestonesTally, sign: i64) {
        self.pathways += sign * other.pathways;
        self.decided += sign * other.decided;
        self.meeting_all += sign * other.meeting_all;
        if self.statuses.len() < other.statuses.len() {
            self.statuses
                .resize(other.statuses.len(), [0; MILESTONE_STATUSES]);
        }
        for (mine, theirs) in self.statuses.iter_mut().zip(&other.statuses) {
            for (m, t) in mine.iter_mut().zip(theirs) {
                *m += sign * t;
            }
        }
        self.lower_gi_urgent += sign * other.lower_gi_urgent;
        self.with_fit_before_referral += sign * other.with_fit_before_referral;
        for (m, t) in self.fit_bands.iter_mut().zip(&other.fit_bands) {
            *m += sign * t;
        }
    }

    /// Whether it counts nothing at all.
    pub fn is_empty(&self) -> bool {
        self.pathways == 0
            && self.lower_gi_urgent == 0
            && self.fit_bands.iter().all(|n| *n == 0)
            && self.statuses.iter().flatten().all(|n| *n == 0)
    }
}

/// A pathway's contribution to the milestone view (`None`: it counts
/// nowhere).
pub fn milestones_contribution(
    state: &PathwayState,
    config: &RulesConfig,
) -> Option<(MilestonesKey, MilestonesTally)> {
    let mut tally = MilestonesTally::default();
    if state.tumour_site == TumourSite::LowerGi && state.route == Route::UrgentSuspectedCancer {
        tally.lower_gi_urgent = 1;
        tally.fit_bands[state.fit_band.index() as usize] = 1;
        // The FIT report's definition (decision 123), so both pages agree.
        if crate::fit::has_result_within(
            &state.lower_gi,
            state.referred_on,
            config.fit.indicator_days,
        ) {
            tally.with_fit_before_referral = 1;
        }
    }
    if !state.milestones.is_empty() {
        tally.pathways = 1;
        let decided = state
            .milestones
            .iter()
            .all(|m| m.status != MilestoneStatus::Pending);
        if decided {
            tally.decided = 1;
            if crate::report::meets_all(state) {
                tally.meeting_all = 1;
            }
        }
        tally.statuses = state
            .milestones
            .iter()
            .map(|m| {
                let mut counts = [0; MILESTONE_STATUSES];
                counts[m.status.index() as usize] = 1;
                counts
            })
            .collect();
    }
    if tally.is_empty() {
        return None;
    }
    let key = MilestonesKey {
        referred: Period::of(state.referred_on),
        trust: state.trust,
        site: state.tumour_site,
    };
    Some((key, tally))
}

/// The milestone report for pathways referred in `period` (every month
/// when `None`) from its cells.
pub fn milestones_from_cells<'a>(
    cells: impl IntoIterator<Item = (&'a MilestonesKey, &'a MilestonesTally)>,
    period: Option<Period>,
    config: &RulesConfig,
) -> MilestonesReport {
    let mut overall = MeetingAll::default();
    let mut by_site: BTreeMap<TumourSite, (MeetingAll, Vec<MilestoneCounts>)> = BTreeMap::new();
    let mut by_trust: BTreeMap<String, MeetingAll> = BTreeMap::new();
    let mut fit = FitIndicator {
        indicator_days: config.fit.indicator_days,
        bands: FitBand::ALL.iter().map(|b| (b.as_str(), 0)).collect(),
        ..FitIndicator::default()
    };
    for (key, tally) in cells {
        if period.is_some_and(|p| p != key.referred) {
            continue;
        }
        fit.lower_gi_urgent_referrals += tally.lower_gi_urgent as u64;
        fit.with_fit_before_referral += tally.with_fit_before_referral as u64;
        for (band, n) in FitBand::ALL.iter().zip(tally.fit_bands) {
            *fit.bands.entry(band.as_str()).or_insert(0) += n as u64;
        }
        if tally.pathways == 0 {
            continue;
        }
        overall.add_counts(tally.pathways, tally.decided, tally.meeting_all);
        by_trust
            .entry(key.trust.as_str().to_string())
            .or_default()
            .add_counts(tally.pathways, tally.decided, tally.meeting_all);
        let (site_all, counts) = by_site.entry(key.site).or_insert_with(|| {
            let template = config.template_for(key.site);
            let counts = template
                .milestone
                .iter()
                .map(|m| MilestoneCounts {
                    name: m.name.to_string(),
                    due_day: m.due_day,
                    ..MilestoneCounts::default()
                })
                .collect();
            (MeetingAll::default(), counts)
        });
        site_all.add_counts(tally.pathways, tally.decided, tally.meeting_all);
        for (statuses, count) in tally.statuses.iter().zip(counts.iter_mut()) {
            for (status, n) in MilestoneStatus::ALL.iter().zip(statuses) {
                count.add(*status, *n as u64);
            }
        }
    }
    fit.percent = crate::report::percent(
        fit.with_fit_before_referral as f64,
        fit.lower_gi_urgent_referrals as f64,
    );
    MilestonesReport {
        period,
        overall,
        by_tumour_site: by_site
            .into_iter()
            .map(|(tumour_site, (meeting_all, milestones))| SiteMilestones {
                tumour_site,
                meeting_all,
                milestones,
            })
            .collect(),
        by_trust: by_trust
            .into_iter()
            .map(|(trust, meeting_all)| TrustMilestones { trust, meeting_all })
            .collect(),
        fit,
    }
}

/// The standards report of `standard` in `period`, counted a state at a
/// time: states counted apart (a past view counts them on every core,
/// where they are moved) and merged give the report of them all, in any
/// order (every share is exact).
#[derive(Debug, Clone, PartialEq)]
pub struct StandardsCount {
    standard: ClockKind,
    period: Period,
    cells: BTreeMap<StandardsKey, Tally>,
}

impl StandardsCount {
    pub fn new(standard: ClockKind, period: Period) -> StandardsCount {
        StandardsCount {
            standard,
            period,
            cells: BTreeMap::new(),
        }
    }

    /// The counts of the cells given (those of other standards or months
    /// are left out): a view that starts from cells kept elsewhere.
    pub fn from_cells(
        standard: ClockKind,
        period: Period,
        cells: impl IntoIterator<Item = (StandardsKey, Tally)>,
    ) -> StandardsCount {
        let cells = cells
            .into_iter()
            .filter(|(key, _)| key.standard == standard && key.month == period)
            .collect();
        StandardsCount {
            standard,
            period,
            cells,
        }
    }

    /// Counts a pathway's contributions to the report.
    pub fn add(&mut self, state: &PathwayState) {
        self.add_signed(state, 1);
    }

    /// Takes a pathway's contributions away again (from cells it was
    /// counted in).
    pub fn take_away(&mut self, state: &PathwayState) {
        self.add_signed(state, -1);
    }

    fn add_signed(&mut self, state: &PathwayState, sign: i64) {
        let (standard, period) = (self.standard, self.period);
        standards_contributions(state, &mut |key, share| {
            if key.standard == standard && key.month == period {
                self.cells.entry(key).or_default().add(share, sign);
            }
        });
    }

    /// Adds the states `other` counted.
    pub fn merge(&mut self, other: StandardsCount) {
        for (key, tally) in other.cells {
            self.cells.entry(key).or_default().merge(&tally);
        }
    }

    /// Keeps only the cells `keep` wants (of a tumour site: a cell's site
    /// is its pathways').
    pub fn keep_only(&mut self, keep: impl Fn(&StandardsKey) -> bool) {
        self.cells.retain(|key, _| keep(key));
    }

    /// The report of the states counted, of the trusts `trust_visible` admits.
    pub fn report(
        &self,
        trust_visible: &dyn Fn(&str) -> bool,
        config: &RulesConfig,
    ) -> StandardsReport {
        standards_from_cells(
            &self.cells,
            self.standard,
            self.period,
            trust_visible,
            config,
        )
    }
}

/// The milestone report of the pathways referred in `period` (every month
/// when `None`), counted a state at a time, like [`StandardsCount`].
#[derive(Debug, Clone, PartialEq)]
pub struct MilestonesCount {
    period: Option<Period>,
    cells: BTreeMap<MilestonesKey, MilestonesTally>,
}

impl MilestonesCount {
    pub fn new(period: Option<Period>) -> MilestonesCount {
        MilestonesCount {
            period,
            cells: BTreeMap::new(),
        }
    }

    /// Counts a pathway, if it was referred in the period.
    pub fn add(&mut self, state: &PathwayState, config: &RulesConfig) {
        self.add_signed(state, config, 1);
    }

    /// Takes a pathway away again (from cells it was counted in).
    pub fn take_away(&mut self, state: &PathwayState, config: &RulesConfig) {
        self.add_signed(state, config, -1);
    }

    fn add_signed(&mut self, state: &PathwayState, config: &RulesConfig, sign: i64) {
        if self.period.is_some_and(|p| !p.contains(state.referred_on)) {
            return;
        }
        if let Some((key, tally)) = milestones_contribution(state, config) {
            self.cells.entry(key).or_default().add(&tally, sign);
        }
    }

    /// Adds the states `other` counted.
    pub fn merge(&mut self, other: MilestonesCount) {
        for (key, tally) in other.cells {
            self.cells.entry(key).or_default().add(&tally, 1);
        }
    }

    /// The report of the states counted.
    pub fn report(&self, config: &RulesConfig) -> MilestonesReport {
        milestones_from_cells(&self.cells, self.period, config)
    }
}
