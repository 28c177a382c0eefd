//! The standards and FIT cells ([`DatedCells`]) and the milestone cells
//! ([`MilestoneCells`]) as of a few past dates, as known now (decision
//! 202).
//!
//! A manager who picks a past date on the standards page asks for three
//! standards over six months: eighteen past views, each moving every
//! pathway changed since that date. The first of them counts the cells of
//! every standard and month, and of every FIT month, as of the date, and
//! the projection keeps them: the other seventeen, and every later view of
//! that date, are summed from a few thousand cells. The first milestone
//! view of a date likewise counts and keeps the milestone cells of every
//! referral month as of it (each part is counted when first asked for).
//!
//! Kept cells stay exact as records come. A pathway's cells as of a past
//! date change only with a record that can change its state as of it: one
//! dated on or before it, or an amendment
//! ([`openptl_rules::history::earliest_date_affected`]); the refresh then
//! takes away the cells of its history before the records and adds those
//! of its history after, both evaluated as of the date
//! ([`super::changed_as_of`], the rule of last Sunday's return). A new day
//! changes nothing as of a past date, but a bulk change (start, restore,
//! the refresh of every pathway on a new day) drops them with today's
//! aggregates; the next view of a date counts them again.
//!
//! Cells as known at a past moment are kept too (decision 203), under the
//! last log position recorded by then ([`DayAt::known_to`]): a view as
//! known at a moment is that of the log's records up to it (`recorded_at`
//! never goes back along the log), and the log is only ever appended to,
//! so those cells never change and no refresh touches them. A record
//! stamped later at or before the moment (a clock stepped back) moves the
//! moment's last position, and so names other cells.
//!
//! At most [`DAYS`] dates and moments are kept, the least recently asked
//! for going first. The full re-evaluation of every history as of the
//! date, as known at the moment, is the oracle they are tested against.

use std::sync::{Mutex, MutexGuard, PoisonError};

use chrono::NaiveDate;

use openptl_rules::tally::{self, MilestonesKey, MilestonesTally};
use openptl_rules::{EffectiveEvent, PathwayState, RecordedEvent, RulesConfig};

use super::dated::{DatedCells, DatedContribution};
use super::milestone_cells::MilestoneCells;
use crate::past::Counted;

/// How many past dates' (and moments') cells are kept at most.
pub(crate) const DAYS: usize = 8;

/// Which cells a kept day holds: as of a date, as known now or as known
/// at a past moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DayAt {
    /// The date.
    pub(crate) as_of: NaiveDate,
    /// `None`: as known now, kept current by every refresh. `Some`: as
    /// known at a moment whose last record is at this log position: the
    /// records up to it, which never change.
    pub(crate) known_to: Option<u64>,
}

impl DayAt {
    /// As of `as_of`, as known now.
    pub(crate) fn now(as_of: NaiveDate) -> DayAt {
        DayAt {
            as_of,
            known_to: None,
        }
    }

    /// Whether its cells are kept when the projection's states are of
    /// `today`: those of a past date as known now (today's are today's
    /// aggregates), and those of any date as known at a moment.
    pub(crate) fn kept_on(&self, today: Option<NaiveDate>) -> bool {
        self.known_to.is_some() || today.is_some_and(|today| self.as_of < today)
    }
}

/// What a pathway's state as of a date adds to that date's kept cells.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct DayContribution {
    dated: DatedContribution,
    milestones: Option<(MilestonesKey, MilestonesTally)>,
}

/// What a refresh changes in the cells kept as of one date: a pathway's
/// contribution as of it before, and after.
pub(crate) type Change = (NaiveDate, DayContribution, DayContribution);

/// A part of a date's kept cells, counted by the first view of the date
/// that reads it.
pub(crate) trait DayPart: Default + Send + Sync + 'static {
    /// What of today's aggregates its count starts from.
    const COUNTED: Counted;
    /// What `state` adds (`sign` 1) or takes away (`sign` -1).
    fn add_state(&mut self, state: &PathwayState, config: &RulesConfig, sign: i64);
    /// Adds every cell of `other`.
    fn merge(&mut self, other: Self);
    /// The part of `day`'s cells it is.
    fn of(day: &KeptDay) -> &Option<Self>;
    fn of_mut(day: &mut KeptDay) -> &mut Option<Self>;
}

impl DayPart for DatedCells {
    const COUNTED: Counted = Counted::Dated;
    fn add_state(&mut self, state: &PathwayState, config: &RulesConfig, sign: i64) {
        DatedCells::add_state(self, state, config, sign);
    }
    fn merge(&mut self, other: Self) {
        DatedCells::merge(self, other);
    }
    fn of(day: &KeptDay) -> &Option<Self> {
        &day.dated
    }
    fn of_mut(day: &mut KeptDay) -> &mut Option<Self> {
        &mut day.dated
    }
}

impl DayPart for MilestoneCells {
    const COUNTED: Counted = Counted::Milestones;
    fn add_state(&mut self, state: &PathwayState, config: &RulesConfig, sign: i64) {
        MilestoneCells::add_state(self, state, config, sign);
    }
    fn merge(&mut self, other: Self) {
        MilestoneCells::merge(self, other);
    }
    fn of(day: &KeptDay) -> &Option<Self> {
        &day.milestones
    }
    fn of_mut(day: &mut KeptDay) -> &mut Option<Self> {
        &mut day.milestones
    }
}

/// The changes, as of each of `dates`, of a pathway now holding `history`
/// (`effective`: its effective events, as the refresh worked them out),
/// whose state before held `old` records (`None`: it had none), and which
/// has a state now or not (`now`).
pub(crate) fn changes(
    (history, effective): (&[RecordedEvent], &[EffectiveEvent]),
    old: Option<u64>,
    now: bool,
    dates: &[NaiveDate],
    config: &RulesConfig,
) -> Vec<Change> {
    let of = |effective: &[EffectiveEvent], on: NaiveDate| {
        openptl_rules::evaluate(effective, on, config)
            .map(|state| DayContribution {
                dated: DatedContribution::of(&state, config),
                milestones: tally::milestones_contribution(&state, config),
            })
            .unwrap_or_default()
    };
    dates
        .iter()
        .filter_map(|on| {
            super::changed_as_of((history, effective), old, now, (*on, *on), of)
                .map(|(before, after)| (*on, before, after))
        })
        .collect()
}

/// The cells kept, locked. A panic under the lock may have left them half
/// changed: they are dropped then (counted again when next asked for).
pub(crate) fn lock(days: &Mutex<KeptDays>) -> MutexGuard<'_, KeptDays> {
    days.lock().unwrap_or_else(|poisoned| {
        days.clear_poison();
        let mut days = poisoned.into_inner();
        days.clear();
        days
    })
}

/// [`lock`] with the lock's owner holding it alone.
pub(crate) fn unpoisoned(days: &mut Mutex<KeptDays>) -> &mut KeptDays {
    if days.is_poisoned() {
        days.clear_poison();
        let days = days.get_mut().unwrap_or_else(PoisonError::into_inner);
        days.clear();
    }
    days.get_mut().unwrap_or_else(PoisonError::into_inner)
}

/// One date's cells, as known now or at a moment: each part once counted.
#[derive(Debug)]
pub(crate) struct KeptDay {
    at: DayAt,
    dated: Option<DatedCells>,
    milestones: Option<MilestoneCells>,
    /// When it was last asked for (a count of asks, for the eviction).
    asked: u64,
}

/// The cells kept as of past dates, as known now or at past moments.
#[derive(Debug, Default)]
pub(crate) struct KeptDays {
    days: Vec<KeptDay>,
    asks: u64,
}

impl KeptDays {
    /// The dates kept as known now (those a refresh may change).
    pub(crate) fn dates(&self) -> Vec<NaiveDate> {
        let now = self.days.iter().filter(|day| day.at.known_to.is_none());
        now.map(|day| day.at.as_of).collect()
    }

    /// Every date and moment kept (tests).
    #[cfg(test)]
    pub(crate) fn kept(&self) -> Vec<DayAt> {
        self.days.iter().map(|day| day.at).collect()
    }

    /// The cells of part `P` at `at`, when kept (counted as asked for).
    pub(crate) fn get<P: DayPart>(&mut self, at: DayAt) -> Option<&P> {
        self.asks += 1;
        let asks = self.asks;
        let day = self.days.iter_mut().find(|day| day.at == at)?;
        if P::of(day).is_some() {
            day.asked = asks;
        }
        P::of(day).as_ref()
    }

    /// Keeps `cells` at `at` (with its other part, when kept); a new date
    /// or moment takes the place of the least recently asked for when
    /// [`DAYS`] are kept already.
    pub(crate) fn keep<P: DayPart>(&mut self, at: DayAt, cells: P) {
        self.asks += 1;
        let asked = self.asks;
        let index = match self.days.iter().position(|day| day.at == at) {
            Some(at) => at,
            None => {
                if self.days.len() >= DAYS {
                    if let Some(oldest) = (0..self.days.len()).min_by_key(|i| self.days[*i].asked) {
                        self.days.swap_remove(oldest);
                    }
                }
                self.days.push(KeptDay {
                    at,
                    dated: None,
                    milestones: None,
                    asked,
                });
                self.days.len() - 1
            }
        };
        let day = &mut self.days[index];
        day.asked = asked;
        *P::of_mut(day) = Some(cells);
    }

    /// Applies a refresh's changes of one pathway to the dates kept as
    /// known now. A date kept without a change is one the pathway's new
    /// records cannot change, or kept after the refresh worked its changes
    /// out, when its records were folded in already and each was checked
    /// to change nothing as of it
    /// ([`crate::past::Split::unchanged_since`]).
    pub(crate) fn apply(&mut self, changes: &[Change]) {
        for (on, before, after) in changes {
            let at = DayAt::now(*on);
            if let Some(day) = self.days.iter_mut().find(|day| day.at == at) {
                if let Some(dated) = &mut day.dated {
                    dated.apply(&before.dated, -1);
                    dated.apply(&after.dated, 1);
                }
                if let Some(milestones) = &mut day.milestones {
                    milestones.apply(&before.milestones, -1);
                    milestones.apply(&after.milestones, 1);
                }
            }
        }
    }

    /// Drops every date's cells.
    pub(crate) fn clear(&mut self) {
        self.days.clear();
    }

    /// The cells of part `P` at `at`, when kept, without counting an ask
    /// (tests).
    #[cfg(test)]
    pub(crate) fn peek<P: DayPart>(&self, at: DayAt) -> Option<&P> {
        let day = self.days.iter().find(|day| day.at == at)?;
        P::of(day).as_ref()
    }

    /// How many dates and moments are kept, their cells, and about how
    /// many bytes those hold.
    pub(crate) fn size(&self) -> (usize, usize, usize) {
        let (mut cells, mut bytes) = (0, 0);
        for day in &self.days {
            if let Some(dated) = &day.dated {
                (cells, bytes) = (cells + dated.len(), bytes + dated.bytes());
            }
            if let Some(milestones) = &day.milestones {
                (cells, bytes) = (cells + milestones.len(), bytes + milestones.bytes());
            }
        }
        (self.days.len(), cells, bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Past [`DAYS`] dates, the least recently asked for goes; a date kept
    /// again replaces its cells. A date as known at a moment is kept apart
    /// from the same date as known now.
    #[test]
    fn the_least_recently_asked_for_date_goes_first() {
        let day = |n: u32| DayAt::now(NaiveDate::from_ymd_opt(2025, 3, n).unwrap());
        let mut days = KeptDays::default();
        for n in 1..=DAYS as u32 {
            days.keep(day(n), DatedCells::default());
        }
        // The other part of a kept date is kept with it.
        days.keep(day(3), MilestoneCells::default());
        assert_eq!(days.kept().len(), DAYS);
        // The first is asked for again: the second is now the oldest ask.
        assert!(days.get::<DatedCells>(day(1)).is_some());
        days.keep(day(20), DatedCells::default());
        let mut kept: Vec<_> = days.dates();
        kept.sort();
        let mut expected: Vec<_> = (1..=DAYS as u32)
            .filter(|n| *n != 2)
            .map(|n| day(n).as_of)
            .collect();
        expected.push(day(20).as_of);
        assert_eq!(kept, expected);
        // Kept again: still one entry for the date.
        days.keep(day(20), DatedCells::default());
        assert_eq!(days.kept().len(), DAYS);
        assert!(days.get::<DatedCells>(day(2)).is_none());
        assert!(days.get::<MilestoneCells>(day(3)).is_some());
        assert!(days.get::<MilestoneCells>(day(1)).is_none());
        // The first date as known at a moment: a date of its own, which
        // takes the place of the least recently asked for (the fourth),
        // and not one of the dates a refresh changes.
        let known = DayAt {
            known_to: Some(17),
            ..day(1)
        };
        assert!(days.get::<DatedCells>(known).is_none());
        days.keep(known, DatedCells::default());
        assert!(days.get::<DatedCells>(known).is_some());
        assert!(days.get::<DatedCells>(day(1)).is_some());
        assert!(!days.dates().contains(&day(4).as_of));
        assert_eq!(days.dates().len(), DAYS - 1);
    }
}
