//! A state moved to another date without its events (issue 22's fast past
//! views): once every date a pathway's events name has passed, its state
//! as of a later date differs only in what the passing days move (the
//! days of its running clocks, whether they are past target, whether a
//! pending milestone is overdue). [`Settled::of`] says from when that
//! holds; [`PathwayState::moved_to`] moves a state along it, exactly as
//! [`evaluate`] would give it (property-tested against it).

use super::*;

/// The dates that bound what a pathway's state says about another date.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settled {
    /// Its earliest effective event: as of any date before it the pathway
    /// did not exist ([`evaluate`] gives `None`).
    pub first: NaiveDate,
    /// The latest date its effective events name: the days they occurred
    /// on, a declined offer's dates and a decision's earliest clinically
    /// appropriate date. As of any two dates on or after it, the states
    /// differ only as [`PathwayState::moved_to`] moves them.
    pub from: NaiveDate,
}

impl Settled {
    /// `None` for no events.
    pub fn of(events: &[EffectiveEvent]) -> Option<Settled> {
        let first = events.iter().map(|e| e.occurred_on).min()?;
        let from = events
            .iter()
            .flat_map(|e| {
                let (a, b) = match &*e.data {
                    EventData::TreatmentOfferDeclined(t) => {
                        (Some(t.offered_on), Some(t.available_from))
                    }
                    EventData::DecisionToTreat(d) => (d.earliest_clinically_appropriate_date, None),
                    _ => (None, None),
                };
                [Some(e.occurred_on), a, b].into_iter().flatten()
            })
            .max()
            .unwrap_or(first);
        Some(Settled { first, from })
    }

    /// Whether a state as of `evaluated_on` can be moved to `as_of` with
    /// [`PathwayState::moved_to`].
    pub fn covers(&self, evaluated_on: NaiveDate, as_of: NaiveDate) -> bool {
        Settled::from_covers(self.from, evaluated_on, as_of)
    }

    /// [`Settled::covers`], of its `from` date alone (all it depends on).
    pub fn from_covers(from: NaiveDate, evaluated_on: NaiveDate, as_of: NaiveDate) -> bool {
        evaluated_on >= from && as_of >= from
    }
}

impl PathwayState {
    /// This state as of `as_of`: what [`evaluate`] gives on the same events
    /// as of `as_of`, when both dates are on or after the events'
    /// [`Settled::from`] ([`Settled::covers`]); meaningless otherwise.
    ///
    /// Between two such dates no event starts, stops or adjusts a clock
    /// (a decline's pause has ended, every decided period has started), so
    /// a running clock still runs with the same start, adjustment and
    /// target date; only its days and whether it is past its target move,
    /// and a milestone neither met nor ended by the FDS clock is pending or
    /// overdue by its due date. The date span is unchanged.
    pub fn moved_to(&self, as_of: NaiveDate) -> PathwayState {
        self.clone().into_moved(as_of)
    }

    /// [`PathwayState::moved_to`], without a copy.
    pub fn into_moved(self, as_of: NaiveDate) -> PathwayState {
        let mut moved = self;
        moved.as_of = as_of;
        let Clocks { fds, d31, d62 } = &mut moved.clocks;
        for clock in [fds, d31, d62] {
            move_clock(clock, as_of);
        }
        for period in &mut moved.treatment_periods {
            move_clock(&mut period.clock, as_of);
        }
        for milestone in &mut moved.milestones {
            if milestone.status.is_undecided() {
                milestone.status = unmet_status(as_of, milestone.due_date);
            }
        }
        moved.next_breach = next_breach(&moved.clocks, &moved.treatment_periods);
        moved
    }
}

/// A running clock's days and status as of `as_of` (the same [`finish`] the
/// fold ends with); any other clock is left as it is.
fn move_clock(clock: &mut Clock, as_of: NaiveDate) {
    if !clock.status.is_running() {
        return;
    }
    let Some(start) = clock.start else { return };
    let run = Run::started(start);
    let moved = finish(&run, as_of, clock.target_days, clock.adjustment_days);
    clock.days = moved.days;
    clock.status = moved.status;
}

/// An earlier state worth keeping for past views: the state as of `on`
/// (the settled date of the events up to one of the pathway's event
/// dates), which moves to any date up to `until` (the day before its next
/// event date) exactly as [`evaluate`] gives it there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Earlier {
    pub on: NaiveDate,
    pub until: NaiveDate,
    /// The settled dates of the events it is evaluated from.
    pub settled: Settled,
}

impl Earlier {
    /// The earlier states of a pathway whose ranges reach `since` or later,
    /// at most `most` of them, oldest first: first those covering the
    /// `wanted` dates, in their order (the dates views are most asked
    /// for), then the latest. The state as of the latest event date is the
    /// current one, never among them.
    pub fn of(
        events: &[EffectiveEvent],
        since: NaiveDate,
        most: usize,
        wanted: &[NaiveDate],
    ) -> Vec<Earlier> {
        let mut found = Vec::new();
        // Events are in `occurred_on` order; each distinct date but the last
        // ends a prefix.
        let mut end = 0;
        while end < events.len() {
            let day = events[end].occurred_on;
            while end < events.len() && events[end].occurred_on == day {
                end += 1;
            }
            let Some(next) = events.get(end).map(|e| e.occurred_on) else {
                break;
            };
            let until = next - Days::new(1);
            if until < since {
                continue;
            }
            let Some(settled) = Settled::of(&events[..end]) else {
                continue;
            };
            if settled.from <= until {
                found.push(Earlier {
                    on: settled.from,
                    until,
                    settled,
                });
            }
        }
        if found.len() <= most {
            return found;
        }
        let mut picked = vec![false; found.len()];
        let mut left = most;
        for day in wanted {
            let covering = found.iter().position(|e| e.on <= *day && *day <= e.until);
            if let Some(i) = covering.filter(|i| left > 0 && !picked[*i]) {
                picked[i] = true;
                left -= 1;
            }
        }
        for i in (0..found.len()).rev() {
            if left > 0 && !picked[i] {
                picked[i] = true;
                left -= 1;
            }
        }
        found
            .into_iter()
            .zip(picked)
            .filter_map(|(e, picked)| picked.then_some(e))
            .collect()
    }
}
