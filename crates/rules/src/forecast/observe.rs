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
use crate::pathway::{Clock, PathwayState};

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

/// The latest milestone due before the clock's target day, in its days.
fn mark(state: &PathwayState, start: NaiveDate, target_days: i64) -> Option<Mark> {
    state
        .milestones
        .iter()
        .filter(|m| m.status != MilestoneStatus::NotApplicable)
        .map(|m| Mark {
            name: m.name.clone(),
            due_day: (m.due_date - start).num_days(),
            met_day: m.met_on.map(|d| (d - start).num_days()),
        })
        .filter(|m| m.due_day >= 0 && m.due_day < target_days)
        .max_by_key(|m| m.due_day)
}

fn observe(
    state: &PathwayState,
    kind: ClockKind,
    clock: &Clock,
    with_mark: bool,
) -> Option<Observation> {
    let outcome = outcome(clock)?;
    let start = clock.start?;
    Some(Observation {
        kind,
        tumour_site: state.tumour_site,
        route: state.route,
        trust: state.trust,
        start,
        days: clock.days,
        target_days: clock.target_days,
        outcome,
        mark: if with_mark {
            mark(state, start, clock.target_days)
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

/// [`observations`], each with the plan id of its treatment period (`None`
/// for the FDS and 62-day clocks and the first period), as the PTL names a
/// clock (`next_breach_clock`, `next_breach_plan_id`).
pub fn named_observations(
    state: &PathwayState,
) -> impl Iterator<Item = (Option<&std::sync::Arc<str>>, Observation)> + '_ {
    let fds = observe(state, ClockKind::Fds, &state.clocks.fds, true);
    let d62 = observe(state, ClockKind::D62, &state.clocks.d62, true);
    let periods = state.treatment_periods.iter().filter_map(|p| {
        observe(state, ClockKind::D31, &p.clock, false).map(|o| (p.plan_id.as_ref(), o))
    });
    fds.into_iter().chain(d62).map(|o| (None, o)).chain(periods)
}
