//! The clocks behind a standards figure (decision 187): a cancer manager
//! who sees "FDS 71.4%, 40 breached" at a trust must be able to open the 40
//! patients. Each line here is one contribution of [`tally::each_contribution`],
//! the same contributions the figures add up, so a list and its figure
//! cannot disagree: the shares of the lines a filter keeps add up to the
//! figure the same filter picks out of the report.

use std::sync::Arc;

use chrono::NaiveDate;

use crate::codes::*;
use crate::d31::{ModalityGroup, TreatmentGroup};
use crate::ids::OdsCode;
use crate::pathway::{Allocation, PathwayState};
use crate::report::Period;
use crate::tally::{self, StandardsCell, StandardsKey};

code_enum!(
    /// How a counted clock stands against its standard.
    ClockOutcome { WithinTarget = "within_target", Breached = "breached", Excluded = "excluded" }
);

code_enum!(
    /// What a stopped FDS clock told the patient (the report's `by_outcome`).
    FdsOutcome { Diagnosed = "diagnosed", RuledOut = "ruled_out" }
);

/// One clock a standards figure counts: the pathway's, or one treatment
/// period's for the 31-day standard; for a transferred 62-day pathway, one
/// trust's share of it (SPEC 2.4).
#[derive(Debug, Clone, PartialEq)]
pub struct CountedClock {
    /// Where it is counted: the standard, the month, the trust it is
    /// counted under, the tumour site and the cell.
    pub key: StandardsKey,
    pub share: f64,
    /// The trust holding the pathway as of the view (not always the one
    /// it is counted under: a transfer, or the trust at a treatment).
    pub current_trust: OdsCode,
    /// Every trust's share of a transferred pathway's 62-day outcome
    /// (SPEC 2.4), so a line at a 0 share says who was charged.
    pub allocation: Option<Vec<Allocation>>,
    pub route: Route,
    pub referred_on: NaiveDate,
    pub start: Option<NaiveDate>,
    /// The day it stopped; for an excluded FDS clock, the day it was excluded.
    pub stop: Option<NaiveDate>,
    pub stop_reason: Option<StopReason>,
    pub adjustment_days: i64,
    pub days: i64,
    pub target_days: i64,
    /// The treatment period's modality, for the 31-day standard.
    pub modality: Option<Modality>,
    /// The subsequent treatment period's name, for the 31-day standard.
    pub plan_id: Option<Arc<str>>,
    /// What started the treatment period's clock (a decision to treat, or
    /// the earliest clinically appropriate date), for the 31-day standard.
    pub start_reason: Option<PeriodStartReason>,
}

impl CountedClock {
    pub fn trust(&self) -> OdsCode {
        self.key.trust
    }

    pub fn tumour_site(&self) -> TumourSite {
        self.key.site
    }

    /// The reason an excluded FDS clock was excluded for.
    pub fn exclusion_reason(&self) -> Option<ExclusionReason> {
        match self.key.cell {
            StandardsCell::Excluded { reason } => Some(reason),
            _ => None,
        }
    }

    pub fn outcome(&self) -> ClockOutcome {
        match self.key.cell {
            StandardsCell::Excluded { .. } => ClockOutcome::Excluded,
            StandardsCell::Stopped { breached, .. } | StandardsCell::Treated { breached, .. } => {
                if breached {
                    ClockOutcome::Breached
                } else {
                    ClockOutcome::WithinTarget
                }
            }
        }
    }

    /// The FDS outcome split's half, for a stopped FDS clock.
    pub fn fds_outcome(&self) -> Option<FdsOutcome> {
        match self.key.cell {
            StandardsCell::Stopped { ruled_out, .. } if self.key.standard == ClockKind::Fds => {
                Some(if ruled_out {
                    FdsOutcome::RuledOut
                } else {
                    FdsOutcome::Diagnosed
                })
            }
            _ => None,
        }
    }

    /// The 31-day split's half and modality group.
    pub fn treatment(&self) -> Option<(TreatmentGroup, ModalityGroup)> {
        match self.key.cell {
            StandardsCell::Treated {
                group, modality, ..
            } => Some((group, modality)),
            _ => None,
        }
    }
}

/// Which of a figure's clocks to list: every field `None` lists the clocks
/// the figures count (stopped or treated in the month); excluded FDS clocks,
/// which the report counts apart, only with `outcome` `excluded`. Each
/// names a split of the standards report, so a list is the clocks behind
/// one of its figures.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ClockFilter {
    pub tumour_site: Option<TumourSite>,
    pub outcome: Option<ClockOutcome>,
    /// FDS only.
    pub fds_outcome: Option<FdsOutcome>,
    /// 31-day only.
    pub treatment: Option<TreatmentGroup>,
    /// 31-day only.
    pub modality: Option<ModalityGroup>,
    /// FDS only: excluded clocks of this reason (implies `outcome`
    /// `excluded`).
    pub exclusion_reason: Option<ExclusionReason>,
}

impl ClockFilter {
    pub fn keeps(&self, clock: &CountedClock) -> bool {
        let treatment = clock.treatment();
        let outcome = clock.outcome();
        self.tumour_site.is_none_or(|s| clock.tumour_site() == s)
            && match (self.outcome, self.exclusion_reason) {
                (Some(o), _) => outcome == o,
                (None, Some(_)) => outcome == ClockOutcome::Excluded,
                (None, None) => outcome != ClockOutcome::Excluded,
            }
            && self
                .exclusion_reason
                .is_none_or(|r| clock.exclusion_reason() == Some(r))
            && self
                .fds_outcome
                .is_none_or(|o| clock.fds_outcome() == Some(o))
            && self
                .treatment
                .is_none_or(|g| treatment.is_some_and(|(group, _)| group == g))
            && self
                .modality
                .is_none_or(|m| treatment.is_some_and(|(_, modality)| modality == m))
    }
}

/// The clocks of a pathway that `standard`'s figures for `period` count,
/// of the trusts `trust_visible` admits, that `filter` keeps.
pub fn counted_clocks(
    state: &PathwayState,
    standard: ClockKind,
    period: Period,
    trust_visible: &dyn Fn(&str) -> bool,
    filter: &ClockFilter,
    out: &mut dyn FnMut(CountedClock),
) {
    tally::each_contribution(state, &mut |c| {
        let key = c.key;
        if key.standard != standard || key.month != period || !trust_visible(key.trust.as_str()) {
            return;
        }
        let clock = c.clock;
        let stop = match key.cell {
            StandardsCell::Excluded { .. } => state.fds_excluded_on(),
            _ => clock.stop,
        };
        let line = CountedClock {
            key,
            share: c.share,
            current_trust: state.trust,
            allocation: clock.allocation.clone(),
            route: state.route,
            referred_on: state.referred_on,
            start: clock.start,
            stop,
            stop_reason: clock.stop_reason,
            adjustment_days: clock.adjustment_days,
            days: clock.days,
            target_days: clock.target_days,
            modality: c.treatment_period.map(|p| p.modality),
            plan_id: c.treatment_period.and_then(|p| p.plan_id.clone()),
            start_reason: c.treatment_period.map(|p| p.start_reason),
        };
        if filter.keeps(&line) {
            out(line);
        }
    });
}
