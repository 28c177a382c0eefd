//! What the estimator learns from and predicts for: one [`Observation`] per
//! clock of a pathway state (FDS, 62-day, and every treatment period for
//! the 31-day standard), as known on the state's `as_of`. A stopped clock
//! is an event at the days it waited; a running one is censored at the
//! days it has waited so far (we know only that it has not stopped yet); a
//! clock ended by the pathway's closure counts in no standard and is
//! censored where it ended.

use chrono::NaiveDate;

use crate::codes::*;
use crate::ids::OdsCode;
use crate::pathway::{Clock, Milestone, PathwayState};

/// How a clock stands on the `as_of` of its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Stopped (met or breached) after `days`: it counts in its standard.
    Stopped,
    /// Still running after `days`.
    Running,
    /// Ended after `days` by the pathway's closure: counts nowhere.
    Closed,
}

/// The milestone the clock is judged by (the latest one due before the
/// clock's target, SPEC 2.9), in clock days: due on `due_day`, met on
/// `met_day` if it was. Beyond its due day a clock is "on time" or "late"
/// on it, and the estimator tells the two apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    pub name: std::sync::Arc<str>,
    pub due_day: i64,
    pub met_day: Option<i64>,
}

impl Mark {
    /// Whether the milestone was not met by its due day (known only after it).
    pub fn late(&self) -> bool {
        self.met_day.is_none_or(|m| m > self.due_day)
    }
}

/// One clock, as the estimator sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub kind: ClockKind,
    pub tumour_site: TumourSite,
    pub route: Route,
    pub trust: OdsCode,
    pub start: NaiveDate,
    /// Days waited (net of adjustments): to the stop, or so far.
    pub days: i64,
    pub target_days: i64,
    pub outcome: Outcome,
    pub mark: Option<Mark>,
}

impl Observation {
    /// Whether it has waited beyond its target.
    pub fn past_target(&self) -> bool {
        self.days > self.target_days
    }
}

fn outcome(clock: &Clock) -> Option<Outcome> {
    match clock.status {
        ClockStatus::Met | ClockStatus::Breached => Some(Outcome::Stopped),
        ClockStatus::Open | ClockStatus::OpenBreached => Some(Outcome::Running),
        ClockStatus::Closed => Some(Outcome::Closed),
        ClockStatus::NotApplicable | ClockStatus::NotStarted | ClockStatus::Excluded => None,
    }
}

/// The latest milestone due before the clock's target day, in its days
/// (of several due that day, the last). Only that one's name is copied: a
/// past view counts the clocks of hundreds of thousands of states, and a
/// name copied for every milestone was a sixth of counting them.
fn mark(milestones: &[Milestone], start: NaiveDate, target_days: i64) -> Option<Mark> {
    let (due_day, m) = milestones
        .iter()
        .filter(|m| m.status != MilestoneStatus::NotApplicable)
        .map(|m| ((m.due_date - start).num_days(), m))
        .filter(|(due_day, _)| *due_day >= 0 && *due_day < target_days)
        .max_by_key(|(due_day, _)| *due_day)?;
    Some(Mark {
        name: m.name.clone(),
        due_day,
        met_day: m.met_on.map(|d| (d - start).num_days()),
    })
}

/// What a pathway's clocks are observed with besides themselves: its
/// trust, tumour site, route and milestones. A [`PathwayState`]'s, or as
/// few of its fields as a packed state gives when only its clocks are
/// counted ([`clock_observations`]).
#[derive(Debug, Clone, Copy)]
pub struct ObservedWith<'a> {
    pub trust: OdsCode,
    pub tumour_site: TumourSite,
    pub route: Route,
    pub milestones: &'a [Milestone],
}

impl<'a> ObservedWith<'a> {
    pub fn of(state: &'a PathwayState) -> ObservedWith<'a> {
        ObservedWith {
            trust: state.trust,
            tumour_site: state.tumour_site,
            route: state.route,
            milestones: &state.milestones,
        }
    }
}

fn observe(
    with: &ObservedWith<'_>,
    kind: ClockKind,
    clock: &Clock,
    with_mark: bool,
) -> Option<Observation> {
    let outcome = outcome(clock)?;
    let start = clock.start?;
    Some(Observation {
        kind,
        tumour_site: with.tumour_site,
        route: with.route,
        trust: with.trust,
        start,
        days: clock.days,
        target_days: clock.target_days,
        outcome,
        mark: if with_mark {
            mark(with.milestones, start, clock.target_days)
        } else {
            None
        },
    })
}

/// Every clock of a state the forecasts learn from or predict: its FDS and
/// 62-day clocks (judged by a milestone), and every started treatment period
/// (31-day; no milestone).
pub fn observations(state: &PathwayState) -> impl Iterator<Item = Observation> + '_ {
    named_observations(state).map(|(_, o)| o)
}

/// [`observations`] of a state given as its FDS and 62-day clocks, its
/// treatment periods' clocks in order, and what they are observed with:
/// the same observations, in the same order (property-tested where a
/// packed state is so unpacked).
pub fn clock_observations<'a>(
    with: ObservedWith<'a>,
    (fds, d62): (&'a Clock, &'a Clock),
    periods: impl Iterator<Item = &'a Clock> + 'a,
) -> impl Iterator<Item = Observation> + 'a {
    let fds = observe(&with, ClockKind::Fds, fds, true);
    let d62 = observe(&with, ClockKind::D62, d62, true);
    let periods = periods.filter_map(move |clock| observe(&with, ClockKind::D31, clock, false));
    fds.into_iter().chain(d62).chain(periods)
}

/// [`observations`], each with the plan id of its treatment period (`None`
/// for the FDS and 62-day clocks and the first period), as the PTL names a
/// clock (`next_breach_clock`, `next_breach_plan_id`).
pub fn named_observations(
    state: &PathwayState,
) -> impl Iterator<Item = (Option<&std::sync::Arc<str>>, Observation)> + '_ {
    let with = ObservedWith::of(state);
    let fds = observe(&with, ClockKind::Fds, &state.clocks.fds, true);
    let d62 = observe(&with, ClockKind::D62, &state.clocks.d62, true);
    let periods = state.treatment_periods.iter().filter_map(move |p| {
        observe(&with, ClockKind::D31, &p.clock, false).map(|o| (p.plan_id.as_ref(), o))
    });
    fds.into_iter().chain(d62).map(|o| (None, o)).chain(periods)
}
