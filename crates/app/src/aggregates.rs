//! Today's aggregate views kept current (issue 22): the cells of the
//! standards and milestone views (`openptl_rules::tally`), of the FIT
//! report (`openptl_rules::fit::contribution`) and of the PTL gauges of
//! `/metrics` ([`gauges`]) summed over every pathway's state as of the
//! projection's `today`, the cells of the weekly return of the week ending
//! `today` (served when `today` is its Sunday), the pathways with CWT
//! records in this month
//! and the last (`openptl_rules::cwt::record_months`), which today's
//! submission reads instead of every state, and the clocks of the
//! pathways off the PTL, which a past date's risk model counts once
//! (decision 158); and, beside them, last Sunday's return
//! ([`last_week`], decision 200). The projection keeps
//! them as pathways change (each re-evaluated pathway takes its old state's
//! contributions away and adds its new state's) and builds them afresh
//! from every state after a bulk change (start, restore, a new day); a view
//! of today then reads cells (months × trusts × sites × outcomes), never
//! the pathways behind them.
//!
//! Everything here is a pure function of the states: [`Aggregates::of`]
//! over every state is the oracle the incremental sums are tested against.

use chrono::{Datelike, Days, NaiveDate};
use foldhash::HashMap;

use openptl_rules::forecast::{self, Observation};
use openptl_rules::history::earliest_date_affected;
use openptl_rules::report::{CanptlCell, CanptlReturn};
use openptl_rules::tally::{self, MilestonesKey, MilestonesTally};
use openptl_rules::{EffectiveEvent, OdsCode, Period, PtlRow, RecordedEvent, RulesConfig};

use crate::evaluate::{effective_or_logged, Current};
use crate::past::{Counted, Kept};
use crate::projection::CwtMonths;
use crate::ptl_index::PtlKeys;

pub(crate) mod dated;
mod ended;
pub(crate) mod gauges;
pub(crate) mod kept_days;
pub(crate) mod last_week;
pub(crate) mod milestone_cells;
mod pathway_set;

use dated::{DatedCells, DatedContribution};
use ended::EndedClocks;
use gauges::{GaugeKey, PtlGauges};
use milestone_cells::MilestoneCells;
use pathway_set::PathwaySet;

/// What one pathway's state adds to the aggregates.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Contribution {
    /// To the standards and FIT cells.
    dated: DatedContribution,
    milestones: Option<(MilestonesKey, MilestonesTally)>,
    gauges: Vec<(GaugeKey, i64)>,
    /// The cells of the weekly return of the week ending `today` it counts
    /// in, at its trust.
    canptl: Vec<(OdsCode, CanptlCell)>,
    /// The months of [`cwt_months_from`] on it has CWT records in.
    cwt: Vec<Period>,
    /// Its clocks, when none runs (off the PTL): they are the same as of
    /// any date after its last ([`Aggregates::kept`]).
    ended: Vec<Observation>,
    /// The date its events are settled by ([`openptl_rules::pathway::Settled::from`]),
    /// which its clocks off the PTL are kept under ([`EndedClocks`]).
    settled_from: Option<NaiveDate>,
    /// Whether none of its milestones is pending or overdue: its
    /// contribution to the milestone view is then the same as of any date
    /// after its last ([`Aggregates::kept`]).
    milestones_decided: bool,
}

/// The first month whose CWT submission today's aggregates index: the
/// last month (its submission is made in this one) and this month are.
pub(crate) fn cwt_months_from(today: NaiveDate) -> Period {
    Period::of(today.with_day(1).unwrap_or(today) - Days::new(1))
}

impl Contribution {
    /// What a pathway's state as of `today` adds, its events settled by
    /// `settled_from`.
    pub(crate) fn of(
        current: &Current,
        settled_from: Option<NaiveDate>,
        today: NaiveDate,
        config: &RulesConfig,
    ) -> Contribution {
        let state = &current.state;
        let mut gauges = Vec::new();
        // An unpacked state carries no row: it is the same function of the state.
        let row = match &current.row {
            Some(row) => Some(PtlKeys::of(row)),
            None => PtlRow::of(state, config).map(|row| PtlKeys::of(&row)),
        };
        if let Some(keys) = row {
            gauges::contributions(state, keys.band(), today, &mut gauges);
        }
        let from = cwt_months_from(today);
        let mut cwt = openptl_rules::cwt::record_months(state);
        cwt.retain(|month| *month >= from);
        let ended = match state.on_ptl {
            true => Vec::new(),
            false => forecast::observations(state).collect(),
        };
        let milestones_decided = state.next_milestone().is_none();
        let mut canptl = Vec::new();
        CanptlReturn::cells(state, today, |cell| canptl.push((state.trust, cell)));
        Contribution {
            dated: DatedContribution::of(state, config),
            milestones: tally::milestones_contribution(state, config),
            gauges,
            canptl,
            cwt,
            ended,
            settled_from,
            milestones_decided,
        }
    }
}

/// The cells of today's standards and milestone views.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Aggregates {
    /// The standards cells by standard and month, the FIT cells by
    /// referral month and trust at referral.
    dated: DatedCells,
    milestones: MilestoneCells,
    gauges: HashMap<GaugeKey, i64>,
    /// The weekly return of the week ending `today`: pathways by trust
    /// and cell.
    canptl: HashMap<(OdsCode, CanptlCell), i64>,
    /// The pathways with CWT records in each month indexed, by their
    /// index in the projection's vector.
    cwt: HashMap<Period, PathwaySet>,
    /// The clocks of every pathway off the PTL, counted for a risk model:
    /// the same as of any date its events are settled by, as no clock
    /// runs (decision 158); apart by the week of that date (decision 209).
    ended: EndedClocks,
    /// The pathways none of whose milestones is pending or overdue (by
    /// their index), whose contributions to the milestone cells are the
    /// same as of any date their events are settled by (decision 158), and
    /// the milestone cells of those only.
    milestones_decided: PathwaySet,
    milestones_settled: MilestoneCells,
}

impl Aggregates {
    /// None counted yet, as of `today`.
    pub(crate) fn new(today: NaiveDate) -> Aggregates {
        Aggregates {
            dated: DatedCells::default(),
            milestones: MilestoneCells::default(),
            gauges: HashMap::default(),
            canptl: HashMap::default(),
            cwt: HashMap::default(),
            ended: EndedClocks::new(today),
            milestones_decided: PathwaySet::default(),
            milestones_settled: MilestoneCells::default(),
        }
    }

    /// The aggregates of pathways' `states` (each with its index in the
    /// projection's vector and the date its events are settled by) as of
    /// `today`, from scratch (the oracle of the tests; the scrape of a
    /// projection that keeps none).
    pub(crate) fn of<'a>(
        states: impl IntoIterator<Item = (usize, Option<NaiveDate>, &'a Current)>,
        today: NaiveDate,
        config: &RulesConfig,
    ) -> Aggregates {
        let mut out = Aggregates::new(today);
        for (index, settled_from, current) in states {
            let contribution = Contribution::of(current, settled_from, today, config);
            out.apply(index, &contribution, 1);
        }
        out
    }

    /// Moves on to `today` (before the contributions of the pathways
    /// evaluated on it are applied): the weeks of the clocks off the PTL
    /// kept apart become those back from its week. `false` when they
    /// cannot (`today`'s week is earlier than theirs), and the aggregates
    /// are to be built afresh.
    pub(crate) fn new_day(&mut self, today: NaiveDate) -> bool {
        self.ended.new_day(today)
    }

    /// Adds (`sign` 1) or takes away (`sign` -1) the contribution of the
    /// pathway at `index` of the projection's vector; cells left counting
    /// nothing are dropped, so equal states give equal aggregates whatever
    /// the path to them.
    pub(crate) fn apply(&mut self, index: usize, c: &Contribution, sign: i64) {
        for month in &c.cwt {
            let pathways = self.cwt.entry(*month).or_default();
            if sign > 0 {
                pathways.insert(index);
            } else {
                pathways.remove(index);
                if pathways.is_empty() {
                    self.cwt.remove(month);
                }
            }
        }
        self.dated.apply(&c.dated, sign);
        self.milestones.apply(&c.milestones, sign);
        for (key, n) in &c.gauges {
            count(&mut self.gauges, *key, sign * n);
        }
        for key in &c.canptl {
            count(&mut self.canptl, *key, sign);
        }
        self.ended.apply(c.settled_from, &c.ended, sign as i32);
        if c.milestones_decided {
            match sign > 0 {
                true => self.milestones_decided.insert(index),
                false => self.milestones_decided.remove(index),
            };
            self.milestones_settled.apply(&c.milestones, sign);
        }
    }

    /// Adds every cell of `other` (partial sums built on several threads).
    pub(crate) fn merge(&mut self, other: Aggregates) {
        self.dated.merge(other.dated);
        self.milestones.merge(other.milestones);
        for (key, n) in other.gauges {
            *self.gauges.entry(key).or_default() += n;
        }
        for (key, n) in other.canptl {
            *self.canptl.entry(key).or_default() += n;
        }
        for (month, pathways) in other.cwt {
            self.cwt.entry(month).or_default().extend(&pathways);
        }
        self.ended.merge(other.ended);
        self.milestones_decided.extend(&other.milestones_decided);
        self.milestones_settled.merge(other.milestones_settled);
    }

    /// What a past view as of `as_of` starts from ([`Counted`], decision
    /// 158), of the type it counts into: the clocks of the pathways off the
    /// PTL today settled in the weeks that start by it or before them
    /// (`ModelCounts`, [`EndedClocks::as_of`]), or the cells of a
    /// standard's month or a FIT month (`StandardsCount`, `FitCount`).
    pub(crate) fn kept(&self, counted: Counted, as_of: NaiveDate) -> Option<Kept> {
        Some(match counted {
            Counted::Nothing => return None,
            Counted::ClocksOffPtl => Box::new(self.ended.as_of(as_of)),
            Counted::Dated => Box::new(self.dated.clone()),
            Counted::Standards(standard, period) => {
                Box::new(self.dated.standards_count(standard, period))
            }
            Counted::Milestones => Box::new(self.milestones_settled.clone()),
            Counted::Fit(period) => Box::new(self.dated.fit_count(period)),
        })
    }

    /// The pathways (their indexes) with CWT records in `month` when it is
    /// indexed (the
    /// months from [`cwt_months_from`] today on), else `None`.
    pub(crate) fn cwt_pathways(
        &self,
        month: Period,
        today: NaiveDate,
    ) -> Option<impl Iterator<Item = usize> + '_> {
        self.cwt_indexed(month, today)
            .map(|set| set.into_iter().flat_map(PathwaySet::iter))
    }

    /// The set of the pathways with CWT records in `month` as of `today`
    /// when the month is indexed: `Some(None)` when it is indexed and
    /// none has any, `None` when it is not indexed.
    pub(crate) fn cwt_indexed(
        &self,
        month: Period,
        today: NaiveDate,
    ) -> Option<Option<&PathwaySet>> {
        (month >= cwt_months_from(today)).then(|| self.cwt.get(&month))
    }

    /// The months from [`cwt_months_from`] `today` on that the pathway at
    /// `index` has CWT records in, as kept (`today` is the aggregates').
    pub(crate) fn cwt_months(&self, index: usize, today: NaiveDate) -> CwtMonths {
        let from = cwt_months_from(today);
        let months = self
            .cwt
            .iter()
            .filter(|(month, set)| **month >= from && set.contains(index))
            .map(|(month, _)| *month);
        CwtMonths::of(from, months)
    }

    /// The pathways (their indexes, of the first `len`) with a milestone
    /// pending or overdue today: every other one has each of its
    /// milestones met, missed or not applicable.
    pub(crate) fn milestone_undecided(&self, len: usize) -> impl Iterator<Item = usize> + '_ {
        (0..len).filter(|index| !self.milestones_decided.contains(*index))
    }

    /// The standards and FIT cells, as of today.
    pub(crate) fn dated(&self) -> &DatedCells {
        &self.dated
    }

    /// The PTL gauges' series.
    pub(crate) fn ptl_gauges(&self) -> PtlGauges {
        PtlGauges::of(&self.gauges)
    }

    /// The milestone cells of every pathway, as of today.
    pub(crate) fn milestone_cells(&self) -> &MilestoneCells {
        &self.milestones
    }

    /// Whether a pathway counts as it is today (given its index, whether
    /// it is on the PTL and the date its events are settled by) in what a
    /// view as of `as_of` that counts `counted` starts from
    /// ([`Aggregates::kept`]): worked out once for a view, asked of every
    /// pathway.
    pub(crate) fn counter(
        &self,
        counted: Counted,
        as_of: NaiveDate,
    ) -> impl Fn(usize, (bool, Option<NaiveDate>)) -> bool + Copy + '_ {
        let ended_to = self.ended.counted_to(as_of);
        move |index, (on_ptl, settled_from): (bool, Option<NaiveDate>)| match counted {
            Counted::Nothing => false,
            Counted::ClocksOffPtl => !on_ptl && settled_from.is_some_and(|from| from <= ended_to),
            Counted::Milestones => self.milestones_decided.contains(index),
            Counted::Dated | Counted::Standards(..) | Counted::Fit(..) => true,
        }
    }

    /// Gives back what the build's merging grew into and does not use.
    pub(crate) fn shrink_to_fit(&mut self) {
        self.ended.shrink_to_fit();
    }

    /// The strata and bytes of the clocks kept for past dates' models.
    pub(crate) fn clocks_kept(&self) -> (usize, usize) {
        self.ended.size()
    }

    /// The weekly return of the week ending `today` (the aggregates'),
    /// among the pathways whose current trust `trust_visible` allows.
    pub(crate) fn canptl(
        &self,
        today: NaiveDate,
        trust_visible: &dyn Fn(&str) -> bool,
    ) -> CanptlReturn {
        return_of(&self.canptl, today, trust_visible)
    }

    /// How many cells are kept (for the memory figures).
    pub(crate) fn cells(&self) -> usize {
        self.dated.len()
            + self.milestones.len()
            + self.gauges.len()
            + self.canptl.len()
            + self.cwt.values().map(PathwaySet::len).sum::<usize>()
    }
}

/// What a pathway now holding `history` (`effective`: its effective
/// events, as a refresh worked them out) adds as of a date before and
/// after its new records, `of` its effective events as of the date; or
/// `None` when that cannot have changed. `old` is the record count of the
/// state the refresh replaces (`None`: it had none, so added nothing),
/// `now` whether the pathway has a state now (one without adds nothing);
/// the date was `was` when the old state was made, and is `is`.
///
/// Records dated after the date (amendments aside) change nothing as of
/// it: the rule of views as known at a past moment
/// ([`openptl_rules::history::earliest_date_affected`]). Last Sunday's
/// return ([`last_week`]) and the cells kept as of past dates
/// ([`kept_days`]) both change by it.
pub(crate) fn changed_as_of<T: PartialEq + Default>(
    (history, effective): (&[RecordedEvent], &[EffectiveEvent]),
    old: Option<u64>,
    now: bool,
    (was, is): (NaiveDate, NaiveDate),
    of: impl Fn(&[EffectiveEvent], NaiveDate) -> T,
) -> Option<(T, T)> {
    let old = old.map(|n| usize::try_from(n).unwrap_or(usize::MAX).min(history.len()));
    let after_it = |e: &RecordedEvent| {
        earliest_date_affected(e.data.event_type(), e.occurred_on).is_some_and(|d| d > is)
    };
    if was == is && now && old.is_some_and(|n| history[n..].iter().all(after_it)) {
        return None;
    }
    let before = old
        .map(|n| of(&effective_or_logged(&history[..n]).unwrap_or_default(), was))
        .unwrap_or_default();
    let after = match now {
        true => of(effective, is),
        false => T::default(),
    };
    (before != after).then_some((before, after))
}

/// The weekly return of the week ending `week_ending` summed from its
/// `cells` (pathways by trust and cell), among the trusts `trust_visible`
/// allows.
fn return_of(
    cells: &HashMap<(OdsCode, CanptlCell), i64>,
    week_ending: NaiveDate,
    trust_visible: &dyn Fn(&str) -> bool,
) -> CanptlReturn {
    let mut report = CanptlReturn::new(week_ending);
    for ((trust, cell), n) in cells {
        if trust_visible(trust.as_str()) {
            report.add_cell(*cell, u64::try_from(*n).unwrap_or(0));
        }
    }
    report
}

/// Adds `n` to a count kept by key, dropping it at 0 (so equal states give
/// equal aggregates whatever the path to them).
fn count<K: std::hash::Hash + Eq>(counts: &mut HashMap<K, i64>, key: K, n: i64) {
    match counts.entry(key) {
        std::collections::hash_map::Entry::Occupied(mut cell) => {
            *cell.get_mut() += n;
            if *cell.get() == 0 {
                cell.remove();
            }
        }
        std::collections::hash_map::Entry::Vacant(cell) => {
            if n != 0 {
                cell.insert(n);
            }
        }
    }
}

#[cfg(test)]
mod tests;
